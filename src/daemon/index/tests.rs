//! Searches through an index find exactly what a scan finds, whatever writes, deletions,
//! crashes, index additions and removals came before.

use std::collections::BTreeSet;
use std::sync::Arc;

use hyperdex_model::value::encode;
use hyperdex_model::{parse_space, Check, Predicate, Value};
use proptest::prelude::*;

use super::*;
use crate::config::{Config, SpaceConfig};
use crate::daemon::record::{stage, StoredObject};
use crate::daemon::search::search_store;
use crate::storage::MemStore;

const SPACE: SpaceId = SpaceId(3);

fn config(indexes: &str) -> Config {
    let text =
        format!("space s key k attributes int n, string t, float f {indexes} create 2 partitions");
    let mut c = Config::default();
    c.spaces.insert(
        "s".into(),
        SpaceConfig {
            id: SPACE,
            schema: parse_space(&text).unwrap(),
            chains: vec![Vec::new(); 2],
            joining: vec![None; 2],
        },
    );
    c
}

fn region(i: u32) -> RegionId {
    RegionId {
        space: SPACE,
        index: i,
    }
}

#[derive(Clone, Debug)]
enum Step {
    Put(u8, i64, u8, f64),
    Del(u8),
    Sync,
    Crash,
    /// Install the configuration with (true) or without (false) the indexes.
    Indexes(bool),
    Build,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..40, -4i64..4, 0u8..4, prop_oneof![Just(-0.0), Just(0.0), Just(1.5), Just(-2.0), Just(f64::NAN)])
            .prop_map(|(k, n, t, f)| Step::Put(k, n, t, f)),
        2 => (0u8..40).prop_map(Step::Del),
        1 => Just(Step::Sync),
        1 => Just(Step::Crash),
        1 => any::<bool>().prop_map(Step::Indexes),
        2 => Just(Step::Build),
    ]
}

fn text(t: u8) -> Value {
    Value::String(match t {
        0 => b"".to_vec(),
        1 => b"a\0b".to_vec(),
        2 => b"a".to_vec(),
        _ => b"ab".to_vec(),
    })
}

fn key(k: u8) -> Vec<u8> {
    encode(&Value::string(format!("k{k:02}")))
}

/// The keys a search finds, page by page, reading through `plan` (or scanning).
fn found(store: &MemStore, sc: &SpaceConfig, checks: &[Check], plan: Option<&Plan>) -> Vec<Value> {
    let regions = [region(0), region(1)];
    let (mut out, mut after) = (Vec::new(), None);
    loop {
        let page =
            search_store(store, sc, &regions, (after.as_ref(), plan), (checks, false)).unwrap();
        out.extend(page.objects.iter().map(|o| o["k"].clone()));
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

fn checks() -> Vec<Vec<Check>> {
    let c = |a: &str, p| vec![Check::new(a, p)];
    let mut all = Vec::new();
    for v in -4..5 {
        all.push(c("n", Predicate::Equals(Value::Int(v))));
        all.push(c("n", Predicate::LessThan(Value::Int(v))));
        all.push(c("n", Predicate::GreaterEqual(Value::Int(v))));
        all.push(c("n", Predicate::Range(Value::Int(v), Value::Int(v + 2))));
    }
    for t in 0..4 {
        all.push(c("t", Predicate::Equals(text(t))));
        all.push(c("t", Predicate::GreaterThan(text(t))));
    }
    for f in [-0.0, 0.0, 1.5, f64::NAN] {
        all.push(c("f", Predicate::Equals(Value::Float(f))));
        all.push(c("f", Predicate::LessEqual(Value::Float(f))));
    }
    all.push(vec![
        Check::new("n", Predicate::GreaterThan(Value::Int(-2))),
        Check::new("t", Predicate::Equals(text(2))),
    ]);
    // Several checks on one attribute: their bounds intersect (or cannot all hold).
    for (lo, hi) in [(-2, 1), (0, 0), (2, -1)] {
        all.push(vec![
            Check::new("n", Predicate::GreaterEqual(Value::Int(lo))),
            Check::new("n", Predicate::LessThan(Value::Int(hi))),
            Check::new("f", Predicate::LessEqual(Value::Float(1.5))),
        ]);
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn an_index_finds_what_a_scan_finds(steps in prop::collection::vec(step(), 1..120)) {
        let mut disk = MemStore::new();
        let mut builds = Builds::default();
        let mut cfg = config("");
        let mut specs = Arc::new(Specs::of(&cfg));
        for s in steps {
            let mut store = Indexed::new(&mut disk, specs.clone());
            match s {
                Step::Put(k, n, t, f) => {
                    let obj = StoredObject {
                        version: 1,
                        object: Some([
                            ("n".to_string(), Value::Int(n)),
                            ("t".to_string(), text(t)),
                            ("f".to_string(), Value::Float(f)),
                        ].into()),
                        dedupe: Vec::new(),
                    };
                    stage(&mut store, region(u32::from(k % 2)), &key(k), &obj).unwrap();
                }
                Step::Del(k) => {
                    let gone = StoredObject { version: 2, object: None, dedupe: Vec::new() };
                    stage(&mut store, region(u32::from(k % 2)), &key(k), &gone).unwrap();
                }
                Step::Sync => store.sync().unwrap(),
                Step::Crash => {
                    disk.crash();
                    // A restarted daemon knows of no build in progress.
                    builds = Builds::default();
                    builds.reconcile(&mut Indexed::new(&mut disk, specs.clone()), &specs).unwrap();
                }
                Step::Indexes(on) => {
                    cfg = config(if on { "index n index t index f" } else { "" });
                    specs = Arc::new(Specs::of(&cfg));
                    builds.reconcile(&mut Indexed::new(&mut disk, specs.clone()), &specs).unwrap();
                }
                Step::Build => builds.step(&mut store, &specs).unwrap(),
            }
        }
        let sc = cfg.spaces["s"].clone();
        for checks in checks() {
            let scanned = found(&disk, &sc, &checks, None);
            let planned = plan(&disk, &sc, &checks).unwrap();
            let through = found(&disk, &sc, &checks, planned.as_ref());
            let unique: BTreeSet<_> = through.iter().collect();
            prop_assert_eq!(unique.len(), through.len(), "an object found twice: {:?}", checks);
            let mut sorted = through.clone();
            sorted.sort();
            let mut want = scanned.clone();
            want.sort();
            prop_assert_eq!(sorted, want, "{:?} with {:?}", checks, planned);
        }
    }
}

/// A build over more objects than one batch takes several ticks, and a search reads the index
/// only once it is complete; the index then reads only the entries in bounds.
#[test]
fn a_build_takes_batches_and_is_used_once_complete() {
    let mut disk = MemStore::new();
    let n = BUILD_BATCH * 2 + 10;
    {
        let specs = Arc::new(Specs::default());
        let mut store = Indexed::new(&mut disk, specs);
        for i in 0..n {
            let obj = StoredObject {
                version: 1,
                object: Some([("n".to_string(), Value::Int(i as i64))].into()),
                dedupe: Vec::new(),
            };
            let k = encode(&Value::string(format!("k{i:06}")));
            stage(&mut store, region((i % 2) as u32), &k, &obj).unwrap();
        }
    }
    let cfg = config("index n");
    let sc = cfg.spaces["s"].clone();
    let specs = Arc::new(Specs::of(&cfg));
    let mut builds = Builds::default();
    builds.reconcile(&mut disk, &specs).unwrap();
    let checks = vec![Check::new(
        "n",
        Predicate::Range(Value::Int(100), Value::Int(109)),
    )];
    let mut ticks = 0;
    while builds.in_progress() > 0 {
        assert_eq!(
            plan(&disk, &sc, &checks).unwrap(),
            None,
            "used before complete"
        );
        builds.step(&mut disk, &specs).unwrap();
        ticks += 1;
    }
    assert_eq!(ticks, 3);
    let p = plan(&disk, &sc, &checks).unwrap().expect("used once built");
    let entries: usize = [region(0), region(1)]
        .iter()
        .map(|r| scan_region(&disk, *r, &p, None, usize::MAX).unwrap().len())
        .sum();
    assert_eq!(entries, 10, "only the entries in bounds are read");
    assert_eq!(found(&disk, &sc, &checks, Some(&p)).len(), 10);
    // Two checks on the attribute read only what both allow.
    let both = vec![
        Check::new("n", Predicate::GreaterEqual(Value::Int(100))),
        Check::new("n", Predicate::LessEqual(Value::Int(109))),
    ];
    let p2 = plan(&disk, &sc, &both).unwrap().expect("used");
    let entries: usize = [region(0), region(1)]
        .iter()
        .map(|r| scan_region(&disk, *r, &p2, None, usize::MAX).unwrap().len())
        .sum();
    assert_eq!(entries, 10, "the bounds of both checks");
    // Removing the index forgets it: entries and record.
    let none = Arc::new(Specs::default());
    builds.reconcile(&mut disk, &none).unwrap();
    assert!(disk.scan_prefix(Table::Index, b"").unwrap().is_empty());
    assert_eq!(plan(&disk, &config("").spaces["s"], &checks).unwrap(), None);
}

#[test]
fn entries_split_into_value_and_key() {
    let v = encode::sortable(&Value::String(b"a\0\x01b".to_vec())).unwrap();
    let suffix = [v.as_slice(), b"\0\x01key"].concat();
    assert_eq!(
        split_entry(Datatype::String, &suffix),
        Some((v.as_slice(), &b"\0\x01key"[..]))
    );
    assert_eq!(split_entry(Datatype::String, b"ab"), None);
    assert_eq!(split_entry(Datatype::Int, &[0; 7]), None);
}

/// A region with more entries in bounds than a page examines is read in key order instead
/// (never paged in index order); each object is still found once.
#[test]
fn a_region_too_large_for_a_page_is_read_in_key_order() {
    use crate::daemon::search::PAGE_SCAN;
    let mut disk = MemStore::new();
    let cfg = config("index n");
    let sc = cfg.spaces["s"].clone();
    let specs = Arc::new(Specs::of(&cfg));
    let mut builds = Builds::default();
    builds.reconcile(&mut disk, &specs).unwrap();
    builds.step(&mut disk, &specs).unwrap();
    let n = PAGE_SCAN + PAGE_SCAN / 2;
    {
        let mut store = Indexed::new(&mut disk, specs.clone());
        for i in 0..n {
            // Region 0 gets them all with n = 1; region 1 a few with n = 1 and others.
            let value = if i % 100 == 0 { 2 } else { 1 };
            let obj = StoredObject {
                version: 1,
                object: Some([("n".to_string(), Value::Int(value))].into()),
                dedupe: Vec::new(),
            };
            stage(&mut store, region(0), &encode(&Value::Int(i as i64)), &obj).unwrap();
            if i < 50 {
                stage(
                    &mut store,
                    region(1),
                    &encode(&Value::Int(-(i as i64) - 1)),
                    &obj,
                )
                .unwrap();
            }
        }
    }
    let checks = vec![Check::new("n", Predicate::Equals(Value::Int(1)))];
    let p = plan(&disk, &sc, &checks).unwrap().expect("built");
    let through = found(&disk, &sc, &checks, Some(&p));
    let unique: BTreeSet<_> = through.iter().collect();
    assert_eq!(unique.len(), through.len());
    assert_eq!(through, found(&disk, &sc, &checks, None));
    assert_eq!(through.len(), n - n.div_ceil(100) + 49);
}
