//! A routine restart with data (real processes): 200,000 objects on three daemons
//! (tolerate 1), one daemon SIGKILLed and restarted on its data directory while a client
//! writes. The cluster must be stable again within a minute, no daemon's memory may grow
//! by more than a fixed bound during the rejoin (the bound does not depend on the data), no
//! server other than the killed one may be declared failed, and no acknowledged write may
//! be lost.
//!
//! `HYPERDEX_RESTART_TEST_OBJECTS=1000000 cargo test --release --test restart_at_scale`
//! runs it larger; `scripts/restart-at-scale.sh` is the full benchmark.
#![cfg(not(madsim))]
#![allow(clippy::disallowed_methods)] // wall-clock pacing and /proc of a real-process test

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyperdex::admin::Admin;
use hyperdex::client::{Client, ClientOptions};
use hyperdex_model::Value;
use support::ProcCluster;

/// How much a daemon's resident memory may grow during the rejoin, whatever the data size:
/// redb's page cache (64 MiB), a few transfer windows (1 MiB each) and queues.
const GROWTH_BOUND_MB: u64 = 160;

/// Resident memory of process `pid` in MiB (0 if it is gone).
fn rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

fn pids(c: &ProcCluster) -> Vec<u32> {
    c.daemons
        .iter()
        .map(|d| d.child.as_ref().map_or(0, |c| c.id()))
        .collect()
}

/// Loads `objects` objects of 100 bytes into the space `bench` through `hyperdex bench`.
fn load(port: &str, objects: u64) {
    let load = std::process::Command::new(support::BIN)
        .args(["bench", "--port", port, "--workload", "put", "--records"])
        .arg(objects.to_string())
        .args(["--ops", "1", "--fields", "1", "--value-size", "100"])
        .args(["--clients", "8", "--window", "32", "--quiet"])
        .output()
        .expect("run hyperdex bench");
    assert!(
        load.status.success(),
        "loading failed: {}",
        String::from_utf8_lossy(&load.stderr)
    );
}

#[test]
fn a_restart_with_data_rejoins_in_bounded_memory_without_false_failures() {
    let objects: u64 = std::env::var("HYPERDEX_RESTART_TEST_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    // Transfers at 1 MB/s in windows of 200 objects: the rejoin takes long enough for its
    // progress to be reported, and the rate limit is exercised.
    let mut c = ProcCluster::start_with_daemon_args(
        "restart-at-scale",
        3,
        &["--transfer-rate=1", "--transfer-window=200"],
    );
    let port = c.coord_port.to_string();
    load(&port, objects);
    let before: Vec<u64> = pids(&c).into_iter().map(rss_mb).collect();
    eprintln!("{objects} objects loaded; RSS before the restart: {before:?} MiB");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let addr = c.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let writer = {
        let (stop, acked, addr) = (stop.clone(), acked.clone(), addr.clone());
        rt.spawn(async move {
            let client = Client::connect_with(&addr, ClientOptions::default())
                .await
                .expect("client");
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let key = format!("w{i}");
                let put = client.put("bench", key.as_str(), vec![("n", Value::Int(i))]);
                if put.await.is_ok() {
                    acked.lock().expect("acked").push(key);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    c.kill_daemon(1);
    std::thread::sleep(Duration::from_secs(1));
    c.start_daemon(1);
    let restarted = Instant::now();
    let mut peak = before.clone();
    let mut reported = 0u64;
    let stable = rt.block_on(async {
        let admin = Admin::connect_addr(&addr, Default::default())
            .await
            .expect("admin");
        // Sample memory and the transfers' progress from the restart on; wait for stability
        // once the restarted daemon can have been seen back (a rejoin can take well under a
        // second of the wait, so sampling does not wait for it).
        let wait = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            admin.wait_until_stable(Duration::from_secs(60)).await
        };
        tokio::pin!(wait);
        loop {
            tokio::select! {
                r = &mut wait => return r,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    for (p, pid) in peak.iter_mut().zip(pids(&c)) {
                        *p = (*p).max(rss_mb(pid));
                    }
                    // What show-config prints: the joiner's progress, through the heartbeats.
                    let t = admin.transfers().await.unwrap_or_default();
                    reported = reported.max(t.iter().map(|r| r.objects).sum());
                }
            }
        }
    });
    let took = restarted.elapsed();
    stop.store(true, Ordering::SeqCst);
    rt.block_on(writer).expect("writer");
    eprintln!("stable after {took:?}; peak RSS {peak:?} MiB");
    stable.expect("the cluster is stable again within a minute of the restart");
    assert!(
        reported > 0,
        "the coordinator reported the transfers' progress while they ran"
    );
    for (i, (b, p)) in before.iter().zip(&peak).enumerate() {
        // The restarted daemon starts from nothing: its bound is from zero.
        let base = if i == 1 { 0 } else { *b };
        assert!(
            *p <= base + GROWTH_BOUND_MB,
            "daemon{} grew from {b} MiB to {p} MiB during the rejoin",
            i + 1
        );
    }
    assert_rejoined_incrementally(&c, objects);
    let log = std::fs::read_to_string(c.dir.join("coordinator.log")).unwrap_or_default();
    let failed = log.matches("declaring the server failed").count();
    assert_eq!(
        failed, 1,
        "only the killed daemon is declared failed:\n{log}"
    );

    let acked = acked.lock().expect("acked").clone();
    assert_nothing_lost(&rt, &c, &acked, objects);
}

/// The restarted daemon (daemon2) kept its data: its transfers compared its objects and
/// received only what changed whole (its share sent whole is about 9 MB).
fn assert_rejoined_incrementally(c: &ProcCluster, objects: u64) {
    let log = std::fs::read_to_string(c.dir.join("daemon2.log")).unwrap_or_default();
    let field = |line: &str, name: &str| -> u64 {
        // Without the colour codes (each ESC [ ... m).
        let plain: String = line
            .split('\x1b')
            .enumerate()
            .map(|(i, p)| match p.split_once('m') {
                Some((_, rest)) if i > 0 => rest,
                _ => p,
            })
            .collect();
        plain
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .unwrap_or(0)
    };
    let done: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("state transfer complete"))
        .collect();
    let compared: u64 = done.iter().map(|l| field(l, "objects")).sum();
    let whole: u64 = done.iter().map(|l| field(l, "whole_bytes")).sum();
    eprintln!(
        "rejoin: {} regions, {compared} objects compared, {whole} bytes sent whole",
        done.len()
    );
    assert!(
        compared > objects / 2,
        "the restarted daemon compared its share: {compared}"
    );
    assert!(
        whole < 5_000_000,
        "the restarted daemon received {whole} bytes whole"
    );
}

/// Every write acknowledged during the restart is there, and so is every loaded object.
fn assert_nothing_lost(
    rt: &tokio::runtime::Runtime,
    c: &ProcCluster,
    acked: &[String],
    objects: u64,
) {
    let addr = c.addr();
    assert!(!acked.is_empty(), "the writer wrote during the restart");
    rt.block_on(async {
        let client = Client::connect_with(&addr, ClientOptions::default())
            .await
            .expect("client");
        for key in acked {
            let got = client.get("bench", key.as_str()).await;
            assert!(
                matches!(got, Ok(Some(_))),
                "acknowledged write {key} lost: {got:?}"
            );
        }
    });
    let count = c.hyperdex(&["count", "bench"], None);
    let n: u64 = String::from_utf8_lossy(&count.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        n >= objects + acked.len() as u64,
        "count {n} after the restart"
    );
}
