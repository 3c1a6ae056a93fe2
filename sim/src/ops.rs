//! The operations the simulated clients issue, drawn from the seeded generator.
//!
//! Two spaces: `sim` (4 partitions, tolerate 1; the hot keys every fault is aimed at) and
//! `wide` (8 partitions, tolerate 2; every datatype, so every operation family: strings,
//! numbers, floats, lists, sets, maps, documents and timestamps, plain and `cond_`). About
//! one operation in twenty is a search, sorted search, count or group operation, checked per
//! object (see `hyperdex_model::observe`).

use hyperdex_model::{Check, Document, Func, Funcall, NumOp, Operation, Predicate, Value};
use madsim::rand::{thread_rng, Rng};

use crate::workload::{Keys, SPACE_NAME};

/// The second space of every run.
pub const WIDE_NAME: &str = "wide";

/// The second space: every datatype.
pub const WIDE: &str = "space wide key k attributes int n, string t, float f, list(int) l, \
     set(string) s, map(string, int) m, document d, timestamp(second) ts \
     create 8 partitions tolerate 2 failures";

fn small() -> Value {
    Value::Int(thread_rng().gen_range(0..4))
}

/// A check on `n` (the attribute searches and conditions test).
fn check_n() -> Check {
    let mut rng = thread_rng();
    let p = match rng.gen_range(0..4) {
        0 => Predicate::Equals(small()),
        1 => Predicate::LessEqual(small()),
        2 => Predicate::GreaterEqual(small()),
        _ => Predicate::Range(Value::Int(0), small()),
    };
    Check::new("n", p)
}

/// An equality on `t`, the attribute of `sim`'s subspace: a search with one reads that
/// subspace's one region that can match and looks the keys it holds up at their heads.
fn check_t() -> Check {
    let values = ["x", "xy", "xg", ""];
    let v = values[thread_rng().gen_range(0..values.len())];
    Check::new("t", Predicate::Equals(Value::string(v)))
}

/// One random operation: nine in ten on `sim`'s keys, the rest on `wide`'s; one in twenty
/// is a multi-key operation.
pub fn random_op(keys: Keys) -> Operation {
    let mut rng = thread_rng();
    if rng.gen_range(0..20) == 0 {
        return multi_key();
    }
    if rng.gen_range(0..10) == 0 {
        return wide_op(keys);
    }
    sim_op(keys)
}

/// A single-key operation on `sim`.
pub fn sim_op(keys: Keys) -> Operation {
    let mut rng = thread_rng();
    let key = keys.pick();
    let space = SPACE_NAME;
    match rng.gen_range(0..100) {
        0..=14 => Operation::put(space, key, vec![("n", small()), ("t", Value::string("x"))]),
        15..=36 => Operation::get(space, key),
        37..=39 => Operation::get_partial(space, key, &["n"]),
        40..=47 => Operation::del(space, key),
        48..=57 => Operation::put_if_not_exist(space, key, vec![("n", small())]),
        58..=67 => Operation::cond_put(
            space,
            key,
            vec![Check::new("n", Predicate::Equals(small()))],
            vec![("n", small())],
        ),
        68..=84 => Operation::atomic(NumOp::Add, space, key, vec![("n", Value::Int(1))]),
        85..=91 => Operation::funcs(space, key, vec![Funcall::new("s", Func::SetAdd(small()))]),
        92..=95 => Operation::funcs(
            space,
            key,
            vec![Funcall::new("t", Func::StringAppend(Value::string("y")))],
        ),
        _ => Operation::funcs(
            space,
            key,
            vec![Funcall::new("s", Func::SetRemove(small()))],
        ),
    }
}

/// A single-key operation on `wide`: every family, a third of them conditional.
fn wide_op(keys: Keys) -> Operation {
    let mut rng = thread_rng();
    let key = keys.pick();
    let space = WIDE_NAME;
    let word = || Value::string(["a", "b", "c"][thread_rng().gen_range(0..3)]);
    let func = match rng.gen_range(0..16) {
        0 => return Operation::get(space, key),
        1 => return Operation::del(space, key),
        2 => {
            return Operation::put(
                space,
                key,
                vec![
                    ("n", small()),
                    ("f", Value::Float(0.5)),
                    (
                        "d",
                        Value::Document(
                            Document::parse(br#"{"a": {"b": 1}}"#).expect("a document"),
                        ),
                    ),
                    ("ts", Value::Timestamp(1_700_000_000_000_000)),
                ],
            )
        }
        3 => Funcall::new("n", Func::Num(NumOp::Add, Value::Int(1))),
        4 => Funcall::new("n", Func::Num(NumOp::Mul, Value::Int(2))),
        5 => Funcall::new("f", Func::Num(NumOp::Add, Value::Float(0.25))),
        6 => Funcall::new("t", Func::StringPrepend(word())),
        7 => Funcall::new("t", Func::StringLtrim(1)),
        8 => Funcall::new("l", Func::ListRpush(small())),
        9 => Funcall::new("l", Func::ListLpush(small())),
        10 => Funcall::new("s", Func::SetAdd(word())),
        11 => Funcall::new("m", Func::MapAdd(word(), small())),
        12 => Funcall::new("m", Func::MapNum(NumOp::Add, word(), Value::Int(1))),
        13 => Funcall::new("m", Func::MapRemove(word())),
        14 => Funcall::new("d.a.b", Func::Num(NumOp::Add, Value::Int(1))),
        _ => Funcall::new("ts", Func::Num(NumOp::Add, Value::Int(1))),
    };
    let op = Operation::funcs(space, key, vec![func]);
    if rng.gen_range(0..3) == 0 {
        op.with_checks(vec![check_n()])
    } else {
        op
    }
}

/// A search of `sim`: two in three on `n` (its index or every key region), one in three on
/// `t` (through the subspace, whose regions learn of a write after the key's chain does).
pub fn search() -> Operation {
    let check = if thread_rng().gen_range(0..3) == 0 {
        check_t()
    } else {
        check_n()
    };
    Operation::Search {
        space: SPACE_NAME.to_string(),
        checks: vec![check],
    }
}

/// A search, sorted search, count or group operation on `sim`.
fn multi_key() -> Operation {
    let mut rng = thread_rng();
    let space = SPACE_NAME.to_string();
    let checks = match rng.gen_range(0..10) {
        0..=1 => Vec::new(),
        2..=5 => vec![check_n()],
        6..=8 => vec![check_t()],
        _ => vec![check_t(), check_n()],
    };
    match rng.gen_range(0..10) {
        0..=4 => Operation::Search { space, checks },
        5..=6 => Operation::SortedSearch {
            space,
            checks,
            sort_by: "n".into(),
            limit: rng.gen_range(1..8),
            maximize: rng.gen_bool(0.5),
        },
        7 => Operation::Count { space, checks },
        // Group writes only on a narrow selection: each is a possible write to every key.
        8 => Operation::GroupWrite {
            space,
            checks: vec![Check::new("n", Predicate::Equals(Value::Int(3)))],
            funcs: vec![Funcall::new("t", Func::StringAppend(Value::string("g")))],
        },
        _ => Operation::GroupDel {
            space,
            checks: vec![Check::new("n", Predicate::GreaterEqual(Value::Int(7)))],
        },
    }
}
