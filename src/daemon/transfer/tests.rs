use super::*;
use crate::config::SpaceId;
use crate::daemon::record::{load, region_prefix, stage, StoredObject};
use crate::protocol::TransferEntry;
use crate::storage::{MemStore, Table};
use hyperdex_model::{Object, Value};

const REGION: RegionId = RegionId {
    space: SpaceId(1),
    index: 0,
};
const SOURCE: ServerId = ServerId(1);
const JOINER: ServerId = ServerId(2);

/// A configuration with one space of one region whose chain is `chain`, joined by
/// `joining` since version `since`.
fn config(version: u64, chain: &[u64], joining: Option<(u64, u64)>) -> Config {
    let mut c = crate::coordinator::state::Cluster::new(1);
    for i in 0..3 {
        c.apply(&crate::coordinator::state::Command::Register {
            id: None,
            addr: format!("s{i}"),
        })
        .expect("register");
    }
    c.apply(
        &crate::coordinator::state::Command::add_space(
            "space s key k attributes int n create 1 partition",
        )
        .expect("a valid space"),
    )
    .expect("space");
    let mut config = c.config;
    config.version = version;
    let s = config.spaces.get_mut("s").expect("space");
    s.chains[0] = chain.iter().map(|&i| ServerId(i)).collect();
    s.joining[0] = joining.map(|(server, since)| Joiner {
        server: ServerId(server),
        since,
        replaces: None,
    });
    config
}

fn object(i: i64) -> StoredObject {
    StoredObject {
        version: 1,
        object: Some(Object::from([("n".to_string(), Value::Int(i))])),
        dedupe: Vec::new(),
    }
}

fn fill(store: &mut MemStore, n: usize) {
    for i in 0..n {
        stage(
            store,
            REGION,
            format!("k{i:03}").as_bytes(),
            &object(i as i64),
        )
        .unwrap();
    }
    store.sync().expect("sync");
}

/// The window among `effects` (the first effect).
fn window_of(effects: &[Effect]) -> TransferData {
    match effects.first() {
        Some(Effect::Send(_, ChainMessage::TransferData(w))) => w.clone(),
        _ => panic!("not a window: {effects:?}"),
    }
}

/// The acknowledgement among `effects` (the first effect).
fn ack_of(effects: &[Effect]) -> TransferAck {
    match effects.first() {
        Some(Effect::Send(_, ChainMessage::TransferAck(a))) => a.clone(),
        _ => panic!("not an acknowledgement: {effects:?}"),
    }
}

/// Delivers the source's query (the first thing it sends a joiner) and the joiner's answer:
/// returns what the source sends next (the first window).
fn queried(
    src: (&mut Transfers, &mut MemStore),
    dst: (&mut Transfers, &mut MemStore),
    config: &Config,
    first: Vec<Effect>,
) -> Vec<Effect> {
    let [Effect::Send(JOINER, ChainMessage::TransferQuery(q))] = &first[..] else {
        panic!("not a query: {first:?}")
    };
    let answer = dst.0.on_query(dst.1, config, q.region).unwrap();
    let [Effect::Send(SOURCE, ChainMessage::TransferAck(a))] = &answer[..] else {
        panic!("{answer:?}")
    };
    src.0.on_ack(src.1, config, a.clone()).unwrap()
}

/// Delivers effects between a source and a joiner until none are left; returns how many
/// windows crossed and whether the joiner reported the region done.
fn run(
    src: (&mut Transfers, &mut MemStore),
    dst: (&mut Transfers, &mut MemStore),
    config: &Config,
    mut effects: Vec<Effect>,
) -> (usize, bool) {
    let (mut windows, mut done) = (0, false);
    while !effects.is_empty() {
        let mut next = Vec::new();
        for e in effects {
            match e {
                Effect::Send(to, ChainMessage::TransferData(t)) if to == JOINER => {
                    windows += 1;
                    next.extend(dst.0.on_data(dst.1, config, t).expect("data"));
                }
                Effect::Send(to, ChainMessage::TransferQuery(q)) if to == JOINER => {
                    next.extend(dst.0.on_query(dst.1, config, q.region).expect("query"));
                }
                Effect::Send(to, ChainMessage::TransferAck(a)) if to == SOURCE => {
                    next.extend(src.0.on_ack(src.1, config, a).expect("ack"));
                }
                Effect::Done(r, _) => done |= r == REGION,
                other => panic!("unexpected {other:?}"),
            }
        }
        effects = next;
    }
    (windows, done)
}

#[test]
fn a_joiner_receives_a_region_window_by_window() {
    let before = config(1, &[1], None);
    let during = config(2, &[1, 2], Some((2, 2)));
    let (mut src, mut dst) = (Transfers::new(SOURCE, 10), Transfers::new(JOINER, 10));
    let (mut s_store, mut d_store) = (MemStore::new(), MemStore::new());
    fill(&mut s_store, 35);
    // A key the joiner holds from an earlier life that the source lacks (a write never
    // committed) is removed.
    stage(&mut d_store, REGION, b"zzz", &object(-1)).unwrap();
    assert!(dst
        .on_config(&mut d_store, &before, &during)
        .unwrap()
        .is_empty());
    let first = src.on_config(&mut s_store, &before, &during).unwrap();
    let (windows, done) = run(
        (&mut src, &mut s_store),
        (&mut dst, &mut d_store),
        &during,
        first,
    );
    assert_eq!(windows, 4, "35 objects in windows of 10");
    assert!(done);
    let prefix = region_prefix(REGION);
    assert_eq!(
        s_store.scan_prefix(Table::Objects, &prefix).unwrap(),
        d_store.scan_prefix(Table::Objects, &prefix).unwrap()
    );
}

/// A source holding `objects` objects and a joiner, after the first window crossed and
/// before its acknowledgement is delivered: (configuration, source, joiner, their stores,
/// the window, the acknowledgement).
fn first_window(
    objects: usize,
) -> (
    Config,
    Transfers,
    Transfers,
    MemStore,
    MemStore,
    TransferData,
    TransferAck,
) {
    let (mut s_store, mut d_store) = (MemStore::new(), MemStore::new());
    fill(&mut s_store, objects);
    let (during, src, mut dst, first) = start_join(&mut s_store, &mut d_store);
    let w1 = window_of(&first);
    let a1 = ack_of(&dst.on_data(&mut d_store, &during, w1.clone()).unwrap());
    (during, src, dst, s_store, d_store, w1, a1)
}

#[test]
fn a_window_out_of_place_is_answered_with_where_to_resume() {
    let (during, mut src, mut dst, mut s_store, mut d_store, w1, a1) = first_window(25);
    // The first window has arrived; its ack is lost; the source, restarted, sends a window
    // from a later place. The joiner refuses it and says where it is.
    let mut skipping = w1.clone();
    skipping.after = Some(b"k015".to_vec());
    let answer = dst.on_data(&mut d_store, &during, skipping).unwrap();
    assert_eq!(
        answer,
        vec![Effect::Send(
            SOURCE,
            ChainMessage::TransferAck(TransferAck {
                done: false,
                ..a1.clone()
            })
        )]
    );
    let (_, done) = run(
        (&mut src, &mut s_store),
        (&mut dst, &mut d_store),
        &during,
        answer,
    );
    assert!(done);
    assert_eq!(
        d_store
            .scan_prefix(Table::Objects, &region_prefix(REGION))
            .unwrap()
            .len(),
        25,
        "nothing skipped"
    );
}

#[test]
fn a_newer_object_on_the_joiner_keeps_its_value() {
    let mut store = MemStore::new();
    let mut newer = object(7);
    newer.version = 5;
    stage(&mut store, REGION, b"k", &newer).unwrap();
    let older = postcard::to_allocvec(&object(1)).unwrap();
    store_transferred(&mut store, REGION, b"k", &older).unwrap();
    assert_eq!(load(&store, REGION, b"k").unwrap(), newer);
}

#[test]
fn a_server_that_stops_being_the_source_stops_sending() {
    let before = config(1, &[1], None);
    let during = config(2, &[1, 2], Some((2, 2)));
    let after = config(3, &[1, 2], None);
    let mut src = Transfers::new(SOURCE, 10);
    let mut store = MemStore::new();
    fill(&mut store, 30);
    assert_eq!(
        src.on_config(&mut store, &before, &during).unwrap().len(),
        1
    );
    assert!(src
        .on_config(&mut store, &during, &after)
        .unwrap()
        .is_empty());
    assert!(src.tick(&mut store, &after).unwrap().is_empty());
}

/// The regions of the transfer messages a source sends among `effects`: windows, and the
/// queries that come before a transfer's first window.
fn windows_in(effects: &[Effect]) -> Vec<RegionId> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(_, ChainMessage::TransferData(t)) => Some(t.region),
            Effect::Send(_, ChainMessage::TransferQuery(q)) => Some(q.region),
            _ => None,
        })
        .collect()
}

#[test]
fn an_unacknowledged_window_is_sent_again_only_after_some_ticks() {
    let before = config(1, &[1], None);
    let during = config(2, &[1, 2], Some((2, 2)));
    let mut src = Transfers::new(SOURCE, 10);
    let mut store = MemStore::new();
    fill(&mut store, 30);
    let first = src.on_config(&mut store, &before, &during).unwrap();
    assert_eq!(windows_in(&first), vec![REGION]);
    for _ in 1..RESEND_TICKS {
        let out = src.tick(&mut store, &during).unwrap();
        assert!(windows_in(&out).is_empty(), "resent too soon: {out:?}");
    }
    let out = src.tick(&mut store, &during).unwrap();
    assert_eq!(windows_in(&out), vec![REGION], "never resent");
    // A connection that comes up again gets the window at once.
    let out = src.peer_up(&mut store, &during, JOINER).unwrap();
    assert_eq!(windows_in(&out), vec![REGION]);
}

#[test]
fn a_source_sends_a_bounded_number_of_transfers_at_once() {
    let regions = ACTIVE_TRANSFERS as u32 * 2 + 1;
    let many = |version: u64, joining: bool| {
        let mut c = config(version, &[1], None);
        let s = c.spaces.get_mut("s").expect("space");
        s.chains = vec![
            if joining {
                vec![SOURCE, JOINER]
            } else {
                vec![SOURCE]
            };
            regions as usize
        ];
        s.joining = vec![
            joining.then_some(Joiner {
                server: JOINER,
                since: 2,
                replaces: None,
            });
            regions as usize
        ];
        c
    };
    let (before, during) = (many(1, false), many(2, true));
    let mut src = Transfers::new(SOURCE, 1000);
    let mut store = MemStore::new();
    for index in 0..regions {
        let region = RegionId {
            space: REGION.space,
            index,
        };
        stage(&mut store, region, b"k", &object(index as i64)).unwrap();
    }
    store.sync().unwrap();
    let mut in_flight = windows_in(&src.on_config(&mut store, &before, &during).unwrap());
    let mut finished = 0;
    while let Some(region) = in_flight.pop() {
        assert!(in_flight.len() < ACTIVE_TRANSFERS, "{in_flight:?}");
        // Every region holds one object: its first window is its last.
        let ack = TransferAck {
            config_version: during.version,
            region,
            upto: Some(b"k".to_vec()),
            done: true,
            held: Vec::new(),
            held_all: true,
        };
        in_flight.extend(windows_in(&src.on_ack(&mut store, &during, ack).unwrap()));
        finished += 1;
    }
    assert_eq!(finished, regions, "every transfer ran in turn");
}

#[test]
fn a_duplicate_ack_does_not_start_a_second_stream() {
    let (during, mut src, mut dst, mut s_store, mut d_store, w1, a1) = first_window(35);
    assert_eq!(
        windows_in(&src.on_ack(&mut s_store, &during, a1.clone()).unwrap()).len(),
        1
    );
    // The same ack again (or the joiner's answer to the first window sent twice).
    assert!(windows_in(&src.on_ack(&mut s_store, &during, a1.clone()).unwrap()).is_empty());
    let again = dst.on_data(&mut d_store, &during, w1.clone()).unwrap();
    let rewound = &ack_of(&again);
    assert!(windows_in(&src.on_ack(&mut s_store, &during, rewound.clone()).unwrap()).is_empty());
}

#[test]
fn each_joiner_gets_its_own_share_of_active_transfers() {
    const OTHER: ServerId = ServerId(3);
    let regions = ACTIVE_TRANSFERS as u32 * 2;
    let joined = |version: u64, joining: bool| {
        let mut c = config(version, &[1], None);
        let s = c.spaces.get_mut("s").expect("space");
        s.chains = (0..regions)
            .map(|i| {
                let to = if i < regions / 2 { JOINER } else { OTHER };
                if joining {
                    vec![SOURCE, to]
                } else {
                    vec![SOURCE]
                }
            })
            .collect();
        s.joining = (0..regions)
            .map(|i| {
                let server = if i < regions / 2 { JOINER } else { OTHER };
                joining.then_some(Joiner {
                    server,
                    since: 2,
                    replaces: None,
                })
            })
            .collect();
        c
    };
    let mut src = Transfers::new(SOURCE, 1000);
    let mut store = MemStore::new();
    let sent = src
        .on_config(&mut store, &joined(1, false), &joined(2, true))
        .unwrap();
    let to = |who: ServerId| {
        sent.iter()
            .filter(|e| matches!(e, Effect::Send(t, ChainMessage::TransferQuery(_)) if *t == who))
            .count()
    };
    assert_eq!(
        (to(JOINER), to(OTHER)),
        (ACTIVE_TRANSFERS, ACTIVE_TRANSFERS)
    );
}

/// The stored objects of `REGION` in `store`.
fn region_objects(store: &MemStore) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .scan_prefix(Table::Objects, &region_prefix(REGION))
        .unwrap()
}

/// Starts a join of `JOINER` fed by `SOURCE`: (configuration, source, joiner, the source's
/// first window).
fn start_join(
    s_store: &mut MemStore,
    d_store: &mut MemStore,
) -> (Config, Transfers, Transfers, Vec<Effect>) {
    let before = config(1, &[1], None);
    let during = config(2, &[1, 2], Some((2, 2)));
    let (mut src, mut dst) = (Transfers::new(SOURCE, 10), Transfers::new(JOINER, 10));
    assert!(dst.on_config(d_store, &before, &during).unwrap().is_empty());
    let first = src.on_config(s_store, &before, &during).unwrap();
    let first = queried((&mut src, s_store), (&mut dst, d_store), &during, first);
    (during, src, dst, first)
}

#[test]
fn a_joiner_with_its_old_copy_receives_only_what_changed() {
    let (mut s_store, mut d_store) = (MemStore::new(), MemStore::new());
    fill(&mut s_store, 100);
    fill(&mut d_store, 100);
    // While the joiner was away, two objects changed and one was added; it holds a write
    // that was never committed (a key the source lacks) and another at a version the chain
    // then gave to a different write.
    let mut changed = object(1000);
    changed.version = 2;
    stage(&mut s_store, REGION, b"k050", &changed).unwrap();
    stage(&mut s_store, REGION, b"k051", &changed).unwrap();
    stage(&mut s_store, REGION, b"k100", &object(100)).unwrap();
    stage(&mut d_store, REGION, b"k050x", &object(-1)).unwrap();
    let mut diverged = object(-2);
    diverged.version = 2;
    stage(&mut d_store, REGION, b"k051", &diverged).unwrap();
    let (during, mut src, mut dst, first) = start_join(&mut s_store, &mut d_store);
    let (_, done) = run(
        (&mut src, &mut s_store),
        (&mut dst, &mut d_store),
        &during,
        first,
    );
    assert!(done);
    let source = region_objects(&s_store);
    assert_eq!(source, region_objects(&d_store));
    // Whole: only the three objects that differ; every other one crossed as a digest.
    // (As sent: records inline, no summary.)
    let sent = super::window::objects_after(&s_store, (Table::Objects, REGION), None, 1000);
    let whole: u64 = sent
        .unwrap()
        .iter()
        .filter(|(k, _)| [&b"k050"[..], b"k051", b"k100"].contains(&k.as_slice()))
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum();
    let progress = dst.joining(&during);
    assert_eq!((progress[0].objects, progress[0].bytes), (101, whole));
}

#[test]
fn an_old_copy_counts_only_once_the_transfer_passes_it_and_writes_during_the_join_stay() {
    let (mut s_store, mut d_store) = (MemStore::new(), MemStore::new());
    fill(&mut s_store, 30);
    fill(&mut d_store, 30);
    let (during, mut src, mut dst, first) = start_join(&mut s_store, &mut d_store);
    assert!(dst.unverified(&during, REGION, b"k000"));
    // A write of a new key reaches the joiner; the source stores it only once the joiner
    // has acknowledged it, so its windows do not have it yet.
    assert!(dst.written_live(REGION, b"k025x"));
    stage(&mut d_store, REGION, b"k025x", &object(7)).unwrap();
    assert!(!dst.unverified(&during, REGION, b"k025x"));
    let w1 = &window_of(&first);
    let acked = dst.on_data(&mut d_store, &during, w1.clone()).unwrap();
    assert!(!dst.unverified(&during, REGION, b"k009"), "passed");
    assert!(dst.unverified(&during, REGION, b"k010"), "not yet");
    let (_, done) = run(
        (&mut src, &mut s_store),
        (&mut dst, &mut d_store),
        &during,
        acked,
    );
    assert!(done);
    assert!(!dst.unverified(&during, REGION, b"k029"));
    assert_eq!(load(&d_store, REGION, b"k025x").unwrap(), object(7));
    assert_eq!(region_objects(&d_store).len(), 31);
}

#[test]
fn an_object_changed_after_the_joiner_described_it_is_sent_again() {
    let (mut s_store, mut d_store) = (MemStore::new(), MemStore::new());
    fill(&mut s_store, 30);
    fill(&mut d_store, 30);
    let (during, mut src, mut dst, first) = start_join(&mut s_store, &mut d_store);
    let w1 = &window_of(&first);
    let acked = dst.on_data(&mut d_store, &during, w1.clone()).unwrap();
    let a1 = &ack_of(&acked);
    assert_eq!(a1.held.len(), 10, "the joiner describes its next window");
    let next = src.on_ack(&mut s_store, &during, a1.clone()).unwrap();
    let w2 = &window_of(&next);
    assert!(w2
        .entries
        .iter()
        .all(|(_, e)| matches!(e, TransferEntry::Unchanged(_))));
    // The joiner's copy of k012 changes before the window arrives.
    stage(&mut d_store, REGION, b"k012", &object(-12)).unwrap();
    let answer = dst.on_data(&mut d_store, &during, w2.clone()).unwrap();
    let a2 = &ack_of(&answer);
    assert_eq!((a2.upto.as_deref(), a2.done), (Some(&b"k011"[..]), false));
    let (_, done) = run(
        (&mut src, &mut s_store),
        (&mut dst, &mut d_store),
        &during,
        answer,
    );
    assert!(done);
    assert_eq!(region_objects(&s_store), region_objects(&d_store));
}

#[test]
fn a_window_sent_again_after_the_last_does_not_remove_later_writes() {
    let (mut s_store, mut d_store) = (MemStore::new(), MemStore::new());
    let (during, _, mut dst, first) = start_join(&mut s_store, &mut d_store);
    let w1 = &window_of(&first);
    assert_eq!(
        w1.through, None,
        "an empty region: the first window is the last"
    );
    let acked = dst.on_data(&mut d_store, &during, w1.clone()).unwrap();
    assert!(acked.contains(&Effect::Done(REGION, 2)));
    // A write reaches the joiner, now holding the whole region; then the window arrives
    // again (the source resent it before the acknowledgement reached it).
    stage(&mut d_store, REGION, b"new", &object(1)).unwrap();
    let again = dst.on_data(&mut d_store, &during, w1.clone()).unwrap();
    assert_eq!(load(&d_store, REGION, b"new").unwrap(), object(1));
    assert!(
        matches!(&again[..], [Effect::Send(SOURCE, ChainMessage::TransferAck(a))] if a.done),
        "{again:?}"
    );
}

#[test]
fn a_source_sends_windows_no_faster_than_its_rate() {
    let (mut s_store, mut d_store) = (MemStore::new(), MemStore::new());
    fill(&mut s_store, 30);
    let (during, src, mut dst, _) = start_join(&mut s_store, &mut d_store);
    // One byte per second: every window overdraws the bucket.
    let mut src = src.with_rate(1);
    let t0 = crate::rt::now();
    src.advance(t0);
    let before = config(1, &[1], None);
    let first = src.on_config(&mut s_store, &before, &during).unwrap();
    let first = queried(
        (&mut src, &mut s_store),
        (&mut dst, &mut d_store),
        &during,
        first,
    );
    let w1 = &window_of(&first);
    let acked = dst.on_data(&mut d_store, &during, w1.clone()).unwrap();
    let a1 = &ack_of(&acked);
    assert!(windows_in(&src.on_ack(&mut s_store, &during, a1.clone()).unwrap()).is_empty());
    assert!(windows_in(&src.tick(&mut s_store, &during).unwrap()).is_empty());
    src.advance(t0 + std::time::Duration::from_secs(3600));
    assert_eq!(
        windows_in(&src.tick(&mut s_store, &during).unwrap()),
        vec![REGION],
        "sent once the bucket has refilled"
    );
}

#[test]
fn an_object_written_after_the_joiner_described_it_stays() {
    let (mut s_store, mut d_store) = (MemStore::new(), MemStore::new());
    fill(&mut s_store, 30);
    fill(&mut d_store, 30);
    let (during, mut src, mut dst, first) = start_join(&mut s_store, &mut d_store);
    let w1 = &window_of(&first);
    let acked = dst.on_data(&mut d_store, &during, w1.clone()).unwrap();
    let a1 = &ack_of(&acked);
    let next = src.on_ack(&mut s_store, &during, a1.clone()).unwrap();
    let w2 = &window_of(&next);
    // The chain writes a newer version of k012 to both before the window arrives (the
    // source stores it once the joiner has acknowledged it).
    let mut newer = object(12);
    newer.version = 2;
    assert!(dst.written_live(REGION, b"k012"));
    stage(&mut d_store, REGION, b"k012", &newer).unwrap();
    let answer = dst.on_data(&mut d_store, &during, w2.clone()).unwrap();
    let a2 = &ack_of(&answer);
    assert_eq!(
        a2.upto.as_deref(),
        w2.through.as_deref(),
        "the whole window applied"
    );
    assert_eq!(load(&d_store, REGION, b"k012").unwrap(), newer);
}
