//! Three coordinators and three daemons as real processes, under write load:
//!
//! 1. SIGKILL the leading coordinator: writes go on (the longest time without an acknowledged
//!    write is printed and bounded), nothing acknowledged is lost;
//! 2. restart it: it rejoins from its disk and catches up (shown by making it necessary: a
//!    second coordinator is killed and configuration changes still commit);
//! 3. SIGKILL a daemon while that coordinator is down: its chains are repaired.
#![cfg(not(madsim))]
#![allow(clippy::disallowed_methods)] // wall-clock pacing of a real-process test

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyperdex::admin::Admin;
use hyperdex::client::{Client, ClientOptions};
use hyperdex::config::Config;
use hyperdex_model::Value;
use support::replicated::{leader, Procs};

/// The longest writes may stop while a leader is replaced, on a loaded 2-core machine (the
/// figure printed is the one that matters; see docs/benchmarks.md).
const MAX_PAUSE: Duration = Duration::from_secs(4);

async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the configuration satisfies `cond`.
async fn until_config(what: &str, addrs: &str, cond: impl Fn(&Config) -> bool) {
    until(what, Duration::from_secs(20), || async {
        hyperdex::client::fetch_config(addrs, &ClientOptions::default())
            .await
            .is_ok_and(|c| cond(&c))
    })
    .await;
}

#[derive(Default)]
struct Tally {
    acked: BTreeMap<String, i64>,
    /// When each acknowledged write was acknowledged.
    times: Vec<Instant>,
}

async fn writer(id: u64, addrs: String, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    let client = Client::connect_with(&addrs, ClientOptions::default())
        .await
        .expect("client");
    let mut i = 0i64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let key = format!("w{id}-{i}");
        if client
            .put("kv", key.as_str(), vec![("n", Value::Int(i))])
            .await
            .is_ok()
        {
            let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
            t.acked.insert(key, i);
            t.times.push(Instant::now());
        }
    }
}

/// The longest time between two acknowledged writes after `from`.
fn longest_pause(times: &[Instant], from: Instant) -> Duration {
    let mut sorted: Vec<Instant> = times.iter().copied().filter(|t| *t >= from).collect();
    sorted.sort();
    std::iter::once(from)
        .chain(sorted.iter().copied())
        .zip(sorted.iter().copied())
        .map(|(a, b)| b.duration_since(a))
        .max()
        .unwrap_or_default()
}

/// Starts the coordinators (the second and third joining through the first), then the
/// daemons, and adds the space the writers use.
async fn start(procs: &mut Procs) -> Admin {
    procs.start_coordinator(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    procs.start_coordinator(1);
    procs.start_coordinator(2);
    let addrs = procs.coordinators();
    until_config("three coordinators in the log", &addrs, |c| {
        c.coordinators.len() == 3
    })
    .await;
    for i in 0..3 {
        procs.start_daemon(i);
    }
    until_config("three daemons", &addrs, |c| c.servers.len() == 3).await;
    let admin = Admin::connect_addr(&addrs, ClientOptions::default())
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

    admin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cluster_survives_its_leading_coordinator() {
    let mut procs = Procs::new("failover", 3, 3);
    let admin = start(&mut procs).await;
    let addrs = procs.coordinators();
    let opts = ClientOptions::default();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let writers: Vec<_> = (0..4)
        .map(|id| tokio::spawn(writer(id, addrs.clone(), stop.clone(), tally.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1. The leader dies.
    let first = leader(&procs).await.expect("a leader");
    let killed_at = Instant::now();
    Procs::kill(&mut procs.coords[first].1);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pause = {
        let t = tally.lock().unwrap_or_else(|e| e.into_inner());
        longest_pause(&t.times, killed_at)
    };
    println!("leader killed: the longest time without an acknowledged write was {pause:?}");
    assert!(pause < MAX_PAUSE, "writes stopped for {pause:?}");
    assert!(leader(&procs).await.is_some(), "no new leader");

    // 2. It comes back and catches up: with another coordinator down, it is needed for every
    // change, and changes still commit.
    procs.start_coordinator(first);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = (first + 1) % 3;
    Procs::kill(&mut procs.coords[second].1);
    admin
        .add_space("space other key k attributes v")
        .await
        .expect("a change commits with the restarted coordinator's vote");

    // 3. A daemon dies while a coordinator is down: its chains are repaired.
    Procs::kill(&mut procs.daemons[2].1);
    let victim = format!("127.0.0.1:{}", procs.daemons[2].0);
    until_config("the dead daemon out of every chain", &addrs, |c| {
        c.servers
            .values()
            .find(|s| s.addr == victim)
            .is_some_and(|dead| {
                c.spaces
                    .values()
                    .all(|s| s.chains.iter().all(|ch| !ch.contains(&dead.id)))
            })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }

    // Nothing acknowledged was lost.
    let t = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));
    let client = Client::connect_with(&addrs, opts).await.expect("client");
    for (key, n) in &t.acked {
        let o = client
            .get("kv", key.as_str())
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("acknowledged put of {key} lost"));
        assert_eq!(o["n"], Value::Int(*n), "{key}");
    }
    println!("{} writes acknowledged, none lost", t.acked.len());
    assert!(t.acked.len() > 100, "the workload made progress");
}
