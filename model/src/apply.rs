//! The meaning of a write: `apply(space, current object, write) -> new object or a code`.
//!
//! This is the one definition of HyperDex's semantics in the project; daemons call it at the
//! head of a chain to compute new objects, and the model calls it to say what a correct
//! sequential copy of the database answers.
//!
//! Steps, in order (the first failure wins and nothing changes):
//!
//! 1. **Validation** ([`normalize_write`]), independent of the stored object: every attribute
//!    named exists (else UNKNOWNATTR), the key is not named as an attribute to change (else
//!    DONTUSEKEY), every value has the attribute's type and every function applies to it (else
//!    WRONGTYPE). Values are coerced here (see [`crate::value::coerce`]). Clients run this
//!    before sending anything; servers run it again and never trust the client.
//! 2. **Existence**: a missing object gives NOTFOUND to `del` and to every call that must find
//!    it; an existing object gives CMPFAIL to `put_if_not_exist`.
//! 3. **Checks**: every check must pass on the existing object, else CMPFAIL saying which one.
//!    (`cond_put_or_create` on a missing object creates it without checking.)
//! 4. **Functions**, applied in the order given to a copy of the object (a missing object
//!    starts from every attribute's default). A function that cannot be applied — integer
//!    overflow, division or modulo by zero, `INT64_MIN / -1` or `% -1`, a document path through
//!    a value of the wrong type, renaming or unsetting a missing path — fails the whole call
//!    with CMPFAIL and a reason such as `integer overflow in atomic_add on "n"`.
//!
//! Integer division and modulo round toward negative infinity (the remainder takes the
//! divisor's sign). Float arithmetic is IEEE 754 and never fails.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::Value as Json;

use crate::op::{
    Check, Existence, Func, Funcall, KeyWrite, NumOp, Object, Predicate, Reply, ReturnCode,
};
use crate::schema::{Attribute, Space};
use crate::value::{coerce, Datatype, Value};

/// Why a call failed: a code and a message for users.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason} [{code}]")]
pub struct Failure {
    pub code: ReturnCode,
    pub reason: String,
}

impl Failure {
    pub fn new(code: ReturnCode, reason: impl Into<String>) -> Failure {
        Failure {
            code,
            reason: reason.into(),
        }
    }

    fn wrong_type(reason: impl Into<String>) -> Failure {
        Failure::new(ReturnCode::WrongType, reason)
    }

    fn cmpfail(reason: impl Into<String>) -> Failure {
        Failure::new(ReturnCode::CmpFail, reason)
    }

    /// The reply a client receives for this failure.
    pub fn into_reply(self) -> Reply {
        match self.code {
            ReturnCode::NotFound => Reply::NotFound,
            ReturnCode::CmpFail => Reply::CmpFail(self.reason),
            code => Reply::Error(code, self.reason),
        }
    }
}

/// One step of a document path: an object field or an array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    Field(String),
    Index(usize),
}

/// What an attribute name in a call refers to.
#[derive(Clone, Debug)]
pub enum Target<'a> {
    Key(&'a Attribute),
    Attr(&'a Attribute),
    /// A path inside a document attribute.
    Path(&'a Attribute, Vec<PathSeg>),
}

fn unknown_attr(space: &Space, name: &str) -> Failure {
    Failure::new(
        ReturnCode::UnknownAttr,
        format!(
            "unknown attribute \"{name}\" in space \"{}\" (attributes: {})",
            space.name,
            space.attribute_names()
        ),
    )
}

/// Parses `a.b[3].c` (the part after the document attribute's name).
pub fn parse_path(full: &str, rest: &str) -> Result<Vec<PathSeg>, String> {
    let bad = || format!("malformed document path \"{full}\"");
    let mut segs = Vec::new();
    let mut s = rest;
    while !s.is_empty() {
        if let Some(r) = s.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err(bad());
            }
            segs.push(PathSeg::Field(r[..end].to_string()));
            s = &r[end..];
        } else if let Some(r) = s.strip_prefix('[') {
            let end = r.find(']').ok_or_else(bad)?;
            let idx = r[..end].parse::<usize>().map_err(|_| bad())?;
            segs.push(PathSeg::Index(idx));
            s = &r[end + 1..];
        } else {
            return Err(bad());
        }
    }
    if segs.is_empty() {
        return Err(bad());
    }
    Ok(segs)
}

/// Resolves an attribute name (possibly a document path) in `space`.
pub fn resolve<'a>(space: &'a Space, name: &str) -> Result<Target<'a>, Failure> {
    if name == space.key.name {
        return Ok(Target::Key(&space.key));
    }
    if let Some(a) = space.attribute(name) {
        return Ok(Target::Attr(a));
    }
    if let Some(pos) = name.find(['.', '[']) {
        if let Some(a) = space.attribute(&name[..pos]) {
            if a.datatype == Datatype::Document {
                let segs = parse_path(name, &name[pos..])
                    .map_err(|e| Failure::new(ReturnCode::UnknownAttr, e))?;
                return Ok(Target::Path(a, segs));
            }
            return Err(Failure::new(
                ReturnCode::UnknownAttr,
                format!(
                    "\"{name}\" is a path, but attribute \"{}\" is a {}, not a document",
                    a.name, a.datatype
                ),
            ));
        }
    }
    Err(unknown_attr(space, name))
}

fn coerce_for(value: &Value, ty: Datatype, what: &str) -> Result<Value, Failure> {
    coerce(value.clone(), ty).map_err(|e| Failure::wrong_type(format!("{what}: {e}")))
}

/// A value placed inside a document becomes JSON; strings must be UTF-8 there.
fn json_of(value: &Value, what: &str) -> Result<Json, Failure> {
    if let Value::String(s) = value {
        if std::str::from_utf8(s).is_err() {
            return Err(Failure::wrong_type(format!(
                "{what}: a string stored in a document must be UTF-8"
            )));
        }
    }
    Ok(value.to_json())
}

fn validate_check(space: &Space, check: &Check) -> Result<Check, Failure> {
    let target = resolve(space, &check.attr)?;
    let what = format!("{} on \"{}\"", check.predicate.name(), check.attr);
    let ty = match &target {
        Target::Key(a) | Target::Attr(a) => Some(a.datatype),
        Target::Path(..) => None,
    };
    let same = |v: &Value| -> Result<Value, Failure> {
        match ty {
            Some(ty) => coerce_for(v, ty, &what),
            None => json_of(v, &what).map(|_| v.clone()),
        }
    };
    let ordered = |v: &Value| -> Result<Value, Failure> {
        match ty {
            Some(ty) if !ty.is_comparable() => Err(Failure::wrong_type(format!(
                "{what}: attribute of type {ty} cannot be compared"
            ))),
            _ => same(v),
        }
    };
    let predicate = match &check.predicate {
        Predicate::Equals(v) => Predicate::Equals(same(v)?),
        Predicate::LessThan(v) => Predicate::LessThan(ordered(v)?),
        Predicate::LessEqual(v) => Predicate::LessEqual(ordered(v)?),
        Predicate::GreaterEqual(v) => Predicate::GreaterEqual(ordered(v)?),
        Predicate::GreaterThan(v) => Predicate::GreaterThan(ordered(v)?),
        Predicate::Range(lo, hi) => Predicate::Range(ordered(lo)?, ordered(hi)?),
        Predicate::Regex(r) => {
            if let Some(ty) = ty.filter(|t| *t != Datatype::String) {
                return Err(Failure::wrong_type(format!(
                    "{what}: regular expressions apply to strings, not {ty}"
                )));
            }
            regex::bytes::Regex::new(r).map_err(|e| {
                Failure::wrong_type(format!("{what}: invalid regular expression: {e}"))
            })?;
            Predicate::Regex(r.clone())
        }
        p @ (Predicate::LengthEquals(_)
        | Predicate::LengthLessEqual(_)
        | Predicate::LengthGreaterEqual(_)) => {
            if let Some(ty) = ty.filter(|t| !t.has_length()) {
                return Err(Failure::wrong_type(format!(
                    "{what}: attribute of type {ty} has no length"
                )));
            }
            p.clone()
        }
        Predicate::Contains(v) => match ty {
            Some(Datatype::List(p) | Datatype::Set(p) | Datatype::Map(p, _)) => {
                Predicate::Contains(coerce_for(v, p.datatype(), &what)?)
            }
            Some(ty) => {
                return Err(Failure::wrong_type(format!(
                    "{what}: attribute of type {ty} has no elements"
                )))
            }
            None => Predicate::Contains(same(v)?),
        },
    };
    Ok(Check {
        attr: check.attr.clone(),
        predicate,
    })
}

/// Checks and coerces a list of search predicates.
pub fn validate_checks(space: &Space, checks: &[Check]) -> Result<Vec<Check>, Failure> {
    checks.iter().map(|c| validate_check(space, c)).collect()
}

fn num_arg(op: NumOp, ty: Datatype, v: &Value, what: &str) -> Result<Value, Failure> {
    match ty {
        Datatype::Int => coerce_for(v, Datatype::Int, what),
        Datatype::Float if op.applies_to_floats() => coerce_for(v, Datatype::Float, what),
        Datatype::Float => Err(Failure::wrong_type(format!(
            "{what}: {} does not apply to floats",
            op.suffix()
        ))),
        ty => Err(Failure::wrong_type(format!(
            "{what}: arithmetic does not apply to {ty}"
        ))),
    }
}

fn validate_funcall(space: &Space, fc: &Funcall) -> Result<Funcall, Failure> {
    let target = resolve(space, &fc.attr)?;
    let what = format!("{} on \"{}\"", fc.func.name(), fc.attr);
    let mismatch = |ty: Datatype| {
        Failure::wrong_type(format!(
            "{what}: does not apply to an attribute of type {ty}"
        ))
    };
    let func = match target {
        Target::Key(_) => {
            return Err(Failure::new(
                ReturnCode::DontUseKey,
                format!(
                    "{what}: \"{}\" is the key of space \"{}\" and cannot be changed",
                    fc.attr, space.name
                ),
            ))
        }
        Target::Path(..) => match &fc.func {
            Func::Set(v) => {
                json_of(v, &what)?;
                Func::Set(v.clone())
            }
            Func::Num(op, v) => match v {
                Value::Int(_) | Value::Float(_) => Func::Num(*op, v.clone()),
                other => {
                    return Err(Failure::wrong_type(format!(
                        "{what}: expected a number, found {}",
                        other.kind()
                    )))
                }
            },
            Func::StringPrepend(v) | Func::StringAppend(v) => {
                let v = coerce_for(v, Datatype::String, &what)?;
                json_of(&v, &what)?;
                match &fc.func {
                    Func::StringPrepend(_) => Func::StringPrepend(v),
                    _ => Func::StringAppend(v),
                }
            }
            Func::ListLpush(v) | Func::ListRpush(v) => {
                json_of(v, &what)?;
                fc.func.clone()
            }
            Func::DocumentRename(to) => {
                let Target::Path(attr, _) = resolve(space, &fc.attr)? else {
                    unreachable!()
                };
                let rel = to
                    .strip_prefix(&format!("{}.", attr.name))
                    .map(|r| format!(".{r}"))
                    .unwrap_or_else(|| format!(".{to}"));
                parse_path(to, &rel).map_err(|e| Failure::wrong_type(format!("{what}: {e}")))?;
                Func::DocumentRename(rel[1..].to_string())
            }
            Func::DocumentUnset => Func::DocumentUnset,
            _ => return Err(mismatch(Datatype::Document)),
        },
        Target::Attr(a) => {
            let ty = a.datatype;
            match (&fc.func, ty) {
                (Func::Set(v), ty) => Func::Set(coerce_for(v, ty, &what)?),
                (Func::Num(op, v), ty) => Func::Num(*op, num_arg(*op, ty, v, &what)?),
                (Func::StringPrepend(v), Datatype::String) => {
                    Func::StringPrepend(coerce_for(v, ty, &what)?)
                }
                (Func::StringAppend(v), Datatype::String) => {
                    Func::StringAppend(coerce_for(v, ty, &what)?)
                }
                (Func::StringLtrim(n) | Func::StringRtrim(n), Datatype::String) => {
                    if *n < 0 {
                        return Err(Failure::wrong_type(format!(
                            "{what}: cannot trim a negative number of bytes ({n})"
                        )));
                    }
                    fc.func.clone()
                }
                (Func::ListLpush(v), Datatype::List(p)) => {
                    Func::ListLpush(coerce_for(v, p.datatype(), &what)?)
                }
                (Func::ListRpush(v), Datatype::List(p)) => {
                    Func::ListRpush(coerce_for(v, p.datatype(), &what)?)
                }
                (Func::SetAdd(v), Datatype::Set(p)) => {
                    Func::SetAdd(coerce_for(v, p.datatype(), &what)?)
                }
                (Func::SetRemove(v), Datatype::Set(p)) => {
                    Func::SetRemove(coerce_for(v, p.datatype(), &what)?)
                }
                (Func::SetUnion(v), Datatype::Set(_)) => Func::SetUnion(coerce_for(v, ty, &what)?),
                (Func::SetIntersect(v), Datatype::Set(_)) => {
                    Func::SetIntersect(coerce_for(v, ty, &what)?)
                }
                (Func::MapAdd(k, v), Datatype::Map(kp, vp)) => Func::MapAdd(
                    coerce_for(k, kp.datatype(), &what)?,
                    coerce_for(v, vp.datatype(), &what)?,
                ),
                (Func::MapRemove(k), Datatype::Map(kp, _)) => {
                    Func::MapRemove(coerce_for(k, kp.datatype(), &what)?)
                }
                (Func::MapNum(op, k, v), Datatype::Map(kp, vp)) => Func::MapNum(
                    *op,
                    coerce_for(k, kp.datatype(), &what)?,
                    num_arg(*op, vp.datatype(), v, &what)?,
                ),
                (Func::MapStringPrepend(k, v), Datatype::Map(kp, vp))
                    if vp.datatype() == Datatype::String =>
                {
                    Func::MapStringPrepend(
                        coerce_for(k, kp.datatype(), &what)?,
                        coerce_for(v, Datatype::String, &what)?,
                    )
                }
                (Func::MapStringAppend(k, v), Datatype::Map(kp, vp))
                    if vp.datatype() == Datatype::String =>
                {
                    Func::MapStringAppend(
                        coerce_for(k, kp.datatype(), &what)?,
                        coerce_for(v, Datatype::String, &what)?,
                    )
                }
                (Func::DocumentRename(_) | Func::DocumentUnset, Datatype::Document) => {
                    return Err(Failure::wrong_type(format!(
                        "{what}: name a path inside the document (\"{}.field\")",
                        fc.attr
                    )))
                }
                (_, ty) => return Err(mismatch(ty)),
            }
        }
    };
    Ok(Funcall {
        attr: fc.attr.clone(),
        func,
    })
}

/// Validates a write against the schema and returns it with every value coerced to its
/// attribute's type (step 1 of the module docs).
pub fn normalize_write(space: &Space, w: &KeyWrite) -> Result<KeyWrite, Failure> {
    let key = coerce_for(
        &w.key,
        space.key.datatype,
        &format!("key \"{}\"", space.key.name),
    )?;
    if w.erase && !w.funcs.is_empty() {
        return Err(Failure::new(
            ReturnCode::Garbage,
            "a delete cannot also change attributes",
        ));
    }
    Ok(KeyWrite {
        key,
        checks: validate_checks(space, &w.checks)?,
        funcs: w
            .funcs
            .iter()
            .map(|f| validate_funcall(space, f))
            .collect::<Result<_, _>>()?,
        existence: w.existence,
        erase: w.erase,
    })
}

/// Validates the attribute list of `get_partial` (only plain attributes can be named).
pub fn validate_get_partial(space: &Space, attrs: &[String]) -> Result<(), Failure> {
    for a in attrs {
        if space.attribute(a).is_none() {
            return Err(if *a == space.key.name {
                Failure::new(
                    ReturnCode::DontUseKey,
                    format!("\"{a}\" is the key; get_partial returns attributes"),
                )
            } else {
                unknown_attr(space, a)
            });
        }
    }
    Ok(())
}

/// A new object with every attribute at its default.
pub fn default_object(space: &Space) -> Object {
    space
        .attributes
        .iter()
        .map(|a| (a.name.clone(), a.datatype.default_value()))
        .collect()
}

fn json_at<'a>(root: &'a Json, path: &[PathSeg]) -> Option<&'a Json> {
    path.iter().try_fold(root, |j, seg| match seg {
        PathSeg::Field(f) => j.as_object()?.get(f),
        PathSeg::Index(i) => j.as_array()?.get(*i),
    })
}

fn json_cmp(a: &Json, b: &Json) -> Option<Ordering> {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Json::String(x), Json::String(y)) => Some(x.cmp(y)),
        (Json::Bool(x), Json::Bool(y)) => Some(x.cmp(y)),
        (Json::Null, Json::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

fn json_eq(a: &Json, b: &Json) -> bool {
    json_cmp(a, b).map_or(a == b, |o| o == Ordering::Equal)
}

fn regex_matches(re: &str, bytes: &[u8]) -> bool {
    regex::bytes::Regex::new(re).is_ok_and(|r| r.is_match(bytes))
}

fn value_passes(v: &Value, p: &Predicate) -> bool {
    match p {
        Predicate::Equals(x) => v == x,
        Predicate::LessThan(x) => v < x,
        Predicate::LessEqual(x) => v <= x,
        Predicate::GreaterEqual(x) => v >= x,
        Predicate::GreaterThan(x) => v > x,
        Predicate::Range(lo, hi) => lo <= v && v <= hi,
        Predicate::Regex(r) => matches!(v, Value::String(s) if regex_matches(r, s)),
        Predicate::LengthEquals(n) => v.length() == Some(*n),
        Predicate::LengthLessEqual(n) => v.length().is_some_and(|l| l <= *n),
        Predicate::LengthGreaterEqual(n) => v.length().is_some_and(|l| l >= *n),
        Predicate::Contains(x) => match v {
            Value::List(l) => l.contains(x),
            Value::Set(s) => s.contains(x),
            Value::Map(m) => m.contains_key(x),
            _ => false,
        },
    }
}

fn json_passes(j: &Json, p: &Predicate) -> bool {
    let cmp = |x: &Value| json_cmp(j, &x.to_json());
    let length = || match j {
        Json::String(s) => Some(s.len() as u64),
        Json::Array(a) => Some(a.len() as u64),
        Json::Object(o) => Some(o.len() as u64),
        _ => None,
    };
    match p {
        Predicate::Equals(x) => json_eq(j, &x.to_json()),
        Predicate::LessThan(x) => cmp(x) == Some(Ordering::Less),
        Predicate::LessEqual(x) => matches!(cmp(x), Some(Ordering::Less | Ordering::Equal)),
        Predicate::GreaterEqual(x) => {
            matches!(cmp(x), Some(Ordering::Greater | Ordering::Equal))
        }
        Predicate::GreaterThan(x) => cmp(x) == Some(Ordering::Greater),
        Predicate::Range(lo, hi) => {
            matches!(cmp(lo), Some(Ordering::Greater | Ordering::Equal))
                && matches!(cmp(hi), Some(Ordering::Less | Ordering::Equal))
        }
        Predicate::Regex(r) => matches!(j, Json::String(s) if regex_matches(r, s.as_bytes())),
        Predicate::LengthEquals(n) => length() == Some(*n),
        Predicate::LengthLessEqual(n) => length().is_some_and(|l| l <= *n),
        Predicate::LengthGreaterEqual(n) => length().is_some_and(|l| l >= *n),
        Predicate::Contains(x) => {
            let x = x.to_json();
            match (j, &x) {
                (Json::Array(a), x) => a.iter().any(|e| json_eq(e, x)),
                (Json::Object(o), Json::String(k)) => o.contains_key(k),
                _ => false,
            }
        }
    }
}

/// Whether the object with `key` passes one (validated) check.
pub fn passes(space: &Space, key: &Value, object: &Object, check: &Check) -> bool {
    match resolve(space, &check.attr) {
        Ok(Target::Key(_)) => value_passes(key, &check.predicate),
        Ok(Target::Attr(a)) => object
            .get(&a.name)
            .is_some_and(|v| value_passes(v, &check.predicate)),
        Ok(Target::Path(a, path)) => match object.get(&a.name) {
            Some(Value::Document(d)) => {
                json_at(d.json(), &path).is_some_and(|j| json_passes(j, &check.predicate))
            }
            _ => false,
        },
        Err(_) => false,
    }
}

/// Whether the object passes every (validated) check.
pub fn matches(space: &Space, key: &Value, object: &Object, checks: &[Check]) -> bool {
    checks.iter().all(|c| passes(space, key, object, c))
}

fn int_op(op: NumOp, a: i64, b: i64) -> Result<i64, &'static str> {
    const OVERFLOW: &str = "integer overflow";
    match op {
        NumOp::Add => a.checked_add(b).ok_or(OVERFLOW),
        NumOp::Sub => a.checked_sub(b).ok_or(OVERFLOW),
        NumOp::Mul => a.checked_mul(b).ok_or(OVERFLOW),
        NumOp::Div => {
            if b == 0 {
                return Err("division by zero");
            }
            let q = a.checked_div(b).ok_or(OVERFLOW)?;
            Ok(if a % b != 0 && ((a < 0) != (b < 0)) {
                q - 1
            } else {
                q
            })
        }
        NumOp::Mod => {
            if b == 0 {
                return Err("modulo by zero");
            }
            let r = a.checked_rem(b).ok_or(OVERFLOW)?;
            Ok(if r != 0 && ((r < 0) != (b < 0)) {
                r + b
            } else {
                r
            })
        }
        NumOp::And => Ok(a & b),
        NumOp::Or => Ok(a | b),
        NumOp::Xor => Ok(a ^ b),
        NumOp::Min => Ok(a.min(b)),
        NumOp::Max => Ok(a.max(b)),
    }
}

fn float_op(op: NumOp, a: f64, b: f64) -> Option<f64> {
    match op {
        NumOp::Add => Some(a + b),
        NumOp::Sub => Some(a - b),
        NumOp::Mul => Some(a * b),
        NumOp::Div => Some(a / b),
        NumOp::Min => Some(a.min(b)),
        NumOp::Max => Some(a.max(b)),
        _ => None,
    }
}

/// Applies an arithmetic function to a value of the (validated) same kind.
fn num(op: NumOp, old: &Value, arg: &Value, what: &str) -> Result<Value, Failure> {
    match (old, arg) {
        (Value::Int(a), Value::Int(b)) => int_op(op, *a, *b)
            .map(Value::Int)
            .map_err(|e| Failure::cmpfail(format!("{e} in {what}"))),
        (Value::Float(a), Value::Float(b)) => {
            float_op(op, *a, *b).map(Value::Float).ok_or_else(|| {
                Failure::cmpfail(format!(
                    "{} does not apply to floats in {what}",
                    op.suffix()
                ))
            })
        }
        _ => Err(Failure::cmpfail(format!(
            "{what}: cannot apply to a {} with a {}",
            old.kind(),
            arg.kind()
        ))),
    }
}

fn json_num(op: NumOp, old: Option<&Json>, arg: &Value, what: &str) -> Result<Json, Failure> {
    let old = match old {
        None => Value::Int(0),
        Some(Json::Number(n)) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Some(other) => {
            return Err(Failure::cmpfail(format!(
                "{what}: the document holds {}, not a number",
                json_type_name(other)
            )))
        }
    };
    let (old, arg) = match (&old, arg) {
        (Value::Int(_), Value::Int(_)) => (old, arg.clone()),
        (Value::Int(a), Value::Float(_)) => (Value::Float(*a as f64), arg.clone()),
        (Value::Float(_), Value::Int(b)) => (old, Value::Float(*b as f64)),
        _ => (old, arg.clone()),
    };
    Ok(num(op, &old, &arg, what)?.to_json())
}

fn json_type_name(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn path_text(path: &[PathSeg]) -> String {
    path.iter()
        .map(|s| match s {
            PathSeg::Field(f) => format!(".{f}"),
            PathSeg::Index(i) => format!("[{i}]"),
        })
        .collect()
}

/// The slot at `path`, creating missing object fields on the way. Fails when the path goes
/// through something that is not an object (or an array, for an index in range).
fn slot_mut<'a>(root: &'a mut Json, path: &[PathSeg], what: &str) -> Result<&'a mut Json, Failure> {
    let mut j = root;
    for (i, seg) in path.iter().enumerate() {
        let here = path_text(&path[..i]);
        if matches!(seg, PathSeg::Field(_)) && j.is_null() {
            *j = Json::Object(serde_json::Map::new());
        }
        let fits = match (seg, &*j) {
            (PathSeg::Field(_), Json::Object(_)) => true,
            (PathSeg::Index(idx), Json::Array(a)) => *idx < a.len(),
            _ => false,
        };
        if !fits {
            let wanted = match seg {
                PathSeg::Field(_) => "an object".to_string(),
                PathSeg::Index(idx) => format!("an array with element {idx}"),
            };
            return Err(Failure::cmpfail(format!(
                "{what}: document path \"{here}\" holds {}, not {wanted}",
                json_type_name(j)
            )));
        }
        j = match (seg, j) {
            (PathSeg::Field(f), Json::Object(o)) => o.entry(f.clone()).or_insert(Json::Null),
            (PathSeg::Index(idx), Json::Array(a)) => &mut a[*idx],
            _ => unreachable!("checked above"),
        };
    }
    Ok(j)
}

/// Removes and returns the value at `path`, failing when it is missing.
fn take_path(root: &mut Json, path: &[PathSeg], what: &str) -> Result<Json, Failure> {
    let missing = || {
        Failure::cmpfail(format!(
            "{what}: no value at document path \"{}\"",
            path_text(path)
        ))
    };
    let (last, parent) = path.split_last().ok_or_else(missing)?;
    let parent = parent.iter().try_fold(root, |j, seg| match seg {
        PathSeg::Field(f) => j.as_object_mut()?.get_mut(f),
        PathSeg::Index(i) => j.as_array_mut()?.get_mut(*i),
    });
    match (parent, last) {
        (Some(Json::Object(o)), PathSeg::Field(f)) => o.remove(f).ok_or_else(missing),
        (Some(Json::Array(a)), PathSeg::Index(i)) if *i < a.len() => Ok(a.remove(*i)),
        _ => Err(missing()),
    }
}

fn apply_path(doc: &mut Json, path: &[PathSeg], func: &Func, what: &str) -> Result<(), Failure> {
    match func {
        Func::Set(v) => *slot_mut(doc, path, what)? = v.to_json(),
        Func::Num(op, arg) => {
            let existing = json_at(doc, path).cloned();
            let new = json_num(*op, existing.as_ref().filter(|j| !j.is_null()), arg, what)?;
            *slot_mut(doc, path, what)? = new;
        }
        Func::StringPrepend(Value::String(s)) | Func::StringAppend(Value::String(s)) => {
            let slot = slot_mut(doc, path, what)?;
            let add = String::from_utf8_lossy(s);
            let old = match slot {
                Json::Null => String::new(),
                Json::String(old) => std::mem::take(old),
                other => {
                    return Err(Failure::cmpfail(format!(
                        "{what}: the document holds {}, not a string",
                        json_type_name(other)
                    )))
                }
            };
            *slot = Json::String(if matches!(func, Func::StringPrepend(_)) {
                format!("{add}{old}")
            } else {
                format!("{old}{add}")
            });
        }
        Func::ListLpush(v) | Func::ListRpush(v) => {
            let slot = slot_mut(doc, path, what)?;
            if slot.is_null() {
                *slot = Json::Array(Vec::new());
            }
            match slot {
                Json::Array(a) if matches!(func, Func::ListLpush(_)) => a.insert(0, v.to_json()),
                Json::Array(a) => a.push(v.to_json()),
                other => {
                    return Err(Failure::cmpfail(format!(
                        "{what}: the document holds {}, not an array",
                        json_type_name(other)
                    )))
                }
            }
        }
        Func::DocumentUnset => {
            take_path(doc, path, what)?;
        }
        Func::DocumentRename(to) => {
            let to = parse_path(to, &format!(".{to}"))
                .map_err(|e| Failure::cmpfail(format!("{what}: {e}")))?;
            let v = take_path(doc, path, what)?;
            *slot_mut(doc, &to, what)? = v;
        }
        _ => {
            return Err(Failure::cmpfail(format!(
                "{what}: does not apply inside a document"
            )))
        }
    }
    Ok(())
}

fn apply_attr(old: Value, func: &Func, what: &str) -> Result<Value, Failure> {
    Ok(match (old, func) {
        (_, Func::Set(v)) => v.clone(),
        (old, Func::Num(op, arg)) => num(*op, &old, arg, what)?,
        (Value::String(mut s), Func::StringPrepend(Value::String(p))) => {
            s.splice(0..0, p.iter().copied());
            Value::String(s)
        }
        (Value::String(mut s), Func::StringAppend(Value::String(p))) => {
            s.extend_from_slice(p);
            Value::String(s)
        }
        (Value::String(mut s), Func::StringLtrim(n)) => {
            let n = (*n as u64).min(s.len() as u64) as usize;
            s.drain(..n);
            Value::String(s)
        }
        (Value::String(mut s), Func::StringRtrim(n)) => {
            let n = (*n as u64).min(s.len() as u64) as usize;
            s.truncate(s.len() - n);
            Value::String(s)
        }
        (Value::List(mut l), Func::ListLpush(v)) => {
            l.insert(0, v.clone());
            Value::List(l)
        }
        (Value::List(mut l), Func::ListRpush(v)) => {
            l.push(v.clone());
            Value::List(l)
        }
        (Value::Set(mut s), Func::SetAdd(v)) => {
            s.insert(v.clone());
            Value::Set(s)
        }
        (Value::Set(mut s), Func::SetRemove(v)) => {
            s.remove(v);
            Value::Set(s)
        }
        (Value::Set(mut s), Func::SetUnion(Value::Set(o))) => {
            s.extend(o.iter().cloned());
            Value::Set(s)
        }
        (Value::Set(s), Func::SetIntersect(Value::Set(o))) => {
            Value::Set(s.intersection(o).cloned().collect::<BTreeSet<_>>())
        }
        (Value::Map(mut m), Func::MapAdd(k, v)) => {
            m.insert(k.clone(), v.clone());
            Value::Map(m)
        }
        (Value::Map(mut m), Func::MapRemove(k)) => {
            m.remove(k);
            Value::Map(m)
        }
        (Value::Map(mut m), Func::MapNum(op, k, arg)) => {
            let zero = match arg {
                Value::Float(_) => Value::Float(0.0),
                _ => Value::Int(0),
            };
            let old = m.get(k).cloned().unwrap_or(zero);
            m.insert(k.clone(), num(*op, &old, arg, what)?);
            Value::Map(m)
        }
        (Value::Map(mut m), Func::MapStringPrepend(k, Value::String(p))) => {
            let mut s = match m.remove(k) {
                Some(Value::String(s)) => s,
                _ => Vec::new(),
            };
            s.splice(0..0, p.iter().copied());
            m.insert(k.clone(), Value::String(s));
            Value::Map(m)
        }
        (Value::Map(mut m), Func::MapStringAppend(k, Value::String(p))) => {
            let mut s = match m.remove(k) {
                Some(Value::String(s)) => s,
                _ => Vec::new(),
            };
            s.extend_from_slice(p);
            m.insert(k.clone(), Value::String(s));
            Value::Map(m)
        }
        (old, func) => {
            return Err(Failure::cmpfail(format!(
                "{what}: {} cannot be applied to a {}",
                func.name(),
                old.kind()
            )))
        }
    })
}

fn check_reason(c: &Check) -> String {
    format!("check {} on \"{}\" failed", c.predicate.name(), c.attr)
}

/// Applies a write to the current object (`None`: the key has no object) and returns the
/// new object (`None`: the object is deleted), or why nothing changed.
pub fn apply(
    space: &Space,
    current: Option<&Object>,
    write: &KeyWrite,
) -> Result<Option<Object>, Failure> {
    let w = normalize_write(space, write)?;
    match current {
        None if w.erase || w.existence == Existence::MustExist => {
            return Err(Failure::new(ReturnCode::NotFound, "not found"))
        }
        Some(_) if w.existence == Existence::MustNotExist => {
            return Err(Failure::cmpfail("the object already exists"))
        }
        Some(obj) => {
            if let Some(c) = w.checks.iter().find(|c| !passes(space, &w.key, obj, c)) {
                return Err(Failure::cmpfail(check_reason(c)));
            }
        }
        None => {}
    }
    if w.erase {
        return Ok(None);
    }
    let mut obj = match current {
        Some(o) => o.clone(),
        None => default_object(space),
    };
    for fc in &w.funcs {
        let what = format!("{} on \"{}\"", fc.func.name(), fc.attr);
        match resolve(space, &fc.attr)? {
            Target::Key(_) => unreachable!("normalize_write rejects the key"),
            Target::Attr(a) => {
                let old = obj
                    .remove(&a.name)
                    .unwrap_or_else(|| a.datatype.default_value());
                obj.insert(a.name.clone(), apply_attr(old, &fc.func, &what)?);
            }
            Target::Path(a, path) => {
                let Some(Value::Document(doc)) = obj.get_mut(&a.name) else {
                    return Err(Failure::cmpfail(format!("{what}: not a document")));
                };
                apply_path(doc.json_mut(), &path, &fc.func, &what)?;
            }
        }
    }
    Ok(Some(obj))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Operation;
    use crate::schema::parse_space;

    fn space() -> Space {
        parse_space(
            "space t key k attributes string s, int i, float f, list(string) ls, set(int) si, \
             map(string, int) msi, map(string, float) msf, document d",
        )
        .unwrap()
    }

    fn write(op: Operation) -> KeyWrite {
        match op {
            Operation::Write { write, .. } => write,
            _ => unreachable!(),
        }
    }

    fn obj_with(attrs: Vec<(&str, Value)>) -> Object {
        let s = space();
        apply(&s, None, &write(Operation::put("t", "k", attrs)))
            .unwrap()
            .unwrap()
    }

    fn run(obj: &Object, op: Operation) -> Result<Option<Object>, Failure> {
        apply(&space(), Some(obj), &write(op))
    }

    #[test]
    fn int_division_floors_and_modulo_takes_the_divisors_sign() {
        assert_eq!(int_op(NumOp::Div, -7, 2), Ok(-4));
        assert_eq!(int_op(NumOp::Div, 7, -2), Ok(-4));
        assert_eq!(int_op(NumOp::Div, -8, 2), Ok(-4));
        assert_eq!(int_op(NumOp::Mod, -7, 2), Ok(1));
        assert_eq!(int_op(NumOp::Mod, 7, -2), Ok(-1));
        assert_eq!(int_op(NumOp::Div, i64::MIN, -1), Err("integer overflow"));
        assert_eq!(int_op(NumOp::Mod, i64::MIN, -1), Err("integer overflow"));
        assert_eq!(int_op(NumOp::Div, 1, 0), Err("division by zero"));
        assert_eq!(int_op(NumOp::Mod, 1, 0), Err("modulo by zero"));
    }

    #[test]
    fn overflow_is_cmpfail_with_a_reason_and_changes_nothing() {
        let obj = obj_with(vec![("i", Value::Int(i64::MAX)), ("s", "x".into())]);
        let err = run(
            &obj,
            Operation::funcs(
                "t",
                "k",
                vec![
                    Funcall::new("s", Func::StringAppend("y".into())),
                    Funcall::new("i", Func::Num(NumOp::Add, Value::Int(1))),
                ],
            ),
        )
        .unwrap_err();
        assert_eq!(err.code, ReturnCode::CmpFail);
        assert_eq!(err.reason, "integer overflow in atomic_add on \"i\"");
    }

    #[test]
    fn the_same_attribute_may_be_named_several_times_in_order() {
        let obj = obj_with(vec![("i", Value::Int(2))]);
        let new = run(
            &obj,
            Operation::funcs(
                "t",
                "k",
                vec![
                    Funcall::new("i", Func::Num(NumOp::Add, Value::Int(3))),
                    Funcall::new("i", Func::Num(NumOp::Mul, Value::Int(10))),
                ],
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(new["i"], Value::Int(50));
    }

    #[test]
    fn float_ops_outside_ieee_arithmetic_are_wrongtype() {
        let obj = obj_with(vec![]);
        let err = run(
            &obj,
            Operation::atomic(NumOp::Mod, "t", "k", vec![("f", 2.0.into())]),
        )
        .unwrap_err();
        assert_eq!(err.code, ReturnCode::WrongType);
        let new = run(
            &obj,
            Operation::atomic(NumOp::Div, "t", "k", vec![("f", 0.0.into())]),
        )
        .unwrap()
        .unwrap();
        assert!(matches!(new["f"], Value::Float(x) if x.is_nan()));
    }

    #[test]
    fn errors_name_the_problem() {
        let obj = obj_with(vec![]);
        let err = run(&obj, Operation::put("t", "k", vec![("frist", "x".into())])).unwrap_err();
        assert_eq!(err.code, ReturnCode::UnknownAttr);
        assert!(err
            .reason
            .contains("unknown attribute \"frist\" in space \"t\""));
        let err = run(&obj, Operation::put("t", "k", vec![("k", "x".into())])).unwrap_err();
        assert_eq!(err.code, ReturnCode::DontUseKey);
        let err = run(&obj, Operation::put("t", "k", vec![("i", "x".into())])).unwrap_err();
        assert_eq!(err.code, ReturnCode::WrongType);
        assert_eq!(err.reason, "put on \"i\": expected int, found string");
        let err = apply(&space(), None, &write(Operation::put("t", 5i64, vec![]))).unwrap_err();
        assert_eq!(err.code, ReturnCode::WrongType);
    }

    #[test]
    fn maps_sets_and_strings() {
        let obj = obj_with(vec![("s", "abcdef".into())]);
        let new = run(
            &obj,
            Operation::funcs(
                "t",
                "k",
                vec![
                    Funcall::new("s", Func::StringLtrim(2)),
                    Funcall::new("s", Func::StringRtrim(10)),
                    Funcall::new("si", Func::SetAdd(Value::Int(3))),
                    Funcall::new("si", Func::SetAdd(Value::Int(1))),
                    Funcall::new("msi", Func::MapNum(NumOp::Sub, "a".into(), Value::Int(5))),
                    Funcall::new("msf", Func::MapNum(NumOp::Add, "b".into(), Value::Int(1))),
                ],
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(new["s"], Value::string(""));
        assert_eq!(new["si"], Value::Set([Value::Int(1), Value::Int(3)].into()));
        assert_eq!(
            new["msi"],
            Value::Map([("a".into(), Value::Int(-5))].into())
        );
        assert_eq!(
            new["msf"],
            Value::Map([("b".into(), Value::Float(1.0))].into())
        );
    }

    #[test]
    fn documents_by_path() {
        let obj = obj_with(vec![(
            "d",
            Value::string(r#"{"a": {"b": 1}, "l": [1, "x"], "s": "str"}"#),
        )]);
        let new = run(
            &obj,
            Operation::funcs(
                "t",
                "k",
                vec![
                    Funcall::new("d.a.b", Func::Num(NumOp::Add, Value::Int(2))),
                    Funcall::new("d.a.c", Func::Set("new".into())),
                    Funcall::new("d.l", Func::ListRpush(Value::Int(7))),
                    Funcall::new("d.s", Func::DocumentRename("t".into())),
                ],
            ),
        )
        .unwrap()
        .unwrap();
        let Value::Document(d) = &new["d"] else {
            panic!()
        };
        assert_eq!(
            d.text(),
            r#"{"a":{"b":3,"c":"new"},"l":[1,"x",7],"t":"str"}"#
        );
        let s = space();
        assert!(passes(
            &s,
            &"k".into(),
            &new,
            &Check::new("d.a.b", Predicate::GreaterThan(Value::Int(2)))
        ));
        assert!(passes(
            &s,
            &"k".into(),
            &new,
            &Check::new("d.l[2]", Predicate::Equals(Value::Int(7)))
        ));

        for bad in [
            Funcall::new("d.s.x", Func::Set(Value::Int(1))),
            Funcall::new("d.s", Func::Num(NumOp::Add, Value::Int(1))),
            Funcall::new("d.missing", Func::DocumentUnset),
            Funcall::new("d.nope", Func::DocumentRename("x".into())),
            Funcall::new("d.l[9]", Func::Set(Value::Int(1))),
        ] {
            let err = run(&obj, Operation::funcs("t", "k", vec![bad.clone()])).unwrap_err();
            assert_eq!(err.code, ReturnCode::CmpFail, "{bad:?}");
        }
    }

    #[test]
    fn checks_and_existence() {
        let s = space();
        let put = write(Operation::put_if_not_exist("t", "k", vec![]));
        let obj = apply(&s, None, &put).unwrap().unwrap();
        assert_eq!(
            apply(&s, Some(&obj), &put).unwrap_err().code,
            ReturnCode::CmpFail
        );
        let del = write(Operation::del("t", "k"));
        assert_eq!(
            apply(&s, None, &del).unwrap_err().code,
            ReturnCode::NotFound
        );
        assert_eq!(apply(&s, Some(&obj), &del), Ok(None));
        let cond = write(Operation::cond_put(
            "t",
            "k",
            vec![Check::new("i", Predicate::Equals(Value::Int(1)))],
            vec![("s", "x".into())],
        ));
        let err = apply(&s, Some(&obj), &cond).unwrap_err();
        assert_eq!(err.reason, "check Equals on \"i\" failed");
        assert_eq!(
            apply(&s, None, &cond).unwrap_err().code,
            ReturnCode::NotFound
        );
        let create = write(Operation::cond_put_or_create(
            "t",
            "k",
            vec![Check::new("i", Predicate::Equals(Value::Int(1)))],
            vec![("s", "x".into())],
        ));
        assert!(apply(&s, None, &create).unwrap().is_some());
        assert_eq!(
            apply(&s, Some(&obj), &create).unwrap_err().code,
            ReturnCode::CmpFail
        );
        let regex = write(Operation::cond_put(
            "t",
            "k",
            vec![Check::new("s", Predicate::Regex("(".into()))],
            vec![],
        ));
        assert_eq!(
            apply(&s, Some(&obj), &regex).unwrap_err().code,
            ReturnCode::WrongType
        );
    }
}
