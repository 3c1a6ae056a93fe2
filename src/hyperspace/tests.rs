use hyperdex_model::apply::matches;
use hyperdex_model::{Attribute, Datatype, Object, Predicate, TimeUnit, Value};
use proptest::prelude::*;

use super::*;
use crate::config::key_bytes;

fn space(partitions: u32) -> Space {
    let attr = |name: &str, datatype| Attribute {
        name: name.into(),
        datatype,
    };
    let mut s = Space::new(
        "s",
        attr("k", Datatype::String),
        vec![
            attr("n", Datatype::Int),
            attr("f", Datatype::Float),
            attr("s", Datatype::String),
            attr("t", Datatype::Timestamp(TimeUnit::Second)),
        ],
    );
    s.partitions = partitions;
    s
}

fn names(attrs: &[&str]) -> Vec<String> {
    attrs.iter().map(|a| a.to_string()).collect()
}

fn cuts(s: &Subspace) -> Vec<u32> {
    s.dims.iter().map(|d| d.cuts).collect()
}

#[test]
fn regions_are_a_grid_as_even_as_the_count_allows() {
    let sp = space(64);
    let grid = |attrs: &[&str], n| cuts(&Subspace::new(&sp, &names(attrs), n).unwrap());
    assert_eq!(grid(&["n", "s"], 64), vec![8, 8]);
    assert_eq!(grid(&["n", "s", "f"], 64), vec![4, 4, 4]);
    assert_eq!(grid(&["n", "s"], 6), vec![3, 2]);
    assert_eq!(grid(&["n", "s"], 7), vec![7, 1]);
    assert_eq!(grid(&["n"], 64), vec![64]);
    assert!(Subspace::new(&sp, &names(&["nope"]), 64).is_none());
    assert!(Subspace::new(&sp, &names(&["n"]), 0).is_none());
}

#[test]
fn the_key_subspace_places_keys_where_the_cluster_does() {
    for partitions in [1, 2, 5, 64, 100] {
        let sp = space(partitions);
        let key_space = Subspace::of_key(&sp).unwrap();
        for i in 0..200 {
            let key = Value::string(format!("key{i}"));
            let bytes = key_bytes(&sp, &key).unwrap();
            let expected = region_index(placement_hash(&bytes), partitions as usize);
            assert_eq!(key_space.region_of(&key, &Object::new()), expected);
            let one = key_space.matching(&[Check::new("k", Predicate::Equals(key))]);
            assert_eq!(one.iter().collect::<Vec<_>>(), vec![expected]);
        }
    }
}

#[test]
fn checks_prune_hashed_dimensions_on_equality_and_ordered_ones_on_bounds() {
    let sp = space(64);
    let sub = Subspace::new(&sp, &names(&["s", "n"]), 64).unwrap();
    let count = |checks: &[Check]| sub.matching(checks).count();
    let s_is = Check::new("s", Predicate::Equals(Value::string("red")));
    let n_in = Check::new("n", Predicate::Range(Value::Int(100), Value::Int(200)));
    assert_eq!(count(&[]), 64);
    assert_eq!(count(std::slice::from_ref(&s_is)), 8);
    assert_eq!(
        count(std::slice::from_ref(&n_in)),
        8,
        "a narrow range is one cell of n"
    );
    assert_eq!(count(&[s_is.clone(), n_in.clone()]), 1);
    let regex = Check::new("s", Predicate::Regex("^r".into()));
    assert_eq!(
        count(&[regex]),
        64,
        "a regex on a hashed attribute prunes nothing"
    );
    let above = Check::new("n", Predicate::GreaterEqual(Value::Int(0)));
    assert_eq!(count(&[above]), 32, "the non-negative half");
    let none = [
        Check::new(
            "n",
            Predicate::LessThan(Value::Int(-1_000_000_000_000_000_000)),
        ),
        Check::new(
            "n",
            Predicate::GreaterThan(Value::Int(1_000_000_000_000_000_000)),
        ),
    ];
    assert_eq!(count(&none), 0, "bounds that cannot both hold");
    assert_eq!(sub.matching(&none).iter().count(), 0);
}

#[test]
fn the_subspace_with_the_fewest_regions_is_asked() {
    let sp = space(64);
    let subs = vec![
        Subspace::of_key(&sp).unwrap(),
        Subspace::new(&sp, &names(&["s"]), 64).unwrap(),
        Subspace::new(&sp, &names(&["n", "f"]), 64).unwrap(),
    ];
    let checks = [Check::new("s", Predicate::Equals(Value::string("x")))];
    let (chosen, regions) = best(&subs, &checks).unwrap();
    assert_eq!(chosen, &subs[1]);
    assert_eq!(regions.count(), 1);
    let checks = [Check::new("f", Predicate::LessThan(Value::Float(-1.0)))];
    assert_eq!(best(&subs, &checks).unwrap().0, &subs[2]);
    assert_eq!(best(&subs, &[]).unwrap().0, &subs[0], "the first of equals");
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        -3i64..3,
        Just(i64::MIN),
        Just(i64::MAX),
        any::<i64>(),
        Just(1 << 62),
        Just(-(1 << 62))
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(f64::NAN),
        Just(-f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        -3.0f64..3.0,
        any::<f64>()
    ]
}

fn string() -> impl Strategy<Value = Value> {
    prop_oneof![Just("a"), Just("b"), Just(""), Just("abc")].prop_map(Value::string)
}

fn object() -> impl Strategy<Value = (Value, Object)> {
    (string(), int(), float(), string(), int()).prop_map(|(k, n, f, s, t)| {
        let mut o = Object::new();
        o.insert("n".into(), Value::Int(n));
        o.insert("f".into(), Value::Float(f));
        o.insert("s".into(), s);
        o.insert("t".into(), Value::Timestamp(t));
        (k, o)
    })
}

fn check() -> impl Strategy<Value = Check> {
    let ordered = prop_oneof![
        int().prop_map(|i| ("n", Value::Int(i))),
        float().prop_map(|f| ("f", Value::Float(f))),
        int().prop_map(|i| ("t", Value::Timestamp(i))),
    ];
    prop_oneof![
        (ordered.clone(), 0..5u8).prop_map(|((a, v), p)| {
            let p = match p {
                0 => Predicate::Equals(v),
                1 => Predicate::LessThan(v),
                2 => Predicate::LessEqual(v),
                3 => Predicate::GreaterEqual(v),
                _ => Predicate::GreaterThan(v),
            };
            Check::new(a, p)
        }),
        (ordered, int()).prop_map(|((a, v), other)| {
            let w = match &v {
                Value::Int(_) => Value::Int(other),
                Value::Float(_) => Value::Float(other as f64),
                _ => Value::Timestamp(other),
            };
            let (lo, hi) = if v <= w { (v, w) } else { (w, v) };
            Check::new(a, Predicate::Range(lo, hi))
        }),
        string().prop_map(|s| Check::new("s", Predicate::Equals(s))),
        string().prop_map(|s| Check::new("k", Predicate::Equals(s))),
        Just(Check::new("s", Predicate::Regex("b".into()))),
    ]
}

proptest! {
    /// Soundness: an object passing the checks is in a region the search asks.
    #[test]
    fn every_match_lies_in_a_region_asked(
        objects in prop::collection::vec(object(), 1..20),
        checks in prop::collection::vec(check(), 0..4),
        attrs in prop::sample::select(vec![
            vec!["k"], vec!["n"], vec!["s", "n"], vec!["n", "f", "t"], vec!["f", "k"],
        ]),
        partitions in prop::sample::select(vec![1u32, 2, 6, 64, 97]),
    ) {
        let sp = space(partitions);
        let sub = Subspace::new(&sp, &names(&attrs), partitions).unwrap();
        let regions = sub.matching(&checks);
        let asked: Vec<u32> = regions.iter().collect();
        prop_assert_eq!(asked.len() as u64, regions.count());
        prop_assert!(asked.windows(2).all(|w| w[0] < w[1]), "increasing: {:?}", asked);
        prop_assert!(asked.iter().all(|r| *r < sub.regions()));
        for (key, obj) in &objects {
            let region = sub.region_of(key, obj);
            prop_assert!(region < sub.regions());
            if matches(&sp, key, obj, &checks) {
                prop_assert!(
                    asked.contains(&region),
                    "{:?} {:?} in region {} not among {:?}", key, obj, region, asked
                );
            }
        }
    }
}
