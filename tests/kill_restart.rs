//! Real processes under SIGKILL: a coordinator and three daemons (tolerate 1), eight client
//! tasks writing, while a loop kills a random daemon, waits, and restarts it. At the end
//! every acknowledged write is present and every counter holds its acknowledged increments.
//!
//! It runs for 30 seconds in `make test`; `HYPERDEX_KILL_TEST_SECS=300 cargo test --test
//! kill_restart -- --nocapture` runs it for five minutes.
#![cfg(not(madsim))]
#![allow(clippy::disallowed_methods)] // wall-clock pacing of a real-process test

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyperdex::admin::Admin;
use hyperdex::client::{Client, ClientOptions};
use hyperdex_model::{Check, NumOp, Operation, Predicate, Reply, Value};
use support::ProcCluster;

#[derive(Default)]
struct Tally {
    /// key → value of every acknowledged put.
    puts: BTreeMap<String, i64>,
    /// counter → (acknowledged increments, increments with unknown outcome).
    counters: BTreeMap<String, (i64, i64)>,
    /// client → last value its acknowledged cond_put chain wrote.
    chains: BTreeMap<u64, i64>,
    /// The longest a single write took (covers failover).
    slowest: Duration,
    acked: u64,
    unknown: u64,
}

async fn client_task(id: u64, addr: String, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    let client = Client::connect_with(&addr, ClientOptions::default())
        .await
        .expect("client");
    let chain_key = format!("chain{id}");
    client
        .put("kv", chain_key.as_str(), vec![("n", Value::Int(0))])
        .await
        .expect("chain start");
    let mut chain_value = 0;
    let mut i = 0i64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let key = format!("c{id}-{i}");
        let counter = format!("counter{}", i % 5);
        let ops = [
            (
                0,
                Operation::put("kv", key.as_str(), vec![("n", Value::Int(i))]),
            ),
            (
                1,
                Operation::atomic(
                    NumOp::Add,
                    "kv",
                    counter.as_str(),
                    vec![("n", Value::Int(1))],
                ),
            ),
            (
                2,
                Operation::cond_put(
                    "kv",
                    chain_key.as_str(),
                    vec![Check::new("n", Predicate::Equals(Value::Int(chain_value)))],
                    vec![("n", Value::Int(chain_value + 1))],
                ),
            ),
        ];
        let mut catch_up = false;
        for (kind, op) in ops {
            let started = Instant::now();
            let reply = client.call(op).await;
            let took = started.elapsed();
            let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
            t.slowest = t.slowest.max(took);
            match (kind, reply) {
                (0, Reply::Success) => {
                    t.puts.insert(key.clone(), i);
                    t.acked += 1;
                }
                (1, Reply::Success) => {
                    t.counters.entry(counter.clone()).or_default().0 += 1;
                    t.acked += 1;
                }
                (1, Reply::Error(..)) => {
                    t.counters.entry(counter.clone()).or_default().1 += 1;
                    t.unknown += 1;
                }
                (2, Reply::Success) => {
                    chain_value += 1;
                    t.chains.insert(id, chain_value);
                    t.acked += 1;
                }
                // An earlier cond_put whose outcome was unknown did take effect: catch up below.
                (2, Reply::CmpFail(_)) => catch_up = true,
                (_, Reply::Error(..)) => t.unknown += 1,
                (_, other) => panic!("client {id}: unexpected {other:?}"),
            }
        }
        if catch_up {
            if let Ok(Some(o)) = client.get("kv", chain_key.as_str()).await {
                if let Value::Int(n) = o["n"] {
                    chain_value = n;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_repeated_sigkills() {
    let secs: u64 = std::env::var("HYPERDEX_KILL_TEST_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut cluster = ProcCluster::start("kill", 3);
    let admin = Admin::connect_addr(&cluster.addr(), ClientOptions::default())
        .await
        .expect("admin");
    admin
        .add_space("space kv key k attributes int n create 8 partitions tolerate 1 failure")
        .await
        .expect("add space");
    admin
        .wait_until_stable(Duration::from_secs(30))
        .await
        .expect("stable");
    let setup = Client::connect_with(&cluster.addr(), ClientOptions::default())
        .await
        .expect("client");
    for c in 0..5 {
        setup
            .put(
                "kv",
                format!("counter{c}").as_str(),
                vec![("n", Value::Int(0))],
            )
            .await
            .expect("counter");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let tasks: Vec<_> = (0..8)
        .map(|id| tokio::spawn(client_task(id, cluster.addr(), stop.clone(), tally.clone())))
        .collect();

    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut kills = 0;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let victim = (seed % 3) as usize;
        cluster.kill_daemon(victim);
        kills += 1;
        tokio::time::sleep(Duration::from_millis(500 + seed % 1500)).await;
        cluster.start_daemon(victim);
        // The next kill waits until the restarted daemon has rejoined every chain.
        admin
            .wait_until_stable(Duration::from_secs(60))
            .await
            .expect("the cluster recovers");
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("client task");
    }

    let client = Client::connect_with(&cluster.addr(), ClientOptions::default())
        .await
        .expect("client");
    let t = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));
    for (key, n) in &t.puts {
        let o = client
            .get("kv", key.as_str())
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("acknowledged put of {key} lost"));
        assert_eq!(o["n"], Value::Int(*n), "{key}");
    }
    for (counter, (acked, unknown)) in &t.counters {
        let o = client
            .get("kv", counter.as_str())
            .await
            .expect("get")
            .expect("counter exists");
        let Value::Int(n) = o["n"] else {
            panic!("counter is an int")
        };
        assert!(
            *acked <= n && n <= acked + unknown,
            "{counter}: {n} not in [{acked}, {}]",
            acked + unknown
        );
    }
    for (id, last) in &t.chains {
        let o = client
            .get("kv", format!("chain{id}").as_str())
            .await
            .expect("get")
            .expect("chain");
        let Value::Int(n) = o["n"] else {
            panic!("an int")
        };
        assert!(n >= *last, "chain{id}: {n} < acknowledged {last}");
    }
    println!(
        "{kills} SIGKILLs in {secs} s: {} writes acknowledged, {} with unknown outcome, slowest write {:?}",
        t.acked, t.unknown, t.slowest
    );
    assert!(t.acked > 100, "the workload made progress");
}
