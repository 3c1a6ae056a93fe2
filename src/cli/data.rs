//! Data commands for shell users: `get`, `put`, `put-if-not-exist`, `del`, `cond-put`,
//! `atomic OP`, `search` and `count`.
//!
//! Attribute values are JSON converted through the space's schema. Checks (`cond-put`,
//! `search`, `count`) are a JSON object of `attribute: value` (equality), where a value may
//! instead be one operator object such as `{"lt": 5}`, `{"range": [1, 9]}`, `{"regex": "^a"}`,
//! `{"contains": "x"}` or `{"length_le": 3}` (operators: eq lt le ge gt range regex contains
//! length_eq length_le length_ge; not for map or document attributes, whose values are
//! objects themselves).

use std::process::ExitCode;

use clap::Subcommand;
use hyperdex_model::apply::{resolve, Target};
use hyperdex_model::{
    Check, Datatype, Document, Func, Funcall, NumOp, Object, Operation, Predicate, Reply,
    ReturnCode, Space, Value,
};
use serde_json::Value as Json;

use super::{fail, CoordinatorAddr};
use crate::client::{Client, ClientError};

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Print an object as one line of JSON (sets as sorted arrays).
    #[command(disable_help_flag = true)]
    Get {
        #[command(flatten)]
        coord: CoordinatorAddr,
        /// The space.
        space: String,
        /// The key (read as the key's type: a number for an int key).
        key: String,
    },
    /// Create or update an object: ATTRS is a JSON object.
    #[command(disable_help_flag = true)]
    Put {
        #[command(flatten)]
        coord: CoordinatorAddr,
        /// The space.
        space: String,
        /// The key (read as the key's type: a number for an int key).
        key: String,
        /// Attribute values, a JSON object: '{"first": "John", "age": 42}'.
        attrs: String,
    },
    /// Create an object only if it does not exist.
    #[command(name = "put-if-not-exist", disable_help_flag = true)]
    PutIfNotExist {
        #[command(flatten)]
        coord: CoordinatorAddr,
        /// The space.
        space: String,
        /// The key (read as the key's type: a number for an int key).
        key: String,
        /// Attribute values, a JSON object: '{"first": "John", "age": 42}'.
        attrs: String,
    },
    /// Delete an object.
    #[command(disable_help_flag = true)]
    Del {
        #[command(flatten)]
        coord: CoordinatorAddr,
        /// The space.
        space: String,
        /// The key (read as the key's type: a number for an int key).
        key: String,
    },
    /// Update an object only if it passes CHECKS.
    #[command(name = "cond-put", disable_help_flag = true)]
    CondPut {
        #[command(flatten)]
        coord: CoordinatorAddr,
        /// The space.
        space: String,
        /// The key (read as the key's type: a number for an int key).
        key: String,
        /// Conditions, a JSON object of attribute to value (equality) or to {"op": value}.
        checks: String,
        /// Attribute values, a JSON object: '{"first": "John", "age": 42}'.
        attrs: String,
    },
    /// An atomic operation: OP is e.g. atomic-add, string-append, list-rpush, set-add,
    /// set-union, map-add, map-remove, map-atomic-add, document-unset.
    #[command(disable_help_flag = true)]
    Atomic {
        #[command(flatten)]
        coord: CoordinatorAddr,
        /// atomic-add, atomic-sub, string-append, list-rpush, set-add, set-union, map-add, ...
        op: String,
        /// The space.
        space: String,
        /// The key (read as the key's type: a number for an int key).
        key: String,
        /// Attribute values, a JSON object: '{"first": "John", "age": 42}'.
        attrs: String,
    },
    /// Print every object passing CHECKS (default: all), one JSON line each, in key order.
    #[command(disable_help_flag = true)]
    Search {
        #[command(flatten)]
        coord: CoordinatorAddr,
        /// The space.
        space: String,
        /// Conditions, a JSON object of attribute to value (equality) or to {"op": value}; default: none.
        checks: Option<String>,
    },
    /// Print how many objects pass CHECKS (default: all).
    #[command(disable_help_flag = true)]
    Count {
        #[command(flatten)]
        coord: CoordinatorAddr,
        /// The space.
        space: String,
        /// Conditions, a JSON object of attribute to value (equality) or to {"op": value}; default: none.
        checks: Option<String>,
    },
}

fn bad(message: impl Into<String>) -> ClientError {
    ClientError::new(ReturnCode::WrongType, message)
}

fn json(text: &str, what: &str) -> Result<serde_json::Map<String, Json>, ClientError> {
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Object(m)) => Ok(m),
        Ok(_) => Err(bad(format!(
            "{what} must be a JSON object such as '{{\"attr\": \"value\"}}'"
        ))),
        Err(e) => Err(bad(format!("{what} is not valid JSON: {e}"))),
    }
}

/// The key given on the command line, read as the key's type.
pub fn parse_key(space: &Space, key: &str) -> Result<Value, ClientError> {
    let ty = space.key.datatype;
    let v = match ty {
        Datatype::String => Value::string(key),
        Datatype::Int | Datatype::Timestamp(_) => Value::Int(key.parse().map_err(|_| {
            bad(format!(
                "key \"{key}\" is not an int ({} is the key's type)",
                ty
            ))
        })?),
        Datatype::Float => Value::Float(key.parse().map_err(|_| {
            bad(format!(
                "key \"{key}\" is not a float ({} is the key's type)",
                ty
            ))
        })?),
        _ => {
            return Err(bad(format!(
                "keys of type {ty} cannot be given on the command line"
            )))
        }
    };
    Ok(v)
}

/// A JSON value with no schema to follow (inside documents).
fn untyped(j: &Json) -> Value {
    match j {
        Json::String(s) => Value::string(s),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        other => Value::Document(Document::new(other.clone())),
    }
}

/// The value for attribute `name` (or a document path) from JSON.
fn value_for(space: &Space, name: &str, j: &Json) -> Result<Value, ClientError> {
    match resolve(space, name).map_err(|f| ClientError::new(f.code, f.reason))? {
        Target::Key(a) | Target::Attr(a) => {
            Value::from_json(j, a.datatype).map_err(|e| bad(format!("\"{name}\": {e}")))
        }
        Target::Path(..) => Ok(untyped(j)),
    }
}

fn datatype_of(space: &Space, name: &str) -> Option<Datatype> {
    space.any_attribute(name).map(|a| a.datatype)
}

pub fn checks_from(space: &Space, text: Option<&str>) -> Result<Vec<Check>, ClientError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (attr, v) in json(text, "CHECKS")? {
        let plain = !matches!(
            datatype_of(space, &attr),
            Some(Datatype::Map(..) | Datatype::Document)
        );
        let op = match &v {
            Json::Object(m) if plain && m.len() == 1 => m.iter().next(),
            _ => None,
        };
        let pred = match op {
            None => Predicate::Equals(value_for(space, &attr, &v)?),
            Some((name, arg)) => {
                let val = |j: &Json| value_for(space, &attr, j);
                let elem = |j: &Json| match datatype_of(space, &attr) {
                    Some(Datatype::List(p) | Datatype::Set(p)) => Value::from_json(j, p.datatype())
                        .map_err(|e| bad(format!("\"{attr}\": {e}"))),
                    _ => val(j),
                };
                let len = |j: &Json| {
                    j.as_u64()
                        .ok_or_else(|| bad(format!("\"{attr}\": {name} takes a length")))
                };
                match name.as_str() {
                    "eq" => Predicate::Equals(val(arg)?),
                    "lt" => Predicate::LessThan(val(arg)?),
                    "le" => Predicate::LessEqual(val(arg)?),
                    "ge" => Predicate::GreaterEqual(val(arg)?),
                    "gt" => Predicate::GreaterThan(val(arg)?),
                    "range" => match arg.as_array().map(Vec::as_slice) {
                        Some([lo, hi]) => Predicate::Range(val(lo)?, val(hi)?),
                        _ => return Err(bad(format!("\"{attr}\": range takes [low, high]"))),
                    },
                    "regex" => Predicate::Regex(
                        arg.as_str()
                            .ok_or_else(|| bad(format!("\"{attr}\": regex takes a string")))?
                            .to_string(),
                    ),
                    "contains" => Predicate::Contains(elem(arg)?),
                    "length_eq" => Predicate::LengthEquals(len(arg)?),
                    "length_le" => Predicate::LengthLessEqual(len(arg)?),
                    "length_ge" => Predicate::LengthGreaterEqual(len(arg)?),
                    other => return Err(bad(format!("\"{attr}\": unknown operator \"{other}\""))),
                }
            }
        };
        out.push(Check::new(&attr, pred));
    }
    Ok(out)
}

pub fn attrs_from(space: &Space, text: &str) -> Result<Vec<(String, Value)>, ClientError> {
    json(text, "ATTRS")?
        .iter()
        .map(|(k, v)| Ok((k.clone(), value_for(space, k, v)?)))
        .collect()
}

fn puts(attrs: &[(String, Value)]) -> Vec<(&str, Value)> {
    attrs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

/// A map key written as a JSON object key (always a string) read as the key type.
fn map_key(kp: hyperdex_model::Primitive, k: &str) -> Result<Value, String> {
    match kp {
        hyperdex_model::Primitive::String => Ok(Value::string(k)),
        hyperdex_model::Primitive::Int => k
            .parse()
            .map(Value::Int)
            .map_err(|_| "not an int".to_string()),
        hyperdex_model::Primitive::Float => k
            .parse()
            .map(Value::Float)
            .map_err(|_| "not a float".to_string()),
    }
}

/// Builds the functions of `hyperdex atomic OP`.
pub fn funcs_for(space: &Space, op: &str, text: &str) -> Result<Vec<Funcall>, ClientError> {
    let op = op.replace('_', "-");
    let attrs = json(text, "ATTRS")?;
    let mut out = Vec::new();
    for (attr, j) in &attrs {
        out.extend(funcs_for_attr(space, &op, attr, j)?);
    }
    Ok(out)
}

/// The functions `op` makes of one attribute's JSON argument.
fn funcs_for_attr(
    space: &Space,
    op: &str,
    attr: &str,
    j: &Json,
) -> Result<Vec<Funcall>, ClientError> {
    let ty = datatype_of(space, attr);
    let elem = |j: &Json| match ty {
        Some(Datatype::List(p) | Datatype::Set(p)) => {
            Value::from_json(j, p.datatype()).map_err(|e| bad(format!("\"{attr}\": {e}")))
        }
        _ => Ok(untyped(j)),
    };
    let num = |name: &str| NumOp::from_suffix(name);
    if let Some(n) = op.strip_prefix("atomic-").and_then(num).or_else(|| num(op)) {
        return Ok(vec![Funcall::new(attr, Func::Num(n, untyped(j)))]);
    }
    let each_entry = |f: &dyn Fn(Value, Value) -> Func| -> Result<Vec<Funcall>, ClientError> {
        Ok(map_entries(ty, op, attr, j)?
            .into_iter()
            .map(|(k, v)| Funcall::new(attr, f(k, v)))
            .collect())
    };
    if let Some(n) = op.strip_prefix("map-atomic-").and_then(num) {
        return each_entry(&|k, v| Func::MapNum(n, k, v));
    }
    let f = match op {
        "string-prepend" => Func::StringPrepend(untyped(j)),
        "string-append" => Func::StringAppend(untyped(j)),
        "string-ltrim" | "string-rtrim" => {
            let n = j
                .as_i64()
                .ok_or_else(|| bad(format!("\"{attr}\": {op} takes a number of bytes")))?;
            if op == "string-ltrim" {
                Func::StringLtrim(n)
            } else {
                Func::StringRtrim(n)
            }
        }
        "list-lpush" => Func::ListLpush(elem(j)?),
        "list-rpush" => Func::ListRpush(elem(j)?),
        "set-add" => Func::SetAdd(elem(j)?),
        "set-remove" => Func::SetRemove(elem(j)?),
        "set-union" => Func::SetUnion(value_for(space, attr, j)?),
        "set-intersect" => Func::SetIntersect(value_for(space, attr, j)?),
        "map-add" => return each_entry(&Func::MapAdd),
        "map-remove" => return map_remove(ty, attr, j),
        "map-string-prepend" => return each_entry(&Func::MapStringPrepend),
        "map-string-append" => return each_entry(&Func::MapStringAppend),
        "document-rename" => Func::DocumentRename(
            j.as_str()
                .ok_or_else(|| {
                    bad(format!(
                        "\"{attr}\": document-rename takes the new path as a string"
                    ))
                })?
                .to_string(),
        ),
        "document-unset" => Func::DocumentUnset,
        other => {
            return Err(ClientError::new(
                ReturnCode::Exception,
                format!(
                    "unknown operation \"{other}\" (try atomic-add, string-append, list-rpush, set-add, \
                     set-union, map-add, map-remove, map-atomic-add, document-unset)"
                ),
            ))
        }
    };
    Ok(vec![Funcall::new(attr, f)])
}

/// The `{key: value}` entries of a map operation's argument, converted to the map's types
/// (values keep their JSON type except for `map-add`, which stores them).
fn map_entries(
    ty: Option<Datatype>,
    op: &str,
    attr: &str,
    j: &Json,
) -> Result<Vec<(Value, Value)>, ClientError> {
    let Some(Datatype::Map(kp, vp)) = ty else {
        return Err(bad(format!("\"{attr}\" is not a map attribute")));
    };
    let Json::Object(m) = j else {
        return Err(bad(format!(
            "\"{attr}\": expected an object of map entries"
        )));
    };
    m.iter()
        .map(|(k, v)| {
            let key = map_key(kp, k).map_err(|e| bad(format!("\"{attr}\" map key {k:?}: {e}")))?;
            let val = match op {
                "map-add" => Value::from_json(v, vp.datatype()),
                _ => Ok(untyped(v)),
            }
            .map_err(|e| bad(format!("\"{attr}\"[{k:?}]: {e}")))?;
            Ok((key, val))
        })
        .collect()
}

/// `map-remove` takes a key, a list of keys, or an object whose keys are removed.
fn map_remove(ty: Option<Datatype>, attr: &str, j: &Json) -> Result<Vec<Funcall>, ClientError> {
    let keys: Vec<Json> = match j {
        Json::Array(a) => a.clone(),
        Json::Object(m) => m.keys().map(|k| Json::String(k.clone())).collect(),
        other => vec![other.clone()],
    };
    keys.iter()
        .map(|k| {
            let kv = match ty {
                Some(Datatype::Map(kp, _)) => Value::from_json(k, kp.datatype())
                    .map_err(|e| bad(format!("\"{attr}\" map key: {e}")))?,
                _ => untyped(k),
            };
            Ok(Funcall::new(attr, Func::MapRemove(kv)))
        })
        .collect()
}

/// One object as a JSON line, keys sorted.
pub fn object_json(o: &Object) -> String {
    let m: serde_json::Map<String, Json> =
        o.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
    Json::Object(m).to_string()
}

/// Exit status and message for a write's reply.
fn finish(reply: Reply) -> ExitCode {
    match reply {
        Reply::Success | Reply::Count(_) => ExitCode::SUCCESS,
        Reply::NotFound => {
            eprintln!("not found");
            ExitCode::from(1)
        }
        Reply::CmpFail(why) => {
            eprintln!("comparison failed: {why}");
            ExitCode::from(1)
        }
        Reply::Error(code, message) => fail(&ClientError { code, message }),
        other => {
            eprintln!("error: unexpected reply {other:?}");
            ExitCode::from(2)
        }
    }
}

pub async fn run(cmd: DataCommand) -> ExitCode {
    match execute(cmd).await {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

async fn execute(cmd: DataCommand) -> Result<ExitCode, ClientError> {
    let (coord, space_name) = match &cmd {
        DataCommand::Get { coord, space, .. }
        | DataCommand::Put { coord, space, .. }
        | DataCommand::PutIfNotExist { coord, space, .. }
        | DataCommand::Del { coord, space, .. }
        | DataCommand::CondPut { coord, space, .. }
        | DataCommand::Atomic { coord, space, .. }
        | DataCommand::Search { coord, space, .. }
        | DataCommand::Count { coord, space, .. } => (coord.addr(), space.clone()),
    };
    let options = match &cmd {
        DataCommand::Get { coord, .. }
        | DataCommand::Put { coord, .. }
        | DataCommand::PutIfNotExist { coord, .. }
        | DataCommand::Del { coord, .. }
        | DataCommand::CondPut { coord, .. }
        | DataCommand::Atomic { coord, .. }
        | DataCommand::Search { coord, .. }
        | DataCommand::Count { coord, .. } => coord.client_options()?,
    };
    let client = Client::connect_with(&coord, options).await?;
    let config = client.config();
    let space = config
        .space(&space_name)
        .ok_or_else(|| {
            ClientError::new(
                ReturnCode::UnknownSpace,
                format!("unknown space \"{space_name}\""),
            )
        })?
        .schema
        .clone();
    match cmd {
        DataCommand::Get { key, .. } => {
            let op = Operation::get(&space_name, parse_key(&space, &key)?);
            Ok(match client.call(op).await {
                Reply::Found(o) => {
                    crate::outln!("{}", object_json(&o));
                    ExitCode::SUCCESS
                }
                other => finish(other),
            })
        }
        DataCommand::Search { checks, .. } => {
            let checks = checks_from(&space, checks.as_deref())?;
            for o in client.search(&space_name, checks).await? {
                crate::outln!("{}", object_json(&o));
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Count { checks, .. } => {
            let checks = checks_from(&space, checks.as_deref())?;
            crate::outln!("{}", client.count(&space_name, checks).await?);
            Ok(ExitCode::SUCCESS)
        }
        write => {
            let op = write_op(&space, &space_name, write)?;
            Ok(finish(client.call(op).await))
        }
    }
}

/// The operation of a data command that writes.
fn write_op(space: &Space, name: &str, cmd: DataCommand) -> Result<Operation, ClientError> {
    Ok(match cmd {
        DataCommand::Put { key, attrs, .. } => {
            let attrs = attrs_from(space, &attrs)?;
            Operation::put(name, parse_key(space, &key)?, puts(&attrs))
        }
        DataCommand::PutIfNotExist { key, attrs, .. } => {
            let attrs = attrs_from(space, &attrs)?;
            Operation::put_if_not_exist(name, parse_key(space, &key)?, puts(&attrs))
        }
        DataCommand::Del { key, .. } => Operation::del(name, parse_key(space, &key)?),
        DataCommand::CondPut {
            key, checks, attrs, ..
        } => {
            let checks = checks_from(space, Some(&checks))?;
            let attrs = attrs_from(space, &attrs)?;
            Operation::cond_put(name, parse_key(space, &key)?, checks, puts(&attrs))
        }
        DataCommand::Atomic { op, key, attrs, .. } => {
            let funcs = funcs_for(space, &op, &attrs)?;
            Operation::funcs(name, parse_key(space, &key)?, funcs)
        }
        DataCommand::Get { .. } | DataCommand::Search { .. } | DataCommand::Count { .. } => {
            return Err(ClientError::new(
                ReturnCode::Internal,
                "not a write".to_string(),
            ))
        }
    })
}
