//! The coordinator: the cluster's configuration service.
//!
//! [`state::Cluster`] is the pure state machine; this module is the server around it. Every
//! command that changes the state is applied, the whole state is written to the store and
//! synced, and only then is the reply sent (so an acknowledged `add-space` survives a crash).
//! Daemons send heartbeats; the reply carries the configuration when theirs is older. A
//! daemon not heard from for [`Timing::failure_timeout`](crate::config::Timing::failure_timeout) is declared failed and removed from
//! its chains. A restarted coordinator loads its state and gives every daemon a fresh
//! `failure_timeout` to be heard from.
//!
//! Shortcut: a single coordinator. HyperDex replicates it with Paxos; here `-c/--connect`
//! is refused with a clear message until a replicated log drives [`state::Cluster`].

mod access;
mod affinity;
mod legacy;
mod progress;
pub use progress::describe as describe_transfers;
mod service;
pub mod state;
mod waits;

use std::sync::Arc;

use hyperdex_model::ReturnCode;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::info;

use access::prepare;
use service::{Job, Service};

use crate::config::Timing;
use crate::metrics::Metrics;
use crate::net::{accept_loop, serve, Limits, ReplyTx};
use crate::protocol::auth::{Peer, Secret};
use crate::protocol::{Envelope, Message};
use crate::rt;
use crate::storage::{Store, Table};
use crate::tls::TlsServer;
use state::Cluster;

#[derive(Clone, Debug)]
pub struct CoordinatorOptions {
    /// `host:port` to listen on.
    pub listen: String,
    /// Frame size, connection count and timeouts for the connections it serves.
    pub limits: Limits,
    pub timing: Timing,
    /// The cluster secret daemons and admin tools must prove they know.
    pub secret: Option<Secret>,
    /// The certificate it presents, if connections to it are TLS.
    pub tls: Option<TlsServer>,
    /// Notified once the coordinator has read its state and serves.
    pub ready: Option<Arc<Notify>>,
    /// Where it records its metrics (served by `--metrics-listen`).
    pub metrics: Arc<Metrics>,
}

impl Default for CoordinatorOptions {
    fn default() -> Self {
        CoordinatorOptions {
            listen: "127.0.0.1:1982".into(),
            limits: Limits::default(),
            timing: Timing::default(),
            secret: None,
            tls: None,
            ready: None,
            metrics: Metrics::new(),
        }
    }
}

/// The key of the coordinator's state in its current layout (see `legacy` for earlier ones).
const STATE_KEY: &[u8] = b"coordinator-state-2";

/// The largest state (configuration included) the coordinator keeps: a configuration goes to
/// every daemon in heartbeat replies and must fit comfortably in a frame.
pub const MAX_STATE_BYTES: usize = 8 << 20;

/// Loads the persisted state, or starts a new cluster.
fn load(store: &dyn Store) -> Result<Cluster, crate::Error> {
    let unreadable =
        |e| crate::Error::Config(format!("the coordinator's saved state is unreadable: {e}"));
    if let Some(bytes) = store.get(Table::Meta, STATE_KEY)? {
        return postcard::from_bytes(&bytes).map_err(unreadable);
    }
    match store.get(Table::Meta, legacy::STATE_KEY_1)? {
        Some(bytes) => legacy::decode_1(&bytes).map_err(unreadable),
        None => Ok(Cluster::new(rt::random_u64())),
    }
}

/// Runs a coordinator on `listener` with state in `store` until the task is dropped.
pub async fn run(
    listener: rt::TcpListener,
    store: Box<dyn Store>,
    opts: CoordinatorOptions,
) -> Result<(), crate::Error> {
    opts.timing.validate().map_err(crate::Error::Config)?;
    let cluster = load(store.as_ref())?;
    info!(
        version = cluster.config.version,
        servers = cluster.config.servers.len(),
        spaces = cluster.config.spaces.len(),
        "coordinator listening on {}",
        opts.listen
    );
    if let Some(n) = &opts.ready {
        n.notify_one();
    }
    let (jobs, queue) = mpsc::channel(JOB_QUEUE);
    rt::spawn_dedicated(
        "coordinator",
        Service::new(cluster, store, opts.timing)
            .with_metrics(opts.metrics.clone())
            .with_secret(opts.secret.is_some())
            .run(queue),
    );
    let limits = opts.limits;
    let secret = opts.secret.clone().map(Arc::new);
    let connections = opts.metrics.connections.clone();
    accept_loop(
        listener,
        limits,
        opts.tls.clone(),
        || false,
        move |stream, peer| {
            let jobs = jobs.clone();
            let secret = secret.clone();
            let open = connections.clone();
            async move {
                open.inc();
                let why = serve(
                    stream,
                    limits,
                    secret.as_deref(),
                    |env: Envelope, tx: &ReplyTx, peer: Peer| {
                        let tx = tx.clone();
                        let jobs = jobs.clone();
                        async move {
                            let (msg, peer) = answer(&jobs, env.msg, peer).await;
                            tx.send(Envelope { id: env.id, msg });
                            peer
                        }
                    },
                )
                .await;
                open.dec();
                tracing::debug!(%peer, "connection ended: {why}");
            }
        },
    )
    .await;
    Ok(())
}

/// How many requests may wait for the coordinator's actor.
const JOB_QUEUE: usize = 1024;

/// Has the actor answer `msg` from `peer` (unless it is refused at once); returns the reply and
/// the peer, bound to its id if it registered.
async fn answer(jobs: &mpsc::Sender<Job>, msg: Message, mut peer: Peer) -> (Message, Peer) {
    let request = match prepare(msg, &peer) {
        Ok(request) => request,
        Err(refusal) => return (*refusal, peer),
    };
    let (answer, wait) = oneshot::channel();
    let job = Job {
        request,
        peer,
        answer,
    };
    let stopped = || Message::Error {
        code: ReturnCode::AdminServerError,
        message: "the coordinator is stopping".into(),
    };
    if jobs.send(job).await.is_err() {
        return (stopped(), peer);
    }
    match wait.await {
        Ok(a) => {
            if a.registered.is_some() {
                peer.server = a.registered;
            }
            (a.msg, peer)
        }
        Err(_) => (stopped(), peer),
    }
}
