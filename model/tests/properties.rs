//! Laws of the specification, checked on generated inputs.

use std::collections::{BTreeMap, BTreeSet};

use hyperdex_model::schema::RESERVED;
use hyperdex_model::value::{decode, encode};
use hyperdex_model::{
    parse_space, Attribute, Check, Datatype, Document, Func, Funcall, Model, NumOp, Operation,
    Predicate, Primitive, Reply, ReturnCode, Space, Subspace, TimeUnit, Value,
};
use proptest::prelude::*;

fn primitive() -> impl Strategy<Value = Primitive> {
    prop_oneof![
        Just(Primitive::String),
        Just(Primitive::Int),
        Just(Primitive::Float)
    ]
}

fn datatype() -> impl Strategy<Value = Datatype> {
    prop_oneof![
        Just(Datatype::String),
        Just(Datatype::Int),
        Just(Datatype::Float),
        Just(Datatype::Document),
        prop::sample::select(TimeUnit::ALL.to_vec()).prop_map(Datatype::Timestamp),
        primitive().prop_map(Datatype::List),
        primitive().prop_map(Datatype::Set),
        (primitive(), primitive()).prop_map(|(k, v)| Datatype::Map(k, v)),
    ]
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,7}".prop_filter("not reserved", |n| !RESERVED.contains(&n.as_str()))
}

prop_compose! {
    fn space()(
        sname in name(),
        key_ty in prop::sample::select(vec![Datatype::String, Datatype::Int, Datatype::Float, Datatype::Timestamp(TimeUnit::Day)]),
        names in prop::collection::btree_set(name(), 1..8),
        types in prop::collection::vec(datatype(), 8),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        partitions in 1u32..2000,
        tolerate in 0u32..5,
        authorization in any::<bool>(),
    ) -> Space {
        let mut names: Vec<String> = names.into_iter().collect();
        let key = names.remove(0);
        let attributes: Vec<Attribute> = names
            .iter()
            .zip(types)
            .map(|(n, t)| Attribute { name: n.clone(), datatype: t })
            .collect();
        let hashable: Vec<&Attribute> = attributes.iter().filter(|a| a.datatype.is_hashable()).collect();
        let indexable: Vec<&Attribute> = attributes.iter().filter(|a| a.datatype.is_indexable()).collect();
        let mut subspaces = Vec::new();
        let mut indexes = Vec::new();
        for (i, p) in picks.iter().enumerate() {
            if i % 2 == 0 && !hashable.is_empty() {
                let a = p.get(&hashable);
                subspaces.push(Subspace { attributes: vec![a.name.clone()] });
            } else if !indexable.is_empty() {
                let a = p.get(&indexable);
                if !indexes.contains(&a.name) {
                    indexes.push(a.name.clone());
                }
            }
        }
        Space {
            name: sname,
            key: Attribute { name: key, datatype: key_ty },
            attributes,
            subspaces,
            indexes,
            partitions,
            tolerate,
            authorization,
        }
    }
}

fn leaf(p: Primitive) -> BoxedStrategy<Value> {
    match p {
        Primitive::String => prop::collection::vec(any::<u8>(), 0..6)
            .prop_map(Value::String)
            .boxed(),
        Primitive::Int => any::<i64>().prop_map(Value::Int).boxed(),
        Primitive::Float => any::<f64>().prop_map(Value::Float).boxed(),
    }
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        leaf(Primitive::String),
        leaf(Primitive::Int),
        leaf(Primitive::Float),
        any::<i64>().prop_map(Value::Timestamp),
        (any::<i32>(), "[a-z]{0,4}").prop_map(|(n, s)| Value::Document(Document::new(
            serde_json::json!({"n": n, "s": s, "l": [n]})
        ))),
        primitive().prop_flat_map(|p| prop::collection::vec(leaf(p), 0..4).prop_map(Value::List)),
        primitive()
            .prop_flat_map(|p| prop::collection::btree_set(leaf(p), 0..4).prop_map(Value::Set)),
        (primitive(), primitive()).prop_flat_map(|(k, v)| {
            prop::collection::btree_map(leaf(k), leaf(v), 0..4).prop_map(Value::Map)
        }),
    ]
}

fn model_with(space: &str) -> Model {
    let mut m = Model::new();
    let r = m.apply(&Operation::AddSpace(
        parse_space(space).expect("test space parses"),
    ));
    assert_eq!(r, Reply::Success);
    m
}

fn int_model(n: i64) -> Model {
    let mut m = model_with("space s key k attributes int n, float f, set(int) si");
    assert_eq!(
        m.apply(&Operation::put("s", "k", vec![("n", Value::Int(n))])),
        Reply::Success
    );
    m
}

fn n_of(m: &Model) -> Value {
    m.object("s", &Value::string("k")).expect("object exists")["n"].clone()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn printed_spaces_parse_back_to_themselves(s in space()) {
        let text = s.to_string();
        prop_assert_eq!(parse_space(&text), Ok(s), "{}", text);
    }

    #[test]
    fn the_parser_never_panics(text in "[ -~\n]{0,80}") {
        let _ = parse_space(&text);
    }

    #[test]
    fn values_round_trip_through_the_codec(v in value()) {
        prop_assert_eq!(decode(&encode(&v)).expect("decodes"), v);
    }

    #[test]
    fn the_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn add_then_sub_restores_the_value_unless_it_overflows(a in any::<i64>(), b in any::<i64>()) {
        let mut m = int_model(a);
        let add = m.apply(&Operation::atomic(NumOp::Add, "s", "k", vec![("n", Value::Int(b))]));
        match a.checked_add(b) {
            Some(sum) => {
                prop_assert_eq!(add, Reply::Success);
                prop_assert_eq!(n_of(&m), Value::Int(sum));
                let sub = m.apply(&Operation::atomic(NumOp::Sub, "s", "k", vec![("n", Value::Int(b))]));
                prop_assert_eq!(sub, Reply::Success);
                prop_assert_eq!(n_of(&m), Value::Int(a));
            }
            None => {
                prop_assert_eq!(add, Reply::CmpFail("integer overflow in atomic_add on \"n\"".into()));
                prop_assert_eq!(n_of(&m), Value::Int(a));
            }
        }
    }

    #[test]
    fn division_and_modulo_satisfy_the_floor_identity(a in any::<i64>(), b in any::<i64>()) {
        prop_assume!(b != 0 && !(a == i64::MIN && b == -1));
        let mut m = int_model(a);
        m.apply(&Operation::atomic(NumOp::Div, "s", "k", vec![("n", Value::Int(b))]));
        let Value::Int(q) = n_of(&m) else { unreachable!() };
        let mut m = int_model(a);
        m.apply(&Operation::atomic(NumOp::Mod, "s", "k", vec![("n", Value::Int(b))]));
        let Value::Int(r) = n_of(&m) else { unreachable!() };
        prop_assert_eq!(i128::from(q) * i128::from(b) + i128::from(r), i128::from(a));
        prop_assert!(r == 0 || (r < 0) == (b < 0), "remainder {} takes the divisor's sign {}", r, b);
        prop_assert!(i128::from(r).abs() < i128::from(b).abs());
    }

    #[test]
    fn impossible_arithmetic_is_cmpfail_and_changes_nothing(a in any::<i64>(), which in 0..4usize) {
        let (op, arg, reason) = match which {
            0 => (NumOp::Div, 0, "division by zero in atomic_div on \"n\""),
            1 => (NumOp::Mod, 0, "modulo by zero in atomic_mod on \"n\""),
            2 => (NumOp::Div, -1, "integer overflow in atomic_div on \"n\""),
            _ => (NumOp::Mod, -1, "integer overflow in atomic_mod on \"n\""),
        };
        let start = if which >= 2 { i64::MIN } else { a };
        let mut m = int_model(start);
        let r = m.apply(&Operation::atomic(op, "s", "k", vec![("n", Value::Int(arg))]));
        prop_assert_eq!(r, Reply::CmpFail(reason.into()));
        prop_assert_eq!(n_of(&m), Value::Int(start));
    }

    #[test]
    fn float_arithmetic_never_fails(a in any::<f64>(), b in any::<f64>(), op in prop::sample::select(vec![NumOp::Add, NumOp::Sub, NumOp::Mul, NumOp::Div, NumOp::Min, NumOp::Max])) {
        let mut m = model_with("space s key k attributes float f");
        m.apply(&Operation::put("s", "k", vec![("f", Value::Float(a))]));
        let r = m.apply(&Operation::atomic(op, "s", "k", vec![("f", Value::Float(b))]));
        prop_assert_eq!(r, Reply::Success);
        let got = m.object("s", &Value::string("k")).expect("exists")["f"].clone();
        let want = match op {
            NumOp::Add => a + b,
            NumOp::Sub => a - b,
            NumOp::Mul => a * b,
            NumOp::Div => a / b,
            NumOp::Min => a.min(b),
            _ => a.max(b),
        };
        prop_assert_eq!(got, Value::Float(want));
    }

    #[test]
    fn set_union_is_idempotent(start in prop::collection::btree_set(any::<i64>(), 0..6), add in prop::collection::btree_set(any::<i64>(), 0..6)) {
        let mut m = int_model(0);
        let to_set = |s: &BTreeSet<i64>| Value::Set(s.iter().map(|i| Value::Int(*i)).collect());
        m.apply(&Operation::put("s", "k", vec![("si", to_set(&start))]));
        let union = || Operation::funcs("s", "k", vec![Funcall::new("si", Func::SetUnion(to_set(&add)))]);
        prop_assert_eq!(m.apply(&union()), Reply::Success);
        let once = m.object("s", &Value::string("k")).expect("exists")["si"].clone();
        prop_assert_eq!(m.apply(&union()), Reply::Success);
        let twice = m.object("s", &Value::string("k")).expect("exists")["si"].clone();
        prop_assert_eq!(&once, &twice);
        let both: BTreeSet<i64> = start.union(&add).copied().collect();
        prop_assert_eq!(once, to_set(&both));
    }

    /// Random calls, many of them bad (wrong types, unknown attributes, the key, overflow,
    /// failing checks): every call that does not succeed leaves the whole database unchanged.
    #[test]
    fn a_failing_call_changes_nothing(calls in prop::collection::vec(call(), 1..30)) {
        let mut m = model_with("space s key k attributes string s, int n, float f, list(string) l, set(string) ss, map(string, int) m");
        for op in calls {
            let before = snapshot(&m);
            let reply = m.apply(&op);
            if !matches!(reply, Reply::Success | Reply::Found(_)) {
                prop_assert_eq!(snapshot(&m), before, "{:?} -> {:?}", op, reply);
            }
        }
    }
}

fn snapshot(m: &Model) -> BTreeMap<Value, hyperdex_model::Object> {
    ["a", "b"]
        .iter()
        .filter_map(|k| Some((Value::string(k), m.object("s", &Value::string(k))?.clone())))
        .collect()
}

fn call() -> impl Strategy<Value = Operation> {
    let key = prop::sample::select(vec!["a", "b"]);
    let attr = prop::sample::select(vec!["s", "n", "f", "l", "ss", "m", "k", "nope"]);
    let val = prop_oneof![
        Just(Value::string("x")),
        Just(Value::Int(1)),
        Just(Value::Int(i64::MAX)),
        Just(Value::Int(0)),
        Just(Value::Float(2.5)),
        Just(Value::List(vec![Value::string("x")])),
        Just(Value::Set([Value::string("x")].into())),
    ];
    let func = (
        prop::sample::select(NumOp::ALL.to_vec()),
        val.clone(),
        0..8usize,
    )
        .prop_map(|(op, v, which)| match which {
            0 => Func::Set(v),
            1 => Func::Num(op, v),
            2 => Func::StringAppend(v),
            3 => Func::ListRpush(v),
            4 => Func::SetAdd(v),
            5 => Func::MapNum(op, Value::string("x"), v),
            6 => Func::SetIntersect(v),
            _ => Func::StringLtrim(-1),
        });
    let funcall = (attr.clone(), func).prop_map(|(a, f)| Funcall::new(a, f));
    let check = (attr, val).prop_map(|(a, v)| Check::new(a, Predicate::Equals(v)));
    (
        key,
        prop::collection::vec(funcall, 0..4),
        prop::collection::vec(check, 0..2),
        0..5usize,
    )
        .prop_map(|(k, funcs, checks, kind)| match kind {
            0 => Operation::funcs("s", k, funcs),
            1 => Operation::funcs("s", k, funcs).with_checks(checks),
            2 => Operation::put_if_not_exist("s", k, vec![]),
            3 => Operation::del("s", k),
            _ => {
                let mut op = Operation::funcs("s", k, funcs);
                if let Operation::Write { write, .. } = &mut op {
                    write.existence = hyperdex_model::Existence::Any;
                }
                op
            }
        })
}

#[test]
fn wrong_type_is_detected_before_existence() {
    let mut m = model_with("space s key k attributes int n");
    let r = m.apply(&Operation::atomic(
        NumOp::Add,
        "s",
        "missing",
        vec![("n", Value::string("x"))],
    ));
    assert_eq!(r.code(), ReturnCode::WrongType);
}
