//! What each recorded operation says about each key, for the per-key checker.
//!
//! The cluster runs searches and group operations object by object, so they are not
//! linearizable as a whole; what holds is per object. [`observations`] turns every operation of
//! a history into per-key [`Observation`]s that the linearizability checker
//! ([`crate::history::check`]) treats like single-key operations:
//!
//! - a single-key operation is itself, with its recorded reply;
//! - a **search** that returned says, of each object it returned, that the object had exactly
//!   that value at some instant within the search (it must also match the search's checks,
//!   which needs no history: a returned object that does not match is a violation at once);
//!   and of every other key the history touches, that at some instant within the search the
//!   key did not exist or did not match (an object that matched throughout was missed);
//! - a **sorted search** says the same of the objects it returned, and of the others only when
//!   it returned fewer than its limit;
//! - a **group operation** is, for every key, a conditional write of its functions (or a
//!   delete) that applies where the key matched when it was changed, with an unknown outcome,
//!   since the reply counts objects without naming them (and one that failed or timed out
//!   may have changed some objects before it stopped);
//! - a **count** says nothing about any one key and is left out;
//! - searches that failed or whose outcome is unknown say nothing.

use std::collections::{BTreeMap, BTreeSet};

use crate::apply::{matches, validate_checks};
use crate::history::{Entry, History, OpId, Outcome, Violation};
use crate::op::{Check, Existence, KeyWrite, Object, Operation, Reply};
use crate::schema::Space;
use crate::value::{coerce, Value};

/// Which replies an observation accepts from the model.
#[derive(Clone, Debug, PartialEq)]
pub enum Accept {
    /// Exactly the recorded reply.
    Exactly(Reply),
    /// Any reply: the outcome is unknown.
    Any,
    /// The key did not exist or failed the checks (NOTFOUND or CMPFAIL from a conditional
    /// write with no functions).
    NotMatching,
}

/// One per-key observation: `op` is a single-key operation.
#[derive(Clone, Debug)]
pub struct Observation {
    /// The recorded operation it comes from.
    pub id: OpId,
    pub op: Operation,
    pub invoke: u64,
    /// When it returned (`None`: its outcome is unknown).
    pub ret: Option<u64>,
    pub accept: Accept,
}

/// The key a single-key operation names, coerced to the space's key type when it can be.
fn canonical_key(schema: &Space, key: &Value) -> Value {
    coerce(key.clone(), schema.key.datatype).unwrap_or_else(|_| key.clone())
}

/// Every key each space's single-key operations and search results name.
fn key_universe(history: &History) -> BTreeMap<String, BTreeSet<Value>> {
    let mut keys: BTreeMap<String, BTreeSet<Value>> = BTreeMap::new();
    for e in &history.entries {
        let Some(space) = e.op.space() else { continue };
        let Some(schema) = history.initial.space(space) else {
            continue;
        };
        let set = keys.entry(space.to_string()).or_default();
        if let Some(k) = e.op.key() {
            set.insert(canonical_key(schema, k));
        }
        if let Outcome::Returned {
            reply: Reply::Objects(objects),
            ..
        } = &e.outcome
        {
            for o in objects {
                if let Some(k) = o.get(&schema.key.name) {
                    set.insert(canonical_key(schema, k));
                }
            }
        }
    }
    keys
}

/// Splits a history into per-key observations (see the module docs).
pub fn observations(history: &History) -> Result<Vec<Observation>, Violation> {
    let universe = key_universe(history);
    let mut out = Vec::new();
    for (id, entry) in history.entries.iter().enumerate() {
        let single = entry.op.key().is_some();
        match (&entry.op, &entry.outcome) {
            _ if single => {
                let (ret, accept) = match &entry.outcome {
                    Outcome::Returned { time, reply } => {
                        (Some(*time), Accept::Exactly(reply.clone()))
                    }
                    _ => (None, Accept::Any),
                };
                out.push(Observation {
                    id,
                    op: entry.op.clone(),
                    invoke: entry.invoke,
                    ret,
                    accept,
                });
            }
            (
                Operation::Search { space, checks },
                Outcome::Returned {
                    reply: Reply::Objects(found),
                    ..
                },
            ) => searched(
                history,
                &universe,
                (id, entry),
                (space, checks),
                found,
                true,
            )
            .map(|obs| out.extend(obs))?,
            (
                Operation::SortedSearch {
                    space,
                    checks,
                    limit,
                    ..
                },
                Outcome::Returned {
                    reply: Reply::Objects(found),
                    ..
                },
            ) => {
                let complete = (found.len() as u64) < *limit;
                searched(
                    history,
                    &universe,
                    (id, entry),
                    (space, checks),
                    found,
                    complete,
                )
                .map(|obs| out.extend(obs))?
            }
            (Operation::GroupDel { space, checks }, _) => {
                out.extend(grouped(&universe, (id, entry), space, checks, None))
            }
            (
                Operation::GroupWrite {
                    space,
                    checks,
                    funcs,
                },
                _,
            ) => out.extend(grouped(
                &universe,
                (id, entry),
                space,
                checks,
                Some(funcs.clone()),
            )),
            _ => {}
        }
    }
    Ok(out)
}

/// The observations of a search that returned `found`; of keys it did not return only when
/// `complete`.
fn searched(
    history: &History,
    universe: &BTreeMap<String, BTreeSet<Value>>,
    (id, entry): (OpId, &Entry),
    (space, checks): (&str, &[Check]),
    found: &[Object],
    complete: bool,
) -> Result<Vec<Observation>, Violation> {
    let Some(schema) = history.initial.space(space) else {
        return Ok(Vec::new());
    };
    let violation = |why: String| Violation {
        space: space.to_string(),
        key: None,
        explanation: format!("search #{id} by client {}: {why}", entry.client),
    };
    let checks = validate_checks(schema, checks)
        .map_err(|f| violation(format!("its checks are invalid yet it succeeded: {f:?}")))?;
    let mut returned = BTreeSet::new();
    let mut out = Vec::new();
    let ret = match entry.outcome {
        Outcome::Returned { time, .. } => Some(time),
        _ => None,
    };
    let at = |op: Operation, accept: Accept| Observation {
        id,
        op,
        invoke: entry.invoke,
        ret,
        accept,
    };
    for object in found {
        let Some(key) = object.get(&schema.key.name) else {
            return Err(violation(format!(
                "returned an object without its key: {object:?}"
            )));
        };
        let key = canonical_key(schema, key);
        let mut value = object.clone();
        value.remove(&schema.key.name);
        if !matches(schema, &key, &value, &checks) {
            return Err(violation(format!(
                "returned {key:?} = {value:?}, which does not match {checks:?}"
            )));
        }
        if !returned.insert(key.clone()) {
            return Err(violation(format!("returned {key:?} twice")));
        }
        out.push(at(
            Operation::get(space, key),
            Accept::Exactly(Reply::Found(value)),
        ));
    }
    if complete {
        for key in universe.get(space).into_iter().flatten() {
            if !returned.contains(key) {
                let probe = KeyWrite {
                    key: key.clone(),
                    checks: checks.clone(),
                    funcs: Vec::new(),
                    existence: Existence::MustExist,
                    erase: false,
                };
                out.push(at(Operation::write(space, probe), Accept::NotMatching));
            }
        }
    }
    Ok(out)
}

/// The per-key writes of a group operation: its functions (`None`: a delete) where the key
/// matches `checks`, each of unknown outcome.
fn grouped(
    universe: &BTreeMap<String, BTreeSet<Value>>,
    (id, entry): (OpId, &Entry),
    space: &str,
    checks: &[Check],
    funcs: Option<Vec<crate::op::Funcall>>,
) -> Vec<Observation> {
    universe
        .get(space)
        .into_iter()
        .flatten()
        .map(|key| {
            let write = KeyWrite {
                key: key.clone(),
                checks: checks.to_vec(),
                erase: funcs.is_none(),
                funcs: funcs.clone().unwrap_or_default(),
                existence: Existence::MustExist,
            };
            Observation {
                id,
                op: Operation::write(space, write),
                invoke: entry.invoke,
                ret: None,
                accept: Accept::Any,
            }
        })
        .collect()
}
