//! A search of a subspace region through its entries in value order finds exactly the keys a
//! scan of the region finds, whatever updates, moves away, replacements and expiries came
//! before.

use std::sync::Arc;

use hyperdex_model::value::encode;
use hyperdex_model::{parse_space, Check, Object, Predicate, Value};
use proptest::prelude::*;

use super::subspace::{ensure_built, SubspaceSpecs};
use super::*;
use crate::config::{Config, SpaceConfig};
use crate::daemon::replica::{load_entry, stage_entry};
use crate::daemon::search::search_store;
use crate::hyperspace::entry::{Entry, Update};
use crate::storage::MemStore;

const SPACE: SpaceId = SpaceId(5);

fn config() -> Config {
    let text = "space s key k attributes int n, string t, float f subspace n, t \
                create 2 partitions";
    let mut c = Config::default();
    c.spaces.insert(
        "s".into(),
        SpaceConfig {
            id: SPACE,
            schema: parse_space(text).unwrap(),
            chains: vec![Vec::new(); 4],
            joining: vec![None; 4],
        },
    );
    c
}

/// The first region of the subspace `n, t`.
const REGION: RegionId = RegionId {
    space: SPACE,
    index: 2,
};

fn values(n: i64, t: u8) -> Object {
    [
        ("n".to_string(), Value::Int(n)),
        ("t".to_string(), Value::string(format!("t{t}"))),
    ]
    .into()
}

#[derive(Clone, Debug)]
enum Step {
    /// Key, version step, values (none: moved away or deleted).
    Update(u8, u64, Option<(i64, u8)>),
    /// The key's former values expire.
    Expire(u8),
    /// The entry is removed (settled with no values).
    Remove(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..30, 0u64..3, proptest::option::weighted(0.8, (-4i64..4, 0u8..4)))
            .prop_map(|(k, v, now)| Step::Update(k, v, now)),
        1 => (0u8..30).prop_map(Step::Expire),
        1 => (0u8..30).prop_map(Step::Remove),
    ]
}

fn checks() -> Vec<Vec<Check>> {
    let c = |a: &str, p| vec![Check::new(a, p)];
    let mut all = Vec::new();
    for v in -4..5 {
        all.push(c("n", Predicate::Equals(Value::Int(v))));
        all.push(c("n", Predicate::Range(Value::Int(v), Value::Int(v + 2))));
        all.push(c("n", Predicate::LessThan(Value::Int(v))));
    }
    for t in 0..4 {
        all.push(c("t", Predicate::Equals(Value::string(format!("t{t}")))));
    }
    all.push(vec![
        Check::new("t", Predicate::Equals(Value::string("t1"))),
        Check::new("n", Predicate::GreaterEqual(Value::Int(0))),
    ]);
    all
}

fn key(k: u8) -> Vec<u8> {
    encode(&Value::string(format!("k{k:02}")))
}

fn found(store: &MemStore, sc: &SpaceConfig, checks: &[Check]) -> Vec<Value> {
    let (mut out, mut after) = (Vec::new(), None);
    loop {
        let page = search_store(
            store,
            sc,
            &[REGION],
            (after.as_ref(), None),
            (checks, false),
        )
        .expect("search");
        out.extend(page.objects.iter().map(|o| o["k"].clone()));
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

/// What a scan of the region finds: keys whose current or former values pass `checks`.
fn scanned(store: &MemStore, sc: &SpaceConfig, checks: &[Check]) -> Vec<Value> {
    let mut out = Vec::new();
    for k in 0..30u8 {
        let e = load_entry(store, REGION, &key(k)).unwrap();
        let kept = e.current.iter().chain(e.formers.iter().map(|f| &f.values));
        let name = Value::string(format!("k{k:02}"));
        let passes = |o: &Object| hyperdex_model::apply::matches(&sc.schema, &name, o, checks);
        if kept.into_iter().any(passes) {
            out.push(name);
        }
    }
    out
}

proptest! {
    #[test]
    fn entries_in_value_order_find_what_a_scan_finds(steps in proptest::collection::vec(step(), 1..80)) {
        let cfg = config();
        let sc = cfg.spaces["s"].clone();
        let specs = Arc::new(Specs::of(&cfg));
        let mut disk = MemStore::new();
        let mut versions = [0u64; 30];
        for s in steps {
            let mut store = Indexed::new(&mut disk, specs.clone());
            match s {
                Step::Update(k, skip, now) => {
                    let mut e = load_entry(&store, REGION, &key(k)).unwrap();
                    // Mostly newer versions; sometimes the same or an older one again.
                    let v = (versions[k as usize] + 1).saturating_sub(skip);
                    versions[k as usize] = versions[k as usize].max(v);
                    e.absorb(Update { version: v, now: now.map(|(n, t)| values(n, t)) });
                    stage_entry(&mut store, REGION, &key(k), &e);
                }
                Step::Expire(k) => {
                    let mut e = load_entry(&store, REGION, &key(k)).unwrap();
                    e.formers.clear();
                    stage_entry(&mut store, REGION, &key(k), &e);
                }
                Step::Remove(k) => {
                    store.put(Table::Subspace, &crate::daemon::record::object_key(REGION, &key(k)), None);
                }
            }
        }
        for c in checks() {
            prop_assert!(SubspaceSpecs::of(&sc).plan(REGION, &c).is_some(), "{c:?} bounds the subspace");
            prop_assert_eq!(found(&disk, &sc, &c), scanned(&disk, &sc, &c), "{:?}", c);
        }
        // Rebuilt from scratch (a store that predates the entries), the same entries.
        let before = disk.scan_prefix(Table::Index, &[]).unwrap();
        disk.delete_prefix(Table::Index, &[]);
        ensure_built(&mut disk, &cfg).unwrap();
        prop_assert_eq!(disk.scan_prefix(Table::Index, &[]).unwrap(), before);
    }
}

/// A range of two numbers among many in one region reads only the entries in bounds.
#[test]
fn a_narrow_range_reads_only_its_entries() {
    let cfg = config();
    let sc = cfg.spaces["s"].clone();
    let specs = Arc::new(Specs::of(&cfg));
    let mut disk = MemStore::new();
    let mut store = Indexed::new(&mut disk, specs);
    for k in 0..30u8 {
        let mut e = Entry::new();
        e.absorb(Update {
            version: 1,
            now: Some(values(i64::from(k) * 10, k % 4)),
        });
        stage_entry(&mut store, REGION, &key(k), &e);
    }
    let two = vec![Check::new(
        "n",
        Predicate::Range(Value::Int(100), Value::Int(119)),
    )];
    let p = SubspaceSpecs::of(&sc)
        .plan(REGION, &two)
        .expect("n bounds the subspace");
    assert_eq!(
        scan_region(&disk, REGION, &p, None, usize::MAX)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        found(&disk, &sc, &two),
        vec![Value::string("k10"), Value::string("k11")]
    );
    // An attribute of no subspace of this region: no plan (the region is scanned).
    let f = vec![Check::new("f", Predicate::Equals(Value::Float(1.0)))];
    assert_eq!(SubspaceSpecs::of(&sc).plan(REGION, &f), None);
}
