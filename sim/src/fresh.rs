//! Clients that write once: one key of `wide` written by a fresh client after another.
//!
//! The workload's clients are few, so each key holds the retry records of a handful of
//! clients, far below the count limit ([`DEDUPE_RECORDS`], 64 in the simulation). Before the
//! workload and the faults start, [`prefill`] has [`PREFILL`] fresh clients, one after
//! another, write [`KEY`] once each (a put of a number never written before) and go; then
//! [`run`] keeps [`AT_ONCE`] fresh clients going: each connects, writes the key once, reads it
//! back and is dropped, and another takes its place a moment later, for as long as any
//! workload writer runs. Every fresh client leaves a record no later request of its client
//! will clear, so the key stays at the limit, and every few writes under faults compact its
//! records by their number: the oldest go. A retry applied again
//! after its record went puts back an older number, which a later read shows (the checker
//! reports it); members that cut different records hold different ones (the audit reports
//! it); a key that holds more than the limit and its slack fails the audit's count.
//!
//! The design accepts one loss: a key written by more than the limit's clients while one of
//! them may still retry can drop that client's record. The workload stays within it, so that
//! any double apply the checker finds is a bug: the prefill's clients are done before the
//! next starts, and no fault is running; later the fresh clients write at most once per
//! [`PAUSE`] each, and none starts while another's call has lasted [`HOLD`], so that fewer
//! than the limit's count of records can sort after one whose client still retries (records
//! are ordered by whole seconds of their heads' clocks, which may be a second apart: writes
//! up to two seconds before it count too; checked below, at compile time). A call that lasts
//! gives up after the workload's timeout, as the workload's do (so few outcomes are unknown:
//! each one multiplies the orders the checker may have to try).
//!
//! The fresh clients retry an attempt after [`ATTEMPT`], much sooner than the workload's, so
//! that a slow reply makes a retry, often while the write is the newest one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyperdex::client::{Client, ClientOptions};
use hyperdex::daemon::record::DEDUPE_RECORDS;
use hyperdex::rt;
use hyperdex_model::{Operation, Value};
use madsim::rand::{thread_rng, Rng};

use crate::ops::WIDE_NAME;
use crate::workload::Recorder;

/// The key every fresh client writes, in `wide` (no workload operation touches it).
pub const KEY: &str = "r0";

/// The history's client number of the `i`th fresh client is `FIRST + i`.
pub const FIRST: u64 = 100_000;

/// How many fresh clients write at once.
pub const AT_ONCE: usize = 2;

/// How long a fresh client waits for an attempt's reply before retrying it.
pub const ATTEMPT: Duration = Duration::from_millis(40);

/// How long another fresh client's call may last before no new one starts.
pub const HOLD: Duration = Duration::from_secs(1);

/// How long a fresh client's successor waits before it connects, at least.
pub const PAUSE: Duration = Duration::from_millis(150);

// Fewer than the limit's count of writes can sort after one whose client still retries:
// those begun up to two seconds before it, and those begun before it lasted `HOLD`.
const _: () = assert!(
    (AT_ONCE as u128) * ((HOLD.as_millis() + 2000) / PAUSE.as_millis() + 1)
        < DEDUPE_RECORDS as u128
);

/// How many fresh clients write [`KEY`] before the workload starts: the key is then at the
/// limit, a few more records from compacting.
pub const PREFILL: u64 = DEDUPE_RECORDS as u64 + 4;

/// The read of [`KEY`] (also part of the liveness check's final reads).
pub fn read() -> Operation {
    Operation::get(WIDE_NAME, Value::string(KEY))
}

/// Has [`PREFILL`] fresh clients write [`KEY`] one after another (before any fault).
pub async fn prefill(opts: ClientOptions, rec: Recorder, coordinator: String) {
    let mut i = 0;
    while i < PREFILL {
        let Ok(client) = Client::connect_with(&coordinator, opts.clone()).await else {
            rt::sleep(Duration::from_millis(100)).await;
            continue;
        };
        rec.call(&client, FIRST + i, put(i)).await;
        i += 1;
    }
}

/// Runs [`AT_ONCE`] fresh clients at a time, each followed by another after a pause, for as
/// long as any workload writer runs.
pub async fn run(base: ClientOptions, rec: Recorder, coordinator: String) {
    let opts = ClientOptions {
        attempt_timeout: ATTEMPT,
        ..base
    };
    let shared = Shared {
        next: Arc::new(AtomicU64::new(PREFILL)),
        calls: Arc::default(),
    };
    let tasks: Vec<_> = (0..AT_ONCE)
        .map(|task| {
            rt::spawn(one_after_another(
                task,
                opts.clone(),
                rec.clone(),
                coordinator.clone(),
                shared.clone(),
            ))
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// The `i`th fresh client's write.
fn put(i: u64) -> Operation {
    Operation::put(
        WIDE_NAME,
        Value::string(KEY),
        vec![("n", Value::Int(i as i64))],
    )
}

/// What the fresh clients' tasks share: the next client's number, and when each task's
/// call in progress began.
#[derive(Clone)]
struct Shared {
    next: Arc<AtomicU64>,
    calls: Arc<Mutex<[Option<rt::Instant>; AT_ONCE]>>,
}

impl Shared {
    fn calls(&self) -> std::sync::MutexGuard<'_, [Option<rt::Instant>; AT_ONCE]> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether another task's call has lasted [`HOLD`].
    fn held(&self) -> bool {
        let now = rt::now();
        self.calls()
            .iter()
            .flatten()
            .any(|&began| now.duration_since(began) >= HOLD)
    }
}

async fn one_after_another(
    task: usize,
    opts: ClientOptions,
    rec: Recorder,
    coordinator: String,
    shared: Shared,
) {
    while rec.writers_running() {
        let pause = PAUSE.as_millis() as u64;
        rt::sleep(Duration::from_millis(
            thread_rng().gen_range(pause..pause * 4 / 3),
        ))
        .await;
        if shared.held() {
            continue;
        }
        shared.calls()[task] = Some(rt::now());
        if let Ok(client) = Client::connect_with(&coordinator, opts.clone()).await {
            let i = shared.next.fetch_add(1, Ordering::Relaxed);
            for op in [put(i), read()] {
                rec.call(&client, FIRST + i, op).await;
            }
        }
        shared.calls()[task] = None;
    }
}
