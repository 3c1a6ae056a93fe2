//! The liveness check, after faults stop: the cluster must answer.
//!
//! Once every fault is undone and the configuration has been stable for two seconds, the
//! cluster gets [`BOUND`] of virtual time for each of:
//! 1. a read of every key from the control node (part of the checked history, so every
//!    acknowledged write must show);
//! 2. a short fault-free workload from every client node ([`OPS`] operations each).
//!
//! Every one of these operations must return a definite answer within the bound: an answer
//! whose outcome is unknown (TIMEOUT, OFFLINE, RECONFIGURE, a lost connection), or an
//! internal error or a request the server calls garbage, is a liveness failure, reported with the key and the server that heads its region. A cluster that stops
//! answering after a reconfiguration fails here, where the safety checks alone would pass it
//! (its operations only take longer).

use std::time::Duration;

use hyperdex::client::{fetch_config, Client, ClientOptions};
use hyperdex_model::{Operation, Reply, ReturnCode};

use crate::cluster::{SimCluster, COORDINATOR};
use crate::ops::WIDE_NAME;
use crate::workload::{random_op, Keys, Recorder, SPACE_NAME};

/// How long any operation may take once the cluster is healed and stable.
pub const BOUND: Duration = Duration::from_secs(10);
/// Operations each client issues in the fault-free window.
pub const OPS: usize = 20;

fn indefinite(r: &Reply) -> bool {
    matches!(
        r,
        Reply::Error(
            ReturnCode::Timeout
                | ReturnCode::Offline
                | ReturnCode::Reconfigure
                | ReturnCode::CoordFail
                | ReturnCode::ServerError
                | ReturnCode::Internal
                | ReturnCode::Garbage,
            _
        )
    )
}

/// Where an operation went: its key's region and head in the current configuration.
async fn whereabouts(op: &Operation) -> String {
    let Ok(config) = fetch_config(COORDINATOR, &ClientOptions::default()).await else {
        return "(the coordinator does not answer either)".into();
    };
    let region = op
        .space()
        .and_then(|s| config.space(s))
        .zip(op.key())
        .and_then(|(s, k)| s.region_of(k));
    match region {
        Some(r) => {
            let head = config.chain(r).first().copied();
            let addr = head.and_then(|h| config.server(h)).map(|s| s.addr.clone());
            format!(
                "region {r}, head {head:?} at {addr:?}, configuration {}",
                config.version
            )
        }
        None => "no region".into(),
    }
}

/// Runs `op` as client `who` and records it; a failure message if its outcome is unknown.
async fn run_one(client: &Client, rec: &Recorder, who: u64, op: Operation) -> Option<String> {
    let reply = rec.call(client, who, op.clone()).await;
    if !indefinite(&reply) {
        return None;
    }
    Some(format!(
        "liveness: client {who}'s {op:?} got no definite answer within {BOUND:?} after healing: {reply:?} ({})",
        whereabouts(&op).await
    ))
}

/// The client every check uses: operations bounded by [`BOUND`].
fn options(base: &ClientOptions) -> ClientOptions {
    ClientOptions {
        timeout: BOUND,
        ..base.clone()
    }
}

async fn connect(opts: ClientOptions) -> Result<Client, String> {
    match hyperdex::rt::timeout(BOUND, Client::connect_with(COORDINATOR, opts)).await {
        Some(Ok(c)) => Ok(c),
        Some(Err(e)) => Err(format!("liveness: cannot connect after healing: {e}")),
        None => Err(format!(
            "liveness: cannot connect within {BOUND:?} after healing"
        )),
    }
}

/// The whole check (see the module docs); the first failure, if any.
pub async fn check(
    cluster: &SimCluster,
    keys: Keys,
    base: &ClientOptions,
    rec: &Recorder,
) -> Result<(), String> {
    let opts = options(base);
    let (control_opts, control_rec) = (opts.clone(), rec.clone());
    cluster
        .on_control(async move {
            let client = connect(control_opts).await?;
            let every = [SPACE_NAME, WIDE_NAME]
                .into_iter()
                .flat_map(|space| keys.all().into_iter().map(move |k| (space, k)))
                .map(|(space, key)| Operation::get(space, key))
                .chain([crate::fresh::read()]);
            for op in every {
                if let Some(e) = run_one(&client, &control_rec, 999, op).await {
                    return Err(e);
                }
            }
            Ok(())
        })
        .await?;
    let handles: Vec<_> = cluster
        .clients
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let (opts, rec) = (opts.clone(), rec.clone());
            node.spawn(async move {
                let client = connect(opts).await?;
                for _ in 0..OPS {
                    if let Some(e) = run_one(&client, &rec, 1000 + i as u64, random_op(keys)).await
                    {
                        return Err(e);
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.await
            .map_err(|e| format!("liveness: a client task failed: {e}"))??;
    }
    Ok(())
}
