//! Value-dependent chaining, step by step on a hand-wired network (`daemon::testnet`).

use hyperdex_model::{Object, Operation, Reply, Value};

use super::subspace::load_entry;
use super::*;
use crate::config::{key_bytes, RegionId};
use crate::daemon::record::{load, stage, StoredObject};
use crate::daemon::testnet::{head_of, op, Net};
use crate::limits::SEARCH_LIFE;
use crate::protocol::SettleAnswer;

/// Keys with `n < 0` lie in region 0 of the subspace over `n`, the others in region 1.
const SPACE: &str =
    "space s key k attributes int n subspace n create 2 partitions tolerate 1 failure";

fn put(net: &mut Net, config: &Config, waiter: u32, key: &str, n: i64) {
    let (head, _) = head_of(config, key);
    let input = op(
        config,
        waiter,
        waiter.into(),
        Operation::put("s", key, vec![("n", Value::Int(n))]),
    );
    net.input(head, input);
}

fn key(config: &Config, key: &str) -> Vec<u8> {
    key_bytes(&config.space("s").unwrap().schema, &Value::string(key)).unwrap()
}

/// Region `r` of the subspace over `n`.
fn sub_region(config: &Config, r: u32) -> RegionId {
    config.space("s").unwrap().subspace_region(1, r)
}

/// What every member of region `r` of the subspace holds for `key`: current value of `n` and
/// the values of `n` kept as formers.
fn held(net: &Net, config: &Config, r: u32, k: &str) -> Vec<(Option<i64>, Vec<i64>)> {
    let n = |o: &Object| match o["n"] {
        Value::Int(n) => n,
        _ => panic!("an int"),
    };
    let region = sub_region(config, r);
    config
        .chain(region)
        .iter()
        .map(|m| {
            let e = load_entry(&net.replicas[m].1, region, &key(config, k)).unwrap();
            let formers = e.formers.iter().map(|f| n(&f.values)).collect();
            (e.current.as_ref().map(n), formers)
        })
        .collect()
}

fn is_update(m: &ChainMessage) -> bool {
    matches!(
        m,
        ChainMessage::Update(_) | ChainMessage::Updated(_) | ChainMessage::UpdateDone(_)
    )
}

/// Delivers every message but the subspace ones; returns those.
fn deliver_key_chain(net: &mut Net) -> Vec<(ServerId, ServerId, ChainMessage)> {
    let mut held_back = Vec::new();
    while !net.in_flight.is_empty() {
        let (from, to, msg) = net.in_flight.remove(0);
        if is_update(&msg) {
            held_back.push((from, to, msg));
        } else {
            net.input(to, Input::Chain { from, msg });
        }
    }
    held_back
}

#[test]
fn a_write_is_answered_only_once_every_subspace_region_it_touches_holds_it() {
    let (mut net, config) = Net::new(3, SPACE);
    put(&mut net, &config, 1, "a", 5);
    let updates = deliver_key_chain(&mut net);
    assert!(
        net.replies.is_empty(),
        "no reply before the subspace holds it"
    );
    assert_eq!(updates.len(), 1, "one region: {updates:?}");
    net.in_flight = updates;
    net.deliver_all();
    assert_eq!(net.replies, vec![(1, Reply::Success)]);
    assert_eq!(held(&net, &config, 1, "a"), vec![(Some(5), vec![]); 2]);
    assert_eq!(held(&net, &config, 0, "a"), vec![(None, vec![]); 2]);
}

#[test]
fn a_write_that_moves_an_object_updates_both_regions() {
    let (mut net, config) = Net::new(3, SPACE);
    put(&mut net, &config, 1, "a", 5);
    net.deliver_all();
    put(&mut net, &config, 2, "a", -5);
    let updates = deliver_key_chain(&mut net);
    let mut regions: Vec<RegionId> = updates.iter().map(|(_, _, m)| m.region()).collect();
    regions.sort();
    assert_eq!(
        regions,
        vec![sub_region(&config, 0), sub_region(&config, 1)]
    );
    net.in_flight = updates;
    net.deliver_all();
    assert_eq!(net.replies, vec![(1, Reply::Success), (2, Reply::Success)]);
    assert_eq!(held(&net, &config, 0, "a"), vec![(Some(-5), vec![]); 2]);
    // The old values stay a candidate until the head is known to have committed the move.
    assert_eq!(held(&net, &config, 1, "a"), vec![(None, vec![5]); 2]);
}

#[test]
fn lost_updates_are_resent_by_the_key_tail() {
    let (mut net, config) = Net::new(3, SPACE);
    put(&mut net, &config, 1, "a", 5);
    deliver_key_chain(&mut net); // the updates are lost
                                 // The first tick after a send waits; the second resends.
    for _ in 0..2 {
        for &s in config.servers.keys() {
            net.input(s, Input::Tick);
        }
    }
    net.deliver_all();
    assert_eq!(net.replies, vec![(1, Reply::Success)]);
    assert_eq!(held(&net, &config, 1, "a"), vec![(Some(5), vec![]); 2]);
}

#[test]
fn a_new_key_tail_sends_the_updates_of_the_writes_pending_at_it() {
    let (mut net, config) = Net::new(3, SPACE);
    let (head, region) = head_of(&config, "a");
    put(&mut net, &config, 1, "a", 5);
    // The write reaches the head only; the tail fails.
    net.in_flight.clear();
    let tail = config.chain(region)[1];
    let mut next = config.clone();
    next.version += 1;
    for ch in &mut next.spaces.get_mut("s").unwrap().chains {
        if ch.len() > 1 {
            ch.retain(|&m| m != tail);
        }
    }
    for &s in next.servers.keys() {
        net.install(s, &next);
    }
    assert!(net.replies.is_empty());
    net.in_flight.retain(|(_, to, _)| *to != tail);
    net.deliver_all();
    assert_eq!(net.replies, vec![(1, Reply::Success)]);
    assert!(held(&net, &next, 1, "a")
        .iter()
        .all(|h| *h == (Some(5), vec![])));
    assert!(
        load(&net.replicas[&head].1, region, &key(&config, "a"))
            .unwrap()
            .version
            == 1
    );
}

#[test]
fn a_head_alone_in_its_chain_answers_once_the_subspace_holds_the_write() {
    let (mut net, config) = Net::new(
        1,
        "space s key k attributes int n subspace n create 2 partitions",
    );
    put(&mut net, &config, 1, "a", 5);
    // Server 1 is the subspace region's head too: the update is taken in at once.
    assert!(net.in_flight.is_empty(), "{:?}", net.in_flight);
    assert_eq!(net.replies, vec![(1, Reply::Success)]);
    assert_eq!(held(&net, &config, 1, "a"), vec![(Some(5), vec![])]);
}

#[test]
fn an_update_from_a_server_that_is_not_the_key_tail_is_dropped() {
    let (mut net, config) = Net::new(3, SPACE);
    let region = sub_region(&config, 1);
    let head = config.chain(region)[0];
    let (_, key_region) = head_of(&config, "a");
    let key_tail = *config.chain(key_region).last().unwrap();
    let forger = *config
        .servers
        .keys()
        .find(|&&s| s != key_tail && s != head)
        .unwrap();
    let mut object = Object::new();
    object.insert("n".into(), Value::Int(9));
    let msg = ChainMessage::Update(SubspaceUpdate {
        config_version: config.version,
        region,
        key: key(&config, "a"),
        version: 7,
        object: Some(object),
    });
    net.input(head, Input::Chain { from: forger, msg });
    assert!(net.in_flight.is_empty());
    let e = load_entry(&net.replicas[&head].1, region, &key(&config, "a")).unwrap();
    assert_eq!(e.version, 0, "nothing taken in");
}

fn tick_all(net: &mut Net, config: &Config) {
    for &s in config.servers.keys() {
        net.input(s, Input::Tick);
    }
    net.deliver_all();
}

#[test]
fn values_a_move_left_behind_go_a_search_life_after_the_head_committed_the_move() {
    let (mut net, config) = Net::new(3, SPACE);
    put(&mut net, &config, 1, "a", 5);
    net.deliver_all();
    put(&mut net, &config, 2, "a", -5);
    net.deliver_all();
    put(&mut net, &config, 3, "a", -6);
    net.deliver_all();
    assert_eq!(net.replies.len(), 3);
    assert_eq!(held(&net, &config, 1, "a"), vec![(None, vec![5]); 2]);
    assert_eq!(held(&net, &config, 0, "a"), vec![(Some(-6), vec![-5]); 2]);
    // The members learn that the head committed version 3; a search's life later they forget.
    tick_all(&mut net, &config);
    net.advance(SEARCH_LIFE / 2);
    tick_all(&mut net, &config);
    assert_eq!(held(&net, &config, 1, "a"), vec![(None, vec![5]); 2]);
    net.advance(SEARCH_LIFE / 2);
    tick_all(&mut net, &config);
    assert_eq!(held(&net, &config, 0, "a"), vec![(Some(-6), vec![]); 2]);
    let region = sub_region(&config, 1);
    for m in config.chain(region) {
        let bytes = net.replicas[m].1.get(
            Table::Subspace,
            &crate::daemon::record::object_key(region, &key(&config, "a")),
        );
        assert_eq!(
            bytes.unwrap(),
            None,
            "the entry of the region the object left is deleted"
        );
    }
}

#[test]
fn a_settling_answer_from_a_server_that_is_not_the_key_head_is_dropped() {
    let (mut net, config) = Net::new(3, SPACE);
    put(&mut net, &config, 1, "a", 5);
    net.deliver_all();
    put(&mut net, &config, 2, "a", -5);
    net.deliver_all();
    let (head, key_region) = head_of(&config, "a");
    let region = sub_region(&config, 1);
    let member = config.chain(region)[0];
    let forger = *config.servers.keys().find(|&&s| s != head).unwrap();
    let answer = ChainMessage::SettleAnswer(SettleAnswer {
        config_version: config.version,
        region: key_region,
        subspace: region,
        versions: vec![(key(&config, "a"), 99)],
    });
    net.input(
        member,
        Input::Chain {
            from: forger,
            msg: answer,
        },
    );
    net.advance(SEARCH_LIFE * 2);
    net.input(member, Input::Tick);
    let e = load_entry(&net.replicas[&member].1, region, &key(&config, "a")).unwrap();
    assert_eq!(e.formers.len(), 1, "kept: {e:?}");
}

/// `req` at server `at`, from waiter `waiter`.
fn search_at(net: &mut Net, at: ServerId, waiter: u32, req: SearchRequest) {
    net.input(at, Input::Search { waiter, req });
}

/// A search of every object of `region`.
fn scan_of(config: &Config, region: RegionId) -> SearchRequest {
    SearchRequest {
        config_version: config.version,
        space: "s".into(),
        regions: vec![region],
        checks: Vec::new(),
        after: None,
        count_only: false,
        keys: Vec::new(),
    }
}

#[test]
fn a_head_that_restarts_holding_a_write_shows_it_only_once_the_subspace_holds_it() {
    let (mut net, config) = Net::new(3, SPACE);
    put(&mut net, &config, 1, "a", 5);
    let updates = deliver_key_chain(&mut net); // the subspace region has not heard of it
    assert_eq!(updates.len(), 1);
    // The head restarts: it stores the write it kept pending (the chain may have
    // acknowledged it) and holds it for the subspace.
    let (head, region) = head_of(&config, "a");
    let store = net.replicas.remove(&head).expect("the head").1;
    net.replicas
        .insert(head, (Replica::new(head, Config::default()), store));
    net.install(head, &config);
    let restart_updates = std::mem::take(&mut net.in_flight);
    assert_eq!(
        load(&net.replicas[&head].1, region, &key(&config, "a"))
            .unwrap()
            .version,
        1
    );
    // A read waits, and a search of the key's region is refused for now.
    net.input(head, op(&config, 2, 2, Operation::get("s", "a")));
    let search = scan_of(&config, region);
    search_at(&mut net, head, 3, search.clone());
    assert!(
        !net.replies.iter().any(|(w, _)| *w == 2),
        "{:?}",
        net.replies
    );
    assert!(
        matches!(
            &net.replies[..],
            [(3, Reply::Error(ReturnCode::Reconfigure, _))]
        ),
        "{:?}",
        net.replies
    );
    // Reads beyond the bound are asked to come again.
    for w in 0..crate::limits::HELD_READERS as u32 {
        net.input(
            head,
            op(
                &config,
                1000 + w,
                1000 + u64::from(w),
                Operation::get("s", "a"),
            ),
        );
    }
    assert!(
        matches!(&net.replies[1..], [(w, Reply::Error(ReturnCode::Reconfigure, _))] if *w == 2023),
        "{:?}",
        &net.replies[1..]
    );
    // A lookup of other keys of the region is answered.
    let other = (b'b'..=b'z')
        .map(|c| String::from(c as char))
        .find(|k| head_of(&config, k).1 == region)
        .expect("another key in the region");
    let lookup = SearchRequest {
        keys: vec![key(&config, &other)],
        ..search.clone()
    };
    search_at(&mut net, head, 5, lookup);
    assert!(
        net.objects.iter().any(|(w, _)| *w == 5),
        "{:?}",
        net.replies
    );
    // Once the subspace region holds it, the read is answered with it, and the region is
    // searched.
    net.in_flight = updates.into_iter().chain(restart_updates).collect();
    net.deliver_all();
    let read = net.replies.iter().find(|(w, _)| *w == 2).map(|(_, r)| r);
    assert!(
        matches!(read, Some(Reply::Found(o)) if o["n"] == Value::Int(5)),
        "{read:?}"
    );
    assert_eq!(held(&net, &config, 1, "a"), vec![(Some(5), vec![]); 2]);
    search_at(&mut net, head, 4, search);
    assert!(
        net.objects.iter().any(|(w, _)| *w == 4),
        "{:?}",
        net.replies
    );
}

/// Key `a` of `config` written once (n = 5, version 1), then a server outside its chain joins
/// the key's region behind the head, holding `stale` for the key from an earlier life, and
/// receives a window from the head that starts after `after` with `entries` and carries the
/// write as held for the subspace. Returns the joiner.
fn join_with_held_window(
    net: &mut Net,
    config: &Config,
    stale: Option<StoredObject>,
    after: Option<Vec<u8>>,
    entries: Vec<(Vec<u8>, crate::protocol::TransferEntry)>,
) -> ServerId {
    put(net, config, 1, "a", 5);
    net.deliver_all();
    let (head, region) = head_of(config, "a");
    let k = key(config, "a");
    let joiner = (1..=3)
        .map(ServerId)
        .find(|s| !config.chain(region).contains(s))
        .expect("a server outside the chain");
    if let Some(stale) = stale {
        let store = &mut net.replicas.get_mut(&joiner).expect("the joiner").1;
        stage(store, region, &k, &stale).unwrap();
        store.sync().expect("sync");
    }
    let mut joined = config.clone();
    joined.version += 1;
    let s = joined.spaces.get_mut("s").expect("space");
    s.chains[region.index as usize] = vec![head, joiner];
    s.joining[region.index as usize] = Some(crate::config::Joiner {
        replaces: None,
        server: joiner,
        since: joined.version,
    });
    net.install(joiner, &joined);
    net.in_flight.clear();
    let held = ChainWrite {
        config_version: joined.version,
        region,
        key: k,
        version: 1,
        object: Some(Object::from([("n".to_string(), Value::Int(5))])),
        dedupe: None,
    };
    let window = crate::protocol::TransferData {
        config_version: joined.version,
        region,
        after,
        entries,
        through: None,
        held: vec![held],
    };
    net.input(
        joiner,
        Input::Chain {
            from: head,
            msg: ChainMessage::TransferData(window),
        },
    );
    joiner
}

#[test]
fn a_joiner_holds_the_writes_its_window_carried_as_held() {
    let (mut net, config) = Net::new(3, SPACE);
    let object = StoredObject {
        version: 1,
        object: Some(Object::from([("n".to_string(), Value::Int(5))])),
        dedupe: Vec::new(),
    };
    let entry = (
        key(&config, "a"),
        crate::protocol::TransferEntry::Object(postcard::to_allocvec(&object).unwrap()),
    );
    let joiner = join_with_held_window(&mut net, &config, None, None, vec![entry]);
    // The window (the region's only one) stored the object: the joiner, the region's new
    // tail, holds the write and tells the subspace's regions about it.
    assert!(
        net.in_flight.iter().any(|(_, _, m)| is_update(m)),
        "{:?}",
        net.in_flight
    );
    assert!(!net.replicas[&joiner].0.pending.is_empty());
}

#[test]
fn a_joiner_holds_no_write_for_a_key_its_refused_window_carried() {
    let (mut net, config) = Net::new(3, SPACE);
    // The joiner's copy from an earlier life has the version the chain gave to the write, and
    // another value; the window starts where the joiner is not (it has taken nothing yet).
    let stale = StoredObject {
        version: 1,
        object: Some(Object::from([("n".to_string(), Value::Int(-9))])),
        dedupe: Vec::new(),
    };
    let joiner = join_with_held_window(
        &mut net,
        &config,
        Some(stale),
        Some(vec![0xff; 8]),
        Vec::new(),
    );
    // The window was refused, so its key is not verified: the joiner's copy is not the
    // write's, and the joiner neither holds the write nor tells the subspace about it.
    assert!(
        !net.in_flight.iter().any(|(_, _, m)| is_update(m)),
        "{:?}",
        net.in_flight
    );
    assert!(net.replicas[&joiner].0.pending.is_empty());
}
