//! The model: one correct, sequential copy of a HyperDex database.
//!
//! [`Model`] maps spaces to their objects with persistent maps (imbl), so cloning a model is
//! O(1) and a step shares everything it did not change. [`Model::step`] takes an
//! [`Operation`] and returns the next model and the [`Reply`] a correct server gives. This is
//! what the distributed system is checked against: under any failures, the cluster must answer
//! like some sequential run of this model (see [`crate::history`]).
//!
//! Shortcuts: searches scan every object of a space in key order (the cluster prunes with
//! hyperspace hashing; the answers must agree, not the cost). `group_*` calls are atomic here;
//! in the cluster they are applied object by object, so histories checked for
//! linearizability contain single-key operations only.

use std::sync::Arc;

use imbl::OrdMap;

use crate::apply::{
    apply, matches, normalize_write, validate_checks, validate_get_partial, Failure,
};
use crate::op::{Check, Existence, Funcall, KeyWrite, Object, Operation, Reply, ReturnCode};
use crate::schema::{is_hidden, parse_space, Space};
use crate::value::{coerce, Value};

/// The objects of one space.
#[derive(Clone, Debug)]
pub struct SpaceData {
    pub schema: Arc<Space>,
    pub objects: OrdMap<Value, Object>,
}

/// A whole database: space name → objects.
#[derive(Clone, Debug, Default)]
pub struct Model {
    spaces: OrdMap<String, SpaceData>,
}

fn unknown_space(name: &str) -> Reply {
    Reply::Error(
        ReturnCode::UnknownSpace,
        format!("unknown space \"{name}\""),
    )
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    /// The schema of a space.
    pub fn space(&self, name: &str) -> Option<&Space> {
        self.spaces.get(name).map(|s| s.schema.as_ref())
    }

    /// Names of every space, sorted.
    pub fn space_names(&self) -> Vec<String> {
        self.spaces.keys().cloned().collect()
    }

    /// The stored object under `key`, if any.
    pub fn object(&self, space: &str, key: &Value) -> Option<&Object> {
        self.spaces.get(space)?.objects.get(key)
    }

    /// The next model and the reply, leaving `self` as it was.
    pub fn step(&self, op: &Operation) -> (Model, Reply) {
        let mut next = self.clone();
        let reply = next.apply(op);
        (next, reply)
    }

    /// Applies `op` in place and returns the reply.
    pub fn apply(&mut self, op: &Operation) -> Reply {
        match op {
            Operation::AddSpace(space) => self.add_space(space),
            Operation::RmSpace(name) => {
                if self.spaces.remove(name).is_some() {
                    Reply::Success
                } else {
                    Reply::Error(
                        ReturnCode::AdminNotFound,
                        format!("there is no space \"{name}\" to remove"),
                    )
                }
            }
            Operation::Get { space, key }
            | Operation::GetPartial { space, key, .. }
            | Operation::Write {
                space,
                write: KeyWrite { key, .. },
            } => {
                let Some(data) = self.spaces.get_mut(space) else {
                    return unknown_space(space);
                };
                let key = match coerce(key.clone(), data.schema.key.datatype) {
                    Ok(k) => k,
                    Err(e) => return Reply::Error(ReturnCode::WrongType, format!("key: {e}")),
                };
                let (reply, change) = step_key(&data.schema, data.objects.get(&key), op);
                match change {
                    Some(Some(obj)) => {
                        data.objects.insert(key, obj);
                    }
                    Some(None) => {
                        data.objects.remove(&key);
                    }
                    None => {}
                }
                reply
            }
            Operation::Search { space, checks } => match self.select(space, checks) {
                Ok(found) => Reply::Objects(found),
                Err(r) => r,
            },
            Operation::SortedSearch {
                space,
                checks,
                sort_by,
                limit,
                maximize,
            } => self.sorted_search(space, checks, sort_by, *limit, *maximize),
            Operation::Count { space, checks } => match self.select(space, checks) {
                Ok(found) => Reply::Count(found.len() as u64),
                Err(r) => r,
            },
            Operation::GroupDel { space, checks } => self.group(space, checks, None),
            Operation::GroupWrite {
                space,
                checks,
                funcs,
            } => self.group(space, checks, Some(funcs)),
        }
    }

    fn add_space(&mut self, space: &Space) -> Reply {
        // A space built in code (or received from a peer) must be one the parser accepts.
        match parse_space(&space.to_string()) {
            Ok(parsed) if parsed == *space => {}
            Ok(_) => {
                return Reply::Error(
                    ReturnCode::BadSpace,
                    format!(
                        "space \"{}\" does not survive printing and parsing",
                        space.name
                    ),
                )
            }
            Err(e) => return Reply::Error(ReturnCode::BadSpace, e.to_string()),
        }
        if self.spaces.contains_key(&space.name) {
            return Reply::Error(
                ReturnCode::Duplicate,
                format!("space \"{}\" already exists", space.name),
            );
        }
        self.spaces.insert(
            space.name.clone(),
            SpaceData {
                schema: Arc::new(space.clone()),
                objects: OrdMap::new(),
            },
        );
        Reply::Success
    }

    /// Every object matching `checks`, with its key, in key order.
    fn select(&self, space: &str, checks: &[Check]) -> Result<Vec<Object>, Reply> {
        let data = self.spaces.get(space).ok_or_else(|| unknown_space(space))?;
        let checks = validate_checks(&data.schema, checks).map_err(Failure::into_reply)?;
        Ok(data
            .objects
            .iter()
            .filter(|(k, o)| matches(&data.schema, k, o, &checks))
            .map(|(k, o)| with_key(&data.schema, k, o))
            .collect())
    }

    fn sorted_search(
        &self,
        space: &str,
        checks: &[Check],
        sort_by: &str,
        limit: u64,
        maximize: bool,
    ) -> Reply {
        let Some(data) = self.spaces.get(space) else {
            return unknown_space(space);
        };
        match data.schema.any_attribute(sort_by) {
            None => {
                return Reply::Error(
                    ReturnCode::UnknownAttr,
                    format!("cannot sort by unknown attribute \"{sort_by}\" in space \"{space}\""),
                )
            }
            Some(a) if !a.datatype.is_comparable() => {
                return Reply::Error(
                    ReturnCode::WrongType,
                    format!("cannot sort by \"{sort_by}\" of type {}", a.datatype),
                )
            }
            Some(_) => {}
        }
        let mut found = match self.select(space, checks) {
            Ok(f) => f,
            Err(r) => return r,
        };
        sort_results(&mut found, sort_by, &data.schema.key.name, maximize, limit);
        Reply::Objects(found)
    }

    /// `group_del` (no functions) or `group_X`: applies to every matching object and counts
    /// the objects changed. An object on which the functions cannot be applied is skipped.
    fn group(&mut self, space: &str, checks: &[Check], funcs: Option<&Vec<Funcall>>) -> Reply {
        let Some(data) = self.spaces.get(space) else {
            return unknown_space(space);
        };
        let schema = data.schema.clone();
        let checks = match validate_checks(&schema, checks) {
            Ok(c) => c,
            Err(f) => return f.into_reply(),
        };
        let template = KeyWrite {
            key: schema.key.datatype.default_value(),
            checks: Vec::new(),
            funcs: funcs.cloned().unwrap_or_default(),
            existence: Existence::MustExist,
            erase: funcs.is_none(),
        };
        if let Err(f) = normalize_write(&schema, &template) {
            return f.into_reply();
        }
        let keys: Vec<Value> = data
            .objects
            .iter()
            .filter(|(k, o)| matches(&schema, k, o, &checks))
            .map(|(k, _)| k.clone())
            .collect();
        let mut changed = 0;
        let Some(data) = self.spaces.get_mut(space) else {
            return unknown_space(space);
        };
        for key in keys {
            let w = KeyWrite {
                key: key.clone(),
                ..template.clone()
            };
            match apply(&schema, data.objects.get(&key), &w) {
                Ok(Some(obj)) => {
                    data.objects.insert(key, obj);
                    changed += 1;
                }
                Ok(None) => {
                    data.objects.remove(&key);
                    changed += 1;
                }
                Err(_) => {}
            }
        }
        Reply::Count(changed)
    }
}

/// What a single-key operation (get, get_partial or a write) does to the object stored under
/// its key: the reply, and the new object (`Some(None)`: deleted; `None`: unchanged).
/// The key is assumed to have the schema's type already. Model and checker both use this, so
/// the linearizability checker judges histories by exactly the model's semantics.
pub fn step_key(
    schema: &Space,
    current: Option<&Object>,
    op: &Operation,
) -> (Reply, Option<Option<Object>>) {
    match op {
        Operation::Get { .. } => match current {
            Some(obj) => (Reply::Found(visible(obj)), None),
            None => (Reply::NotFound, None),
        },
        Operation::GetPartial { attrs, .. } => {
            if let Err(f) = validate_get_partial(schema, attrs) {
                return (f.into_reply(), None);
            }
            match current {
                Some(obj) => (
                    Reply::Found(
                        obj.iter()
                            .filter(|(k, _)| attrs.contains(k))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    ),
                    None,
                ),
                None => (Reply::NotFound, None),
            }
        }
        Operation::Write { write, .. } => match apply(schema, current, write) {
            Ok(new) => (Reply::Success, Some(new)),
            Err(f) => (f.into_reply(), None),
        },
        _ => (
            Reply::Error(
                ReturnCode::Internal,
                "not a single-key operation".to_string(),
            ),
            None,
        ),
    }
}

/// Orders search results by `sort_by` (descending when `maximize`), ties by key, and keeps
/// the first `limit`: what `sorted_search` returns, here and in the cluster's client.
pub fn sort_results(
    found: &mut Vec<Object>,
    sort_by: &str,
    key_name: &str,
    maximize: bool,
    limit: u64,
) {
    found.sort_by(|a, b| {
        let o = a.get(sort_by).cmp(&b.get(sort_by));
        if maximize { o.reverse() } else { o }.then_with(|| a.get(key_name).cmp(&b.get(key_name)))
    });
    found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
}

/// The object as a search returns it: its attributes plus the key.
pub fn with_key(space: &Space, key: &Value, object: &Object) -> Object {
    let mut o = visible(object);
    o.insert(space.key.name.clone(), key.clone());
    o
}

/// The object as a client reads it: without its hidden attributes.
pub fn visible(object: &Object) -> Object {
    object
        .iter()
        .filter(|(k, _)| !is_hidden(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Func, NumOp, Predicate};

    fn model() -> Model {
        let mut m = Model::new();
        let s = parse_space("space p key name attributes int age, string city").unwrap();
        assert_eq!(m.apply(&Operation::AddSpace(s)), Reply::Success);
        for (n, a, c) in [
            ("ann", 31, "ithaca"),
            ("bob", 25, "nyc"),
            ("cat", 40, "ithaca"),
        ] {
            let r = m.apply(&Operation::put(
                "p",
                n,
                vec![("age", Value::Int(a)), ("city", c.into())],
            ));
            assert_eq!(r, Reply::Success);
        }
        m
    }

    #[test]
    fn step_leaves_the_old_model_unchanged() {
        let m = model();
        let (next, r) = m.step(&Operation::del("p", "ann"));
        assert_eq!(r, Reply::Success);
        assert!(m.object("p", &"ann".into()).is_some());
        assert!(next.object("p", &"ann".into()).is_none());
    }

    #[test]
    fn search_count_sorted_search_and_group_calls() {
        let mut m = model();
        let ithaca = vec![Check::new("city", Predicate::Equals("ithaca".into()))];
        assert_eq!(
            m.apply(&Operation::count("p", ithaca.clone())),
            Reply::Count(2)
        );
        let Reply::Objects(found) = m.apply(&Operation::search(
            "p",
            vec![Check::new(
                "age",
                Predicate::Range(Value::Int(26), Value::Int(40)),
            )],
        )) else {
            panic!()
        };
        assert_eq!(found.len(), 2);
        assert_eq!(found[0]["name"], Value::string("ann"));
        let Reply::Objects(top) = m.apply(&Operation::SortedSearch {
            space: "p".into(),
            checks: vec![],
            sort_by: "age".into(),
            limit: 2,
            maximize: true,
        }) else {
            panic!()
        };
        let names: Vec<_> = top.iter().map(|o| o["name"].clone()).collect();
        assert_eq!(names, vec![Value::string("cat"), Value::string("ann")]);
        let r = m.apply(&Operation::GroupWrite {
            space: "p".into(),
            checks: ithaca.clone(),
            funcs: vec![Funcall::new("age", Func::Num(NumOp::Add, Value::Int(1)))],
        });
        assert_eq!(r, Reply::Count(2));
        assert_eq!(m.object("p", &"cat".into()).unwrap()["age"], Value::Int(41));
        assert_eq!(
            m.apply(&Operation::GroupDel {
                space: "p".into(),
                checks: ithaca
            }),
            Reply::Count(2)
        );
        assert_eq!(m.apply(&Operation::count("p", vec![])), Reply::Count(1));
    }

    #[test]
    fn space_errors() {
        let mut m = model();
        assert_eq!(
            m.apply(&Operation::get("nope", "x")).code(),
            ReturnCode::UnknownSpace
        );
        let s = m.space("p").unwrap().clone();
        assert_eq!(
            m.apply(&Operation::AddSpace(s)).code(),
            ReturnCode::Duplicate
        );
        assert_eq!(
            m.apply(&Operation::RmSpace("nope".into())).code(),
            ReturnCode::AdminNotFound
        );
        let mut bad = parse_space("space q key k").unwrap();
        bad.partitions = 0;
        assert_eq!(
            m.apply(&Operation::AddSpace(bad)).code(),
            ReturnCode::BadSpace
        );
        assert_eq!(m.apply(&Operation::RmSpace("p".into())), Reply::Success);
        assert_eq!(
            m.apply(&Operation::get("p", "ann")).code(),
            ReturnCode::UnknownSpace
        );
    }

    #[test]
    fn a_conditional_microtransaction_creates_a_missing_object_as_hyperdex_does() {
        use crate::op::{Check, Microtransaction};
        let mut m = model();
        let mut tx = Microtransaction::init("p");
        tx.add("age", Func::Num(NumOp::Add, Value::Int(1)));
        let older = vec![Check::new("age", Predicate::GreaterEqual(Value::Int(30)))];
        assert!(matches!(
            m.apply(&tx.cond_commit("bob", older.clone())),
            Reply::CmpFail(_)
        ));
        assert_eq!(
            m.apply(&tx.cond_commit("ann", older.clone())),
            Reply::Success
        );
        assert_eq!(m.apply(&tx.cond_commit("dan", older)), Reply::Success);
        let Reply::Found(dan) = m.apply(&Operation::get("p", "dan")) else {
            panic!("dan was not created")
        };
        assert_eq!(dan["age"], Value::Int(1));
    }
}
