//! Histories of client operations and a linearizability checker.
//!
//! A [`History`] records, for each operation a client ran: the client, the operation, when it
//! was invoked, and either when it completed and what it returned, or that its outcome is
//! unknown (it timed out, or its connection broke, so it may or may not have taken effect).
//!
//! [`check`] decides whether some sequential order of the operations, consistent with real
//! time (an operation that completed before another was invoked comes first), makes the model
//! ([`crate::db::step_key`]) give every recorded reply. The algorithm is Wing & Gong's search as
//! improved by Lowe and used by Porcupine:
//!
//! - **Partition by key.** Single-key operations on different keys commute in the model, and
//!   linearizability is compositional, so each `(space, key)` is checked on its own.
//! - **Depth-first search** over the sequence of call and return events: repeatedly try to
//!   linearize an operation whose call comes before the first pending return; backtrack when
//!   the first pending return belongs to an operation not yet linearized.
//! - **Memoize** `(set of linearized operations, model state)`: reaching the same pair twice
//!   cannot lead anywhere new.
//! - **Unknown outcomes** have their return at infinity and accept any reply, so they may take
//!   effect at any point after their invocation, or (linearized last) never.
//!
//! A violation comes with an explanation: the key, the longest prefix that could be
//! linearized, and each operation that could have come next with the reply the model would
//! have given instead of the recorded one.
//!
//! Searches and group operations are not linearizable as a whole (the cluster runs them
//! object by object); [`crate::observe`] turns them into what they say about each key, and
//! those observations are checked with the key's other operations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::db::{step_key, Model};
use crate::observe::{observations, Accept};
use crate::op::{Object, Operation, Reply};
use crate::schema::Space;
use crate::value::{coerce, Value};

/// Index of an operation in a history.
pub type OpId = usize;

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still running (treated like `Unknown` by the checker).
    Pending,
    /// Completed at `time` with `reply`.
    Returned { time: u64, reply: Reply },
    /// Timed out or lost: may have taken effect at any time after invocation, or never.
    Unknown,
}

/// One operation in a history.
#[derive(Clone, Debug)]
pub struct Entry {
    pub client: u64,
    pub op: Operation,
    pub invoke: u64,
    pub outcome: Outcome,
}

/// A record of concurrent client operations against a database that started as `initial`.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub initial: Model,
    pub entries: Vec<Entry>,
}

impl History {
    /// An empty history over a database whose spaces (and objects) are `initial`'s.
    pub fn new(initial: Model) -> History {
        History {
            initial,
            entries: Vec::new(),
        }
    }

    /// Records that `client` invoked `op` at `time`.
    pub fn invoke(&mut self, client: u64, op: Operation, time: u64) -> OpId {
        self.entries.push(Entry {
            client,
            op,
            invoke: time,
            outcome: Outcome::Pending,
        });
        self.entries.len() - 1
    }

    /// Records that operation `id` returned `reply` at `time`.
    pub fn complete(&mut self, id: OpId, time: u64, reply: Reply) {
        self.entries[id].outcome = Outcome::Returned { time, reply };
    }

    /// Records that operation `id` ended without a known outcome.
    pub fn unknown(&mut self, id: OpId) {
        self.entries[id].outcome = Outcome::Unknown;
    }

    /// Records a whole operation at once.
    pub fn record(&mut self, client: u64, op: Operation, invoke: u64, outcome: Outcome) -> OpId {
        self.entries.push(Entry {
            client,
            op,
            invoke,
            outcome,
        });
        self.entries.len() - 1
    }
}

/// Figures about a successful check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    pub keys: usize,
    pub operations: usize,
    /// Search states visited, summed over keys.
    pub states: u64,
}

/// Why a history is not linearizable (or cannot be checked).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{explanation}")]
pub struct Violation {
    pub space: String,
    pub key: Option<Value>,
    pub explanation: String,
}

const INFINITY: u64 = u64::MAX;

/// One operation of a key's partition, as the search sees it.
struct KeyOp<'a> {
    id: OpId,
    /// What it says of this key.
    op: &'a Operation,
    invoke: u64,
    ret: u64,
    accept: &'a Accept,
    /// The recorded operation it comes from (for explanations).
    shown: &'a Entry,
}

impl KeyOp<'_> {
    fn describe(&self) -> String {
        let d = describe(self.id, self.shown);
        if *self.op == self.shown.op {
            d
        } else {
            format!("{d}\n      as observed of this key: {:?}", self.op)
        }
    }
}

impl KeyOp<'_> {
    fn accepts(&self, reply: &Reply) -> bool {
        match self.accept {
            Accept::Exactly(r) => r == reply,
            Accept::Any => true,
            Accept::NotMatching => matches!(reply, Reply::NotFound | Reply::CmpFail(_)),
        }
    }
}

fn describe(id: OpId, e: &Entry) -> String {
    let end = match &e.outcome {
        Outcome::Returned { time, reply } => format!("{time}] -> {reply:?}"),
        _ => "?] -> unknown outcome".to_string(),
    };
    format!("#{id} client {} [{}..{end}: {:?}", e.client, e.invoke, e.op)
}

/// Checks a whole history (see the module docs).
pub fn check(history: &History) -> Result<CheckStats, Violation> {
    let observed = observations(history)?;
    let mut partitions: BTreeMap<(String, Value), Vec<KeyOp>> = BTreeMap::new();
    for o in &observed {
        let (id, entry, op) = (o.id, &history.entries[o.id], &o.op);
        let unsupported = |why: &str| Violation {
            space: op.space().unwrap_or_default().to_string(),
            key: None,
            explanation: format!("cannot check {}: {why}", describe(id, entry)),
        };
        let (Some(space), Some(key)) = (op.space(), op.key()) else {
            return Err(unsupported("it names no key"));
        };
        let schema = history
            .initial
            .space(space)
            .ok_or_else(|| unsupported("its space is not in the initial model"))?;
        let ret = match (o.ret, &o.accept) {
            (_, Accept::Any) if !op.is_mutation() => {
                // A read whose answer was never seen constrains nothing: leave it out (each
                // operation of unknown outcome multiplies the orders the search must consider).
                continue;
            }
            (_, Accept::Any) | (None, _) => INFINITY,
            (Some(time), _) if time < o.invoke => {
                return Err(unsupported("it returned before it was invoked"));
            }
            (Some(time), _) => time,
        };
        // Keys of the wrong type fail validation the same way wherever they go: give them
        // their own partition under their raw value.
        let key = coerce(key.clone(), schema.key.datatype).unwrap_or_else(|_| key.clone());
        partitions
            .entry((space.to_string(), key))
            .or_default()
            .push(KeyOp {
                id,
                op,
                invoke: o.invoke,
                ret,
                accept: &o.accept,
                shown: entry,
            });
    }
    let mut stats = CheckStats {
        keys: partitions.len(),
        operations: history.entries.len(),
        states: 0,
    };
    for ((space, key), ops) in &partitions {
        let schema = history.initial.space(space).ok_or_else(|| Violation {
            space: space.clone(),
            key: Some(key.clone()),
            explanation: "space vanished".into(),
        })?;
        let initial = history.initial.object(space, key).cloned();
        stats.states += check_key(schema, key, initial, ops)?;
    }
    Ok(stats)
}

/// The calls and returns of one key's operations in time order, as a doubly linked list
/// (with a sentinel head) from which linearized operations are unlinked and relinked as the
/// search goes forward and back.
struct Events {
    /// (time, is_return, op)
    events: Vec<(u64, bool, usize)>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For each operation, the index of its return event.
    ret_event: Vec<usize>,
    head: usize,
}

const NONE: usize = usize::MAX;

impl Events {
    fn new(ops: &[KeyOp]) -> Events {
        // Calls sort before returns at equal times, so operations that touch at a single
        // instant count as concurrent (the permissive reading).
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            events.push((op.invoke, false, i));
            events.push((op.ret, true, i));
        }
        events.sort();
        let m = events.len();
        let head = m;
        let mut next = vec![NONE; m + 1];
        let mut prev = vec![NONE; m + 1];
        let mut last = head;
        for (i, p) in prev.iter_mut().enumerate().take(m) {
            next[last] = i;
            *p = last;
            last = i;
        }
        let mut ret_event = vec![0usize; ops.len()];
        for (ev, &(_, is_ret, op)) in events.iter().enumerate() {
            if is_ret {
                ret_event[op] = ev;
            }
        }
        Events {
            events,
            next,
            prev,
            ret_event,
            head,
        }
    }

    fn first(&self) -> usize {
        self.next[self.head]
    }

    /// The operation of a call event, if `ev` is one.
    fn call(&self, ev: usize) -> Option<usize> {
        (ev != NONE && !self.events[ev].1).then(|| self.events[ev].2)
    }

    fn unlink(&mut self, ev: usize) {
        let (p, nx) = (self.prev[ev], self.next[ev]);
        self.next[p] = nx;
        if nx != NONE {
            self.prev[nx] = p;
        }
    }

    fn relink(&mut self, ev: usize) {
        let (p, nx) = (self.prev[ev], self.next[ev]);
        self.next[p] = ev;
        if nx != NONE {
            self.prev[nx] = ev;
        }
    }

    /// Takes operation `i` (whose call is `ev`) out of the list: it is linearized.
    fn take(&mut self, ev: usize, i: usize) {
        self.unlink(ev);
        self.unlink(self.ret_event[i]);
    }

    /// Puts operation `i` back.
    fn put_back(&mut self, ev: usize, i: usize) {
        self.relink(self.ret_event[i]);
        self.relink(ev);
    }
}

/// At a dead end: what each pending call would have answered in `state`, and the first
/// return that cannot be passed.
fn candidates(schema: &Space, state: Option<&Object>, list: &Events, ops: &[KeyOp]) -> Vec<String> {
    let mut out = Vec::new();
    let mut c = list.first();
    while let Some(i) = list.call(c) {
        let (reply, _) = step_key(schema, state, ops[i].op);
        out.push(format!(
            "  {}\n      but the model answers {reply:?}",
            ops[i].describe()
        ));
        c = list.next[c];
    }
    if c != NONE {
        let i = list.events[c].2;
        out.push(format!(
            "  {}\n      must take effect before its return, and cannot",
            ops[i].describe()
        ));
    }
    out
}

/// The violation for a key: the longest linearizable prefix found, and what could not come
/// after it.
fn violation(
    schema: &Space,
    key: &Value,
    ops: &[KeyOp],
    (prefix, candidates): (Vec<usize>, Vec<String>),
) -> Violation {
    let mut explanation = format!(
        "not linearizable: key {key:?} in space \"{}\" ({} operations)\n\
         longest linearizable prefix ({} operations):\n",
        schema.name,
        ops.len(),
        prefix.len()
    );
    for i in prefix.iter().rev().take(10).rev() {
        let _ = writeln!(explanation, "  {}", ops[*i].describe());
    }
    explanation.push_str("after it, no operation can come next:\n");
    for c in candidates {
        let _ = writeln!(explanation, "{c}");
    }
    Violation {
        space: schema.name.clone(),
        key: Some(key.clone()),
        explanation,
    }
}

/// The most states the search visits for one key. A linearizable history is found to be so
/// long before (the search goes depth first); a history that is not, with many operations of
/// unknown outcome (each may or may not have happened), can need exponentially many to prove
/// it. Past the budget the key is reported as not shown linearizable.
pub const MAX_STATES: u64 = 2_000_000;

fn budget_exceeded(schema: &Space, key: &Value, ops: &[KeyOp]) -> Violation {
    let unknown = ops.iter().filter(|o| *o.accept == Accept::Any).count();
    Violation {
        space: schema.name.clone(),
        key: Some(key.clone()),
        explanation: format!(
            "not shown linearizable: key {key:?} in space \"{}\" ({} operations, {unknown} of \
             unknown outcome): no order found within {MAX_STATES} states",
            schema.name,
            ops.len()
        ),
    }
}

/// Porcupine-style search over one key's operations: depth-first over orders consistent with
/// real time, memoized on (set of operations linearized, state). Returns the number of states
/// visited.
fn check_key(
    schema: &Space,
    key: &Value,
    initial: Option<Object>,
    ops: &[KeyOp],
) -> Result<u64, Violation> {
    let mut list = Events::new(ops);
    let mut linearized = vec![0u64; ops.len().div_ceil(64)];
    let mut seen: BTreeSet<(Vec<u64>, Option<Object>)> = BTreeSet::new();
    let mut state = initial;
    // Stack of (call event, state before it).
    let mut stack: Vec<(usize, Option<Object>)> = Vec::new();
    let mut visited = 0u64;
    let mut best: Option<(Vec<usize>, Vec<String>)> = None;

    let mut ev = list.first();
    while list.first() != NONE {
        if let Some(i) = list.call(ev) {
            let (reply, change) = step_key(schema, state.as_ref(), ops[i].op);
            if ops[i].accepts(&reply) {
                let new_state = change.unwrap_or_else(|| state.clone());
                linearized[i / 64] |= 1 << (i % 64);
                visited += 1;
                if visited > MAX_STATES {
                    return Err(budget_exceeded(schema, key, ops));
                }
                if seen.insert((linearized.clone(), new_state.clone())) {
                    stack.push((ev, std::mem::replace(&mut state, new_state)));
                    list.take(ev, i);
                    ev = list.first();
                    continue;
                }
                linearized[i / 64] &= !(1 << (i % 64));
            }
            ev = list.next[ev];
        } else {
            // Dead end: the first pending return belongs to an operation not linearized.
            if best.as_ref().is_none_or(|(p, _)| stack.len() > p.len()) {
                let prefix = stack.iter().map(|(e, _)| list.events[*e].2).collect();
                best = Some((prefix, candidates(schema, state.as_ref(), &list, ops)));
            }
            let Some((call, old_state)) = stack.pop() else {
                return Err(violation(schema, key, ops, best.unwrap_or_default()));
            };
            let i = list.events[call].2;
            list.put_back(call, i);
            linearized[i / 64] &= !(1 << (i % 64));
            state = old_state;
            ev = list.next[call];
        }
    }
    Ok(visited)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{NumOp, ReturnCode};
    use crate::schema::parse_space;

    fn model() -> Model {
        let mut m = Model::new();
        m.apply(&Operation::AddSpace(
            parse_space("space s key k attributes int n").unwrap(),
        ));
        m
    }

    fn obj(n: i64) -> Reply {
        Reply::Found([("n".to_string(), Value::Int(n))].into())
    }

    fn put(n: i64) -> Operation {
        Operation::put("s", "k", vec![("n", Value::Int(n))])
    }

    fn ret(time: u64, reply: Reply) -> Outcome {
        Outcome::Returned { time, reply }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let mut h = History::new(model());
        h.record(1, put(1), 0, ret(1, Reply::Success));
        h.record(1, Operation::get("s", "k"), 2, ret(3, obj(1)));
        h.record(1, Operation::del("s", "k"), 4, ret(5, Reply::Success));
        h.record(1, Operation::get("s", "k"), 6, ret(7, Reply::NotFound));
        let stats = check(&h).unwrap();
        assert_eq!((stats.keys, stats.operations), (1, 4));
    }

    #[test]
    fn stale_read_after_a_completed_write_is_not_linearizable() {
        let mut h = History::new(model());
        h.record(1, put(1), 0, ret(1, Reply::Success));
        h.record(1, put(2), 2, ret(3, Reply::Success));
        h.record(2, Operation::get("s", "k"), 4, ret(5, obj(1)));
        let v = check(&h).unwrap_err();
        assert!(v.explanation.contains("not linearizable: key 'k'"), "{v}");
        assert!(v.explanation.contains("but the model answers"), "{v}");
    }

    #[test]
    fn overlapping_operations_may_take_effect_in_either_order() {
        let mut h = History::new(model());
        h.record(1, put(1), 0, ret(10, Reply::Success));
        h.record(2, put(2), 1, ret(9, Reply::Success));
        // Both reads overlap both writes' ends: 1 then 2 or 2 then 1 are both possible...
        h.record(3, Operation::get("s", "k"), 11, ret(12, obj(1)));
        assert!(check(&h).is_ok());
        // ...but once a later read saw 1, an even later read cannot see 2.
        h.record(3, Operation::get("s", "k"), 13, ret(14, obj(2)));
        assert!(check(&h).is_err());
    }

    #[test]
    fn unknown_outcomes_may_happen_late_or_never() {
        let mut h = History::new(model());
        h.record(1, put(1), 0, ret(1, Reply::Success));
        let lost = h.record(
            2,
            Operation::atomic(NumOp::Add, "s", "k", vec![("n", Value::Int(5))]),
            2,
            Outcome::Pending,
        );
        h.unknown(lost);
        h.record(1, Operation::get("s", "k"), 3, ret(4, obj(1)));
        h.record(1, Operation::get("s", "k"), 5, ret(6, obj(6)));
        assert!(check(&h).is_ok(), "took effect between the reads");
        h.record(1, Operation::get("s", "k"), 7, ret(8, obj(1)));
        assert!(check(&h).is_err(), "cannot be undone");
    }

    #[test]
    fn never_applied_unknown_outcome_is_fine() {
        let mut h = History::new(model());
        h.record(1, put(1), 0, ret(1, Reply::Success));
        h.record(2, put(9), 2, Outcome::Unknown);
        h.record(1, Operation::get("s", "k"), 3, ret(4, obj(1)));
        assert!(check(&h).is_ok());
    }

    #[test]
    fn failed_conditions_are_checked_too() {
        let mut h = History::new(model());
        h.record(
            1,
            Operation::put_if_not_exist("s", "k", vec![]),
            0,
            ret(1, Reply::Success),
        );
        h.record(
            2,
            Operation::put_if_not_exist("s", "k", vec![]),
            2,
            ret(3, Reply::Success),
        );
        let v = check(&h).unwrap_err();
        assert!(v.explanation.contains("the object already exists"), "{v}");
    }

    /// A search result: objects `(key, n)`, with the key attribute.
    fn found(objects: &[(&str, i64)]) -> Reply {
        Reply::Objects(
            objects
                .iter()
                .map(|(k, n)| {
                    [
                        ("k".to_string(), Value::string(*k)),
                        ("n".to_string(), Value::Int(*n)),
                    ]
                    .into()
                })
                .collect(),
        )
    }

    fn n_is(n: i64) -> Vec<crate::op::Check> {
        vec![crate::op::Check::new(
            "n",
            crate::op::Predicate::Equals(Value::Int(n)),
        )]
    }

    fn put_at(key: &str, n: i64) -> Operation {
        Operation::put("s", key, vec![("n", Value::Int(n))])
    }

    #[test]
    fn a_search_sees_each_object_as_it_was_at_some_instant_of_the_search() {
        let base = || {
            let mut h = History::new(model());
            h.record(1, put_at("a", 1), 0, ret(1, Reply::Success));
            h.record(1, put_at("b", 1), 2, ret(3, Reply::Success));
            // b changes while the search runs.
            h.record(2, put_at("b", 2), 12, ret(18, Reply::Success));
            h
        };
        // Both values of b are fine: the change overlaps the search.
        for b in [1, 2] {
            let mut h = base();
            let all = Operation::search("s", vec![]);
            h.record(3, all, 10, ret(20, found(&[("a", 1), ("b", b)])));
            check(&h).unwrap_or_else(|v| panic!("b = {b}: {v}"));
        }
        // A value overwritten before the search began is stale.
        let mut h = base();
        h.record(1, put_at("a", 5), 4, ret(5, Reply::Success));
        h.record(
            3,
            Operation::search("s", vec![]),
            10,
            ret(20, found(&[("a", 1)])),
        );
        let v = check(&h).unwrap_err();
        assert!(v.explanation.contains("not linearizable: key 'a'"), "{v}");
    }

    #[test]
    fn a_search_returns_every_object_that_matched_throughout() {
        let mut h = History::new(model());
        h.record(1, put_at("a", 1), 0, ret(1, Reply::Success));
        h.record(1, put_at("b", 1), 2, ret(3, Reply::Success));
        // b matched throughout and is missing.
        h.record(
            3,
            Operation::search("s", n_is(1)),
            10,
            ret(20, found(&[("a", 1)])),
        );
        let v = check(&h).unwrap_err();
        assert!(v.explanation.contains("key 'b'"), "{v}");
        // Had b changed during the search, leaving it out would be fine.
        let mut h = History::new(model());
        h.record(1, put_at("a", 1), 0, ret(1, Reply::Success));
        h.record(1, put_at("b", 1), 2, ret(3, Reply::Success));
        h.record(2, put_at("b", 3), 15, ret(25, Reply::Success));
        h.record(
            3,
            Operation::search("s", n_is(1)),
            10,
            ret(20, found(&[("a", 1)])),
        );
        check(&h).unwrap();
    }

    #[test]
    fn a_search_never_returns_an_object_that_does_not_match() {
        let mut h = History::new(model());
        h.record(1, put_at("a", 2), 0, ret(1, Reply::Success));
        h.record(
            3,
            Operation::search("s", n_is(1)),
            10,
            ret(20, found(&[("a", 2)])),
        );
        let v = check(&h).unwrap_err();
        assert!(v.explanation.contains("does not match"), "{v}");
    }

    #[test]
    fn a_group_write_changes_only_objects_that_matched() {
        let add = vec![crate::op::Funcall::new(
            "n",
            crate::op::Func::Num(NumOp::Add, Value::Int(10)),
        )];
        let group = Operation::GroupWrite {
            space: "s".into(),
            checks: n_is(1),
            funcs: add,
        };
        let run = |b_after: i64| {
            let mut h = History::new(model());
            h.record(1, put_at("a", 1), 0, ret(1, Reply::Success));
            h.record(1, put_at("b", 2), 2, ret(3, Reply::Success));
            h.record(2, group.clone(), 10, ret(20, Reply::Count(1)));
            h.record(3, Operation::get("s", "a"), 30, ret(31, obj(11)));
            h.record(3, Operation::get("s", "b"), 32, ret(33, obj(b_after)));
            check(&h)
        };
        run(2).unwrap();
        assert!(run(12).is_err(), "b did not match, and was changed");
    }

    #[test]
    fn counts_say_nothing_about_any_key() {
        let mut h = History::new(model());
        h.record(1, Operation::count("s", vec![]), 0, ret(1, Reply::Count(0)));
        assert_eq!(check(&h).unwrap().keys, 0);
    }

    #[test]
    fn unsupported_operations_are_reported() {
        let mut h = History::new(model());
        h.record(
            1,
            Operation::get("nope", "k"),
            0,
            ret(1, Reply::Error(ReturnCode::UnknownSpace, String::new())),
        );
        assert!(check(&h).unwrap_err().explanation.contains("initial model"));
    }
}
