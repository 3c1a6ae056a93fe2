//! The replica's behaviour, step by step, on a hand-wired network (`daemon::testnet`).

use std::collections::BTreeMap;
use std::time::Duration;

use hyperdex_model::{Operation, Reply, ReturnCode};

use super::*;
use crate::config::{key_bytes, RegionId, Timing};
use crate::daemon::record::load;
use crate::daemon::testnet::{head_of, op, Net};
use hyperdex_model::{Func, Funcall, Value};

#[test]
fn a_write_is_answered_only_after_the_tail_stored_it() {
    let (mut net, config) = Net::new(
        3,
        "space s key k attributes int n create 1 partition tolerate 2 failures",
    );
    let (head, region) = head_of(&config, "a");
    net.input(
        head,
        op(
            &config,
            1,
            1,
            Operation::put("s", "a", vec![("n", Value::Int(5))]),
        ),
    );
    assert!(net.replies.is_empty(), "no reply before the ack");
    assert_eq!(net.in_flight.len(), 1);
    // Deliver the write to the middle only: still no reply, nothing stored at the head.
    let (from, to, msg) = net.in_flight.remove(0);
    net.input(to, Input::Chain { from, msg });
    assert!(net.replies.is_empty());
    let kb = key_bytes(&config.space("s").unwrap().schema, &Value::string("a")).unwrap();
    let head_store = &net.replicas[&head].1;
    assert_eq!(load(head_store, region, &kb).unwrap().version, 0);
    net.deliver_all();
    assert_eq!(net.replies, vec![(1, (Reply::Success))]);
    for (_, store) in net.replicas.values() {
        let s = load(store, region, &kb).unwrap();
        assert_eq!(s.version, 1);
        assert_eq!(s.object.unwrap()["n"], Value::Int(5));
    }
}

#[test]
fn retries_are_answered_once() {
    let (mut net, config) = Net::new(2, "space s key k attributes int n create 1 partition");
    let (head, _) = head_of(&config, "a");
    net.input(
        head,
        op(
            &config,
            1,
            1,
            Operation::put("s", "a", vec![("n", Value::Int(1))]),
        ),
    );
    let add = Operation::atomic(
        hyperdex_model::NumOp::Add,
        "s",
        "a",
        vec![("n", Value::Int(10))],
    );
    net.input(head, op(&config, 2, 2, add.clone()));
    // The same request again while it is in flight, and again after it finished.
    net.input(head, op(&config, 3, 2, add.clone()));
    net.deliver_all();
    net.input(head, op(&config, 4, 2, add));
    net.input(head, op(&config, 5, 3, Operation::get("s", "a")));
    let replies: BTreeMap<u32, Reply> = net.replies.drain(..).collect();
    assert_eq!(replies[&2], (Reply::Success));
    assert_eq!(replies[&3], (Reply::Success));
    assert_eq!(replies[&4], (Reply::Success));
    let Reply::Found(o) = &replies[&5] else {
        panic!()
    };
    assert_eq!(o["n"], Value::Int(11), "applied once");
}

#[test]
fn a_failed_write_waits_for_the_writes_it_observed() {
    let (mut net, config) = Net::new(2, "space s key k attributes int n create 1 partition");
    let (head, _) = head_of(&config, "a");
    net.input(
        head,
        op(&config, 1, 1, Operation::put_if_not_exist("s", "a", vec![])),
    );
    net.input(
        head,
        op(&config, 2, 2, Operation::put_if_not_exist("s", "a", vec![])),
    );
    assert!(
        net.replies.is_empty(),
        "the CMPFAIL observed an unacknowledged write"
    );
    net.deliver_all();
    assert_eq!(net.replies.len(), 2);
    assert!(matches!(net.replies[1], (2, Reply::CmpFail(_))));
}

#[test]
fn stale_configurations_are_refused() {
    let (mut net, config) = Net::new(2, "space s key k create 1 partition");
    let (head, _) = head_of(&config, "a");
    let mut input = op(&config, 1, 1, Operation::get("s", "a"));
    if let Input::Op { req, .. } = &mut input {
        req.config_version -= 1;
    }
    net.input(head, input);
    assert!(matches!(
        &net.replies[0].1,
        Reply::Error(ReturnCode::Reconfigure, _)
    ));
}

#[test]
fn when_the_tail_fails_its_predecessor_acknowledges_pending_writes() {
    let (mut net, config) = Net::new(2, "space s key k attributes int n create 1 partition");
    let (head, _) = head_of(&config, "a");
    net.input(
        head,
        op(
            &config,
            1,
            1,
            Operation::put("s", "a", vec![("n", Value::Int(3))]),
        ),
    );
    net.in_flight.clear(); // the write to the tail is lost with it
    let tail = config.chain(RegionId {
        space: config.space("s").unwrap().id,
        index: 0,
    })[1];
    let mut next = config.clone();
    next.version += 1;
    for ch in &mut next.spaces.get_mut("s").unwrap().chains {
        ch.retain(|&m| m != tail);
    }
    net.install(head, &next);
    assert_eq!(net.replies, vec![(1, (Reply::Success))]);
}

#[test]
fn a_joiner_receives_every_object_and_later_writes() {
    let (mut net, config) = Net::new(
        2,
        "space s key k attributes int n create 1 partition tolerate 1 failure",
    );
    let space = config.space("s").unwrap().clone();
    let region = RegionId {
        space: space.id,
        index: 0,
    };
    let chain = config.chain(region).to_vec();
    let (head, other) = (chain[0], chain[1]);
    // Shrink the chain to the head alone, and write 150 objects (three windows of 64).
    let mut solo = config.clone();
    solo.version += 1;
    solo.spaces.get_mut("s").unwrap().chains[0] = vec![head];
    net.install(head, &solo);
    net.install(other, &solo);
    for i in 0..150 {
        let key = format!("k{i}");
        net.input(
            head,
            op(
                &solo,
                i,
                i as u64 + 1,
                Operation::put("s", key.as_str(), vec![("n", Value::Int(i as i64))]),
            ),
        );
    }
    net.input(head, op(&solo, 999, 999, Operation::del("s", "k7")));
    assert_eq!(net.replies.len(), 151);
    // The other server joins; a write arrives while the transfer is under way.
    let mut joined = solo.clone();
    joined.version += 1;
    joined.spaces.get_mut("s").unwrap().chains[0] = vec![head, other];
    joined.spaces.get_mut("s").unwrap().joining[0] = Some(crate::config::Joiner {
        replaces: None,
        server: other,
        since: joined.version,
    });
    net.install(other, &joined);
    net.install(head, &joined);
    net.input(
        head,
        op(
            &joined,
            1000,
            1000,
            Operation::put("s", "late", vec![("n", Value::Int(-1))]),
        ),
    );
    net.deliver_all();
    assert_eq!(net.transfers_done, vec![(other, region)]);
    let (_, head_store) = &net.replicas[&head];
    let (_, joiner_store) = &net.replicas[&other];
    let prefix = space.id.0.to_be_bytes();
    assert_eq!(
        head_store.scan_prefix(Table::Objects, &prefix).unwrap(),
        joiner_store.scan_prefix(Table::Objects, &prefix).unwrap(),
        "the joiner holds exactly what the head holds, tombstones included"
    );
    assert_eq!(
        joiner_store
            .scan_prefix(Table::Objects, &prefix)
            .unwrap()
            .len(),
        151
    );
}

#[test]
fn a_retry_is_recognised_after_many_other_writes_to_the_key() {
    let (mut net, config) = Net::new(2, "space s key k attributes set(int) s create 1 partition");
    let (head, _) = head_of(&config, "a");
    net.input(head, op(&config, 1, 1, Operation::put("s", "a", vec![])));
    let add = Operation::funcs(
        "s",
        "a",
        vec![Funcall::new("s", Func::SetAdd(Value::Int(3)))],
    );
    net.input(head, op(&config, 2, 2, add.clone()));
    net.deliver_all();
    // Other clients write the key many times; then client 7 retries seq 2 and deletes.
    for i in 0..40u64 {
        let mut other = op(&config, 100 + i as u32, i, Operation::put("s", "a", vec![]));
        if let Input::Op { req, .. } = &mut other {
            req.client = 1000 + i;
        }
        net.input(head, other);
    }
    net.deliver_all();
    net.input(head, op(&config, 3, 3, Operation::del("s", "a")));
    net.deliver_all();
    net.input(head, op(&config, 4, 2, add));
    net.deliver_all();
    let replies: BTreeMap<u32, Reply> = net.replies.drain(..).collect();
    assert_eq!(
        replies[&4],
        (Reply::Success),
        "answered from the record, not applied again"
    );
}

fn offline(r: &Reply) -> bool {
    matches!(r, Reply::Error(ReturnCode::Offline, _))
}

#[test]
fn a_server_without_a_lease_answers_no_client() {
    let (mut net, config) = Net::new(1, "space s key k create 1 partition");
    let (head, _) = head_of(&config, "a");
    let fresh = Replica::new(head, config.clone());
    net.replicas.get_mut(&head).unwrap().0 = fresh;
    net.input(head, op(&config, 1, 1, Operation::get("s", "a")));
    assert!(offline(&net.replies[0].1), "{:?}", net.replies);
    net.grant(head, config.version);
    net.input(head, op(&config, 2, 2, Operation::get("s", "a")));
    assert_eq!(net.replies[1], (2, Reply::NotFound));
}

#[test]
fn a_lease_runs_out_after_its_length_from_when_the_heartbeat_was_sent() {
    let (mut net, config) = Net::new(1, "space s key k create 1 partition");
    let (head, _) = head_of(&config, "a");
    let length = Timing::default().lease;
    net.advance(length - Duration::from_millis(1));
    net.input(head, op(&config, 1, 1, Operation::get("s", "a")));
    assert_eq!(net.replies[0], (1, Reply::NotFound), "still leased");
    net.advance(Duration::from_millis(1));
    net.input(head, op(&config, 2, 2, Operation::put("s", "a", vec![])));
    assert!(
        offline(&net.replies[1].1),
        "neither reads nor writes once it ran out"
    );
    // A heartbeat sent now and answered renews it.
    net.grant(head, config.version);
    net.input(head, op(&config, 3, 3, Operation::get("s", "a")));
    assert_eq!(net.replies[2], (3, Reply::NotFound));
}

#[test]
fn a_lease_covers_only_the_configuration_the_coordinator_had() {
    let (mut net, config) = Net::new(2, "space s key k create 1 partition");
    let (head, _) = head_of(&config, "a");
    // The coordinator moved on (the answer to a heartbeat says so) before this server
    // installed the new configuration: it stops answering at once.
    net.grant(head, config.version + 1);
    net.input(head, op(&config, 1, 1, Operation::get("s", "a")));
    assert!(offline(&net.replies[0].1), "{:?}", net.replies);
    let mut next = config.clone();
    next.version += 1;
    net.input(head, Input::Config(next.clone()));
    net.input(head, op(&next, 2, 2, Operation::get("s", "a")));
    assert_eq!(
        net.replies[1],
        (2, Reply::NotFound),
        "leased on the new one"
    );
}

#[test]
fn a_late_answer_to_an_older_heartbeat_does_not_shorten_the_lease() {
    let (mut net, config) = Net::new(1, "space s key k create 1 partition");
    let (head, _) = head_of(&config, "a");
    let older = Lease {
        sent: net.now,
        config_version: config.version,
    };
    net.advance(Timing::default().lease / 2);
    net.grant(head, config.version);
    net.input(head, Input::Lease(older));
    net.advance(Timing::default().lease / 2 + Duration::from_millis(1));
    net.input(head, op(&config, 1, 1, Operation::get("s", "a")));
    assert_eq!(net.replies[0], (1, Reply::NotFound));
}

#[test]
fn a_write_that_skips_a_lost_one_waits_for_it_so_every_retry_record_is_kept() {
    let (mut net, config) = Net::new(
        2,
        "space s key k attributes int n create 1 partition tolerate 1 failure",
    );
    let (head, region) = head_of(&config, "a");
    let tail = config.chain(region)[1];
    let add = |n| {
        Operation::atomic(
            hyperdex_model::NumOp::Add,
            "s",
            "a",
            vec![("n", Value::Int(n))],
        )
    };
    net.input(head, op(&config, 1, 1, Operation::put("s", "a", vec![])));
    net.deliver_all();
    // Two increments in flight; the first is lost on the way to the tail.
    net.input(head, op(&config, 2, 2, add(1)));
    net.input(head, op(&config, 3, 3, add(10)));
    assert_eq!(net.in_flight.len(), 2);
    net.in_flight.remove(0);
    net.deliver_all();
    assert!(
        net.replies.len() == 1,
        "nothing more is acknowledged: {:?}",
        net.replies
    );
    let kb = key_bytes(&config.space("s").unwrap().schema, &Value::string("a")).unwrap();
    assert_eq!(
        load(&net.replicas[&tail].1, region, &kb).unwrap().version,
        1
    );
    // The head resends what is pending, a tick after the next (a tick's backoff); now both
    // are stored, in order, with their records.
    net.input(head, Input::Tick);
    assert!(net.in_flight.is_empty(), "{:?}", net.in_flight);
    net.input(head, Input::Tick);
    net.deliver_all();
    assert_eq!(net.replies.len(), 3);
    let stored = load(&net.replicas[&tail].1, region, &kb).unwrap();
    assert_eq!(stored.version, 3);
    let seqs: Vec<u64> = stored.dedupe.iter().map(|d| d.seq).collect();
    assert!(seqs.contains(&2) && seqs.contains(&3), "{seqs:?}");
    // The head fails; a retry of the first increment at the tail is answered, not applied.
    let mut next = config.clone();
    next.version += 1;
    next.spaces.get_mut("s").unwrap().chains[0] = vec![tail];
    net.install(tail, &next);
    net.input(tail, op(&next, 4, 2, add(1)));
    net.input(tail, op(&next, 5, 5, Operation::get("s", "a")));
    assert_eq!(net.replies[3], (4, Reply::Success));
    let Reply::Found(o) = &net.replies[4].1 else {
        panic!("{:?}", net.replies)
    };
    assert_eq!(o["n"], Value::Int(11), "each increment applied once");
}

#[test]
fn a_chain_write_from_a_server_that_is_not_the_predecessor_is_dropped() {
    let (mut net, config) = Net::new(
        3,
        "space s key k attributes int n create 1 partition tolerate 2 failures",
    );
    let (head, region) = head_of(&config, "a");
    net.input(
        head,
        op(
            &config,
            1,
            1,
            Operation::put("s", "a", vec![("n", Value::Int(5))]),
        ),
    );
    // The write to the middle member arrives claiming to come from the tail instead.
    let (_, to, msg) = net.in_flight.remove(0);
    let chain = config.chain(region).to_vec();
    let tail = *chain.last().expect("a chain");
    net.input(to, Input::Chain { from: tail, msg });
    assert!(
        net.in_flight.is_empty(),
        "the member did not act on it: {:?}",
        net.in_flight
    );
    let kb = key_bytes(&config.space("s").unwrap().schema, &Value::string("a")).unwrap();
    for m in &chain[1..] {
        assert_eq!(load(&net.replicas[m].1, region, &kb).unwrap().version, 0);
    }
}

#[test]
fn in_read_only_mode_writes_are_refused_and_reads_and_retries_answered() {
    let (mut net, config) = Net::new(2, "space s key k attributes int n create 1 partition");
    let (head, _) = head_of(&config, "a");
    let put = |n| Operation::put("s", "a", vec![("n", Value::Int(n))]);
    net.input(head, op(&config, 1, 1, put(1)));
    net.deliver_all();
    let mut ro = config.clone();
    ro.version += 1;
    ro.read_only = true;
    for s in net.replicas.keys().copied().collect::<Vec<_>>() {
        net.install(s, &ro);
    }
    net.input(head, op(&ro, 2, 2, put(2)));
    // A retry of the write made before the mode was switched on is answered as it was.
    net.input(head, op(&ro, 3, 1, put(1)));
    net.input(head, op(&ro, 4, 3, Operation::get("s", "a")));
    net.deliver_all();
    let replies: BTreeMap<u32, Reply> = net.replies.drain(..).collect();
    assert!(
        matches!(&replies[&2], Reply::Error(ReturnCode::ReadOnly, _)),
        "{:?}",
        replies[&2]
    );
    assert_eq!(replies[&3], Reply::Success);
    let Reply::Found(o) = &replies[&4] else {
        panic!("{:?}", replies[&4])
    };
    assert_eq!(o["n"], Value::Int(1), "the refused write changed nothing");
}

/// A write first sent longer ago than a write may be retried is refused (TIMEOUT) unless the
/// head has its record, which answers it as before.
#[test]
fn an_expired_retry_is_answered_from_its_record_or_refused() {
    let (mut net, config) = Net::new(2, "space s key k attributes int n create 1 partition");
    let (head, _) = head_of(&config, "a");
    let at = |mut input: Input<u32>, first: u64, now: u64| {
        if let Input::Op { req, unix, .. } = &mut input {
            req.first_unix = first;
            *unix = now;
        }
        input
    };
    let t = 1_800_000_000;
    let put = Operation::put("s", "a", vec![("n", Value::Int(1))]);
    net.input(head, at(op(&config, 1, 1, put.clone()), t, t));
    net.deliver_all();
    let late = t + crate::limits::RETRY_WINDOW_SECS + crate::limits::CLOCK_SKEW_SECS + 1;
    // The same request, long after: its record answers it.
    net.input(head, at(op(&config, 2, 1, put.clone()), t, late));
    // Another request as old, never applied: refused, not applied.
    let add = Operation::atomic(
        hyperdex_model::NumOp::Add,
        "s",
        "a",
        vec![("n", Value::Int(5))],
    );
    net.input(head, at(op(&config, 3, 2, add.clone()), t, late));
    // The same, within the window: applied.
    net.input(head, at(op(&config, 4, 3, add), late - 5, late));
    net.deliver_all();
    net.input(
        head,
        at(op(&config, 5, 4, Operation::get("s", "a")), late, late),
    );
    let replies: BTreeMap<u32, Reply> = net.replies.drain(..).collect();
    assert_eq!(replies[&2], Reply::Success);
    assert!(
        matches!(&replies[&3], Reply::Error(ReturnCode::Timeout, why) if why.contains("first sent")),
        "{:?}",
        replies[&3]
    );
    assert_eq!(replies[&4], Reply::Success);
    let Reply::Found(o) = &replies[&5] else {
        panic!("{:?}", replies[&5])
    };
    assert_eq!(o["n"], Value::Int(6), "the expired request was not applied");
}

/// A head whose clock is behind stamps its records no earlier than the object's newest, so a
/// retry record never looks expired the moment it is written; a request first sent in the
/// future (a client clock far ahead) is refused.
#[test]
fn record_times_never_go_backwards_and_future_requests_are_refused() {
    let (mut net, config) = Net::new(2, "space s key k attributes int n create 1 partition");
    let (head, region) = head_of(&config, "a");
    let at = |mut input: Input<u32>, t: u64| {
        if let Input::Op { req, unix, .. } = &mut input {
            req.first_unix = t;
            *unix = t;
        }
        input
    };
    let t = 1_800_000_000;
    let add = |v| {
        Operation::atomic(
            hyperdex_model::NumOp::Add,
            "s",
            "a",
            vec![("n", Value::Int(v))],
        )
    };
    net.input(
        head,
        at(
            op(
                &config,
                1,
                1,
                Operation::put("s", "a", vec![("n", Value::Int(1))]),
            ),
            t,
        ),
    );
    net.deliver_all();
    // The same head, its clock now an hour behind.
    net.input(head, at(op(&config, 2, 2, add(1)), t - 3600));
    net.deliver_all();
    let kb = key_bytes(&config.space("s").unwrap().schema, &Value::string("a")).unwrap();
    let stored = load(&net.replicas[&head].1, region, &kb).unwrap();
    let seqs: Vec<u64> = stored.dedupe.iter().map(|d| d.seq).collect();
    assert_eq!(seqs, vec![1, 2], "both records kept");
    assert!(stored.dedupe.iter().all(|d| d.unix >= t));
    // A client whose clock is far ahead.
    let mut ahead = op(&config, 3, 3, add(1));
    if let Input::Op { req, unix, .. } = &mut ahead {
        req.first_unix = t + 10 * crate::limits::CLOCK_SKEW_SECS;
        *unix = t;
    }
    net.input(head, ahead);
    assert!(
        matches!(net.replies.last(), Some((3, Reply::Error(ReturnCode::ServerError, why))) if why.contains("clock")),
        "{:?}",
        net.replies.last()
    );
}

#[test]
fn a_pending_write_is_resent_ever_less_often_up_to_a_bound() {
    let mut b = super::Backoff::default();
    let resent: Vec<usize> = (1..=20).filter(|_| b.due()).collect();
    // One tick waited after the first send, then 2, then 4, and 4 from then on.
    assert_eq!(resent, vec![2, 5, 10, 15, 20]);
    assert_eq!(super::RESEND_QUIET_MAX, 4);
}
