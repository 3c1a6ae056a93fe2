//! Clients that write once: one key of `wide` written by a fresh client after another.
//!
//! The workload's clients are few, so each key holds the retry records of a handful of
//! clients, far below the count limit (`DEDUPE_RECORDS`, 64 in the simulation). This task
//! keeps [`AT_ONCE`] fresh clients going: each connects, writes [`KEY`] once (a put of a
//! number never written before), reads it back and is dropped, and another takes its place,
//! for as long as the workload runs. Every fresh client leaves a record no later request of
//! its client will clear, so the key passes the limit within a few seconds and its writes
//! compact the records by their number: the oldest go, and the record of a write whose
//! client may still retry it stays. A retry applied again after its record went puts back an
//! older number, which a later read shows (the checker reports it); members that cut
//! different records hold different ones (the audit reports it); a key that holds more than
//! the limit and its slack fails the audit's count.
//!
//! The fresh clients retry an attempt after [`ATTEMPT`], much sooner than the workload's, so
//! that a slow reply makes a retry, often while the write is the newest one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyperdex::client::{Client, ClientOptions};
use hyperdex::rt;
use hyperdex_model::{Operation, Value};
use madsim::rand::{thread_rng, Rng};

use crate::ops::WIDE_NAME;
use crate::workload::Recorder;

/// The key every fresh client writes, in `wide` (no workload operation touches it).
pub const KEY: &str = "r0";

/// The history's client number of the `i`th fresh client is `FIRST + i`.
pub const FIRST: u64 = 100_000;

/// How long a fresh client waits for an attempt's reply before retrying it.
pub const ATTEMPT: Duration = Duration::from_millis(40);

/// The read of [`KEY`] (also part of the liveness check's final reads).
pub fn read() -> Operation {
    Operation::get(WIDE_NAME, Value::string(KEY))
}

/// How many fresh clients write at once.
pub const AT_ONCE: usize = 2;

/// Runs [`AT_ONCE`] fresh clients at a time, each followed by another as soon as it is done,
/// for as long as any workload writer runs.
pub async fn run(base: ClientOptions, rec: Recorder, coordinator: String) {
    let opts = ClientOptions {
        attempt_timeout: ATTEMPT,
        ..base
    };
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..AT_ONCE)
        .map(|_| {
            rt::spawn(one_after_another(
                opts.clone(),
                rec.clone(),
                coordinator.clone(),
                next.clone(),
            ))
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn one_after_another(
    opts: ClientOptions,
    rec: Recorder,
    coordinator: String,
    next: Arc<AtomicU64>,
) {
    while rec.writers_running() {
        let Ok(client) = Client::connect_with(&coordinator, opts.clone()).await else {
            rt::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let i = next.fetch_add(1, Ordering::Relaxed);
        let put = Operation::put(
            WIDE_NAME,
            Value::string(KEY),
            vec![("n", Value::Int(i as i64))],
        );
        for op in [put, read()] {
            let id = rec.invoke(FIRST + i, &op);
            let reply = client.call(op).await;
            rec.complete(id, reply);
        }
        drop(client);
        rt::sleep(Duration::from_millis(thread_rng().gen_range(1..10))).await;
    }
}
