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
//! Coordinators replicate [`state::Cluster`] through a raft log (`consensus`); the first one
//! starts the log, others join it with `-c/--connect`, and only the leader serves (see
//! docs/coordinator.md).

mod access;
mod affinity;
mod consensus;
mod legacy;
mod progress;
pub use progress::describe as describe_transfers;
mod service;
pub mod state;
mod waits;

use std::sync::Arc;

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{info, warn};

use access::{prepare, Prepared};
use consensus::{Consensus, Peers, Start};
use service::{Inbound, Job, Service};

use crate::config::Timing;
use crate::coordinators::Coordinators;
use crate::metrics::Metrics;
use crate::net::{accept_loop, serve, Credentials, Limits, ReplyTx};
use crate::protocol::auth::{Peer, Role, Secret};
use crate::protocol::{CoordRequest, CoordResponse, Envelope, Message};
use crate::rt;
use crate::storage::{Store, Table};
use crate::tls::{TlsClient, TlsServer};
use state::Cluster;

#[derive(Clone, Debug)]
pub struct CoordinatorOptions {
    /// `host:port` to listen on.
    pub listen: String,
    /// `host:port` the other coordinators, daemons and clients reach it at (default: `listen`).
    pub advertise: Option<String>,
    /// `host:port` of a running coordinator whose log this one joins (when it has none yet).
    pub join: Option<String>,
    /// The authority the other coordinators' certificates are checked against, with TLS.
    pub peer_tls: Option<TlsClient>,
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
            advertise: None,
            join: None,
            peer_tls: None,
            limits: Limits::default(),
            timing: Timing::default(),
            secret: None,
            tls: None,
            ready: None,
            metrics: Metrics::new(),
        }
    }
}

/// The largest state (configuration included) the coordinator keeps: a configuration goes to
/// every daemon in heartbeat replies and must fit comfortably in a frame.
pub const MAX_STATE_BYTES: usize = 8 << 20;

/// The state a coordinator with no log starts from: one saved by a coordinator that was not
/// replicated, or a new cluster.
fn saved_or_new(store: &dyn Store) -> Result<Cluster, crate::Error> {
    let unreadable =
        |e| crate::Error::Config(format!("the coordinator's saved state is unreadable: {e}"));
    if let Some(bytes) = store.get(Table::Meta, legacy::STATE_KEY_2)? {
        return legacy::decode_2(&bytes).map_err(unreadable);
    }
    match store.get(Table::Meta, legacy::STATE_KEY_1)? {
        Some(bytes) => legacy::decode_1(&bytes).map_err(unreadable),
        None => Ok(Cluster::new(rt::random_u64())),
    }
}

/// Messages of the log waiting for the actor.
const INBOX: usize = 1024;

/// Runs a coordinator on `listener` with state in `store` until the task is dropped or its
/// store fails.
pub async fn run(
    listener: rt::TcpListener,
    store: Box<dyn Store>,
    opts: CoordinatorOptions,
) -> Result<(), crate::Error> {
    opts.timing.validate().map_err(crate::Error::Config)?;
    let advertise = opts
        .advertise
        .clone()
        .unwrap_or_else(|| opts.listen.clone());
    let peer = Credentials {
        role: Role::Admin,
        server: None,
        secret: opts.secret.clone(),
        tls: opts.peer_tls.clone(),
    };
    let peers = Peers::new(peer.clone(), opts.limits.max_frame);
    let mut joining = false;
    let start = |s: &dyn Store| match &opts.join {
        Some(_) => {
            joining = true;
            Ok(Start::Join)
        }
        None => Ok(Start::New(saved_or_new(s)?)),
    };
    let (consensus, cluster) = Consensus::open(store, &advertise, start, peers)?;
    info!(
        version = cluster.config.version,
        servers = cluster.config.servers.len(),
        spaces = cluster.config.spaces.len(),
        coordinators = cluster.config.coordinators.len(),
        id = consensus.id(),
        "coordinator listening on {}",
        opts.listen
    );
    let (inbox_tx, inbox) = mpsc::channel(INBOX);
    if let (true, Some(at)) = (joining, &opts.join) {
        let request = CoordRequest::JoinCoordinator {
            id: consensus.id(),
            addr: advertise.clone(),
        };
        let coordinators =
            Coordinators::new(at, peer, opts.limits.max_frame, opts.timing.failure_timeout);
        rt::spawn(join(coordinators, request, inbox_tx.clone()));
    }
    if let Some(n) = &opts.ready {
        n.notify_one();
    }
    let (jobs, queue) = mpsc::channel(JOB_QUEUE);
    let service = Service::new(cluster, consensus, inbox, opts.timing)
        .with_metrics(opts.metrics.clone())
        .with_secret(opts.secret.is_some());
    let (done_tx, done) = oneshot::channel();
    rt::spawn_dedicated("coordinator", async move {
        service.run(queue).await;
        let _ = done_tx.send(());
    });
    let limits = opts.limits;
    let secret = opts.secret.clone().map(Arc::new);
    let connections = opts.metrics.connections.clone();
    let serving = accept_loop(
        listener,
        limits,
        opts.tls.clone(),
        || false,
        move |stream, peer| {
            let jobs = jobs.clone();
            let inbox = inbox_tx.clone();
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
                        let inbox = inbox.clone();
                        async move {
                            let (msg, peer) = answer(&jobs, &inbox, env.msg, peer).await;
                            if let Some(msg) = msg {
                                tx.send(Envelope { id: env.id, msg });
                            }
                            peer
                        }
                    },
                )
                .await;
                open.dec();
                tracing::debug!(%peer, "connection ended: {why}");
            }
        },
    );
    tokio::select! {
        biased;
        () = serving => Ok(()),
        _ = done => Err(crate::Error::Config(
            "the coordinator stopped: its store failed (see the log)".into(),
        )),
    }
}

/// Asks the coordinators at `coordinators` to take this one into the log, until one does.
async fn join(coordinators: Coordinators, request: CoordRequest, inbox: mpsc::Sender<Inbound>) {
    let msg = Message::ToCoordinator(request);
    loop {
        match coordinators.call(msg.clone(), Duration::from_secs(5)).await {
            Ok(Message::FromCoordinator(CoordResponse::Joined { coordinators })) => {
                info!("joined the coordinators' log");
                let _ = inbox.send(Inbound::Learned(coordinators)).await;
                return;
            }
            Ok(other) => warn!("joining the coordinators: answered {}", other.name()),
            Err(e) => warn!("joining the coordinators: {e}"),
        }
        rt::sleep(Duration::from_millis(500)).await;
    }
}

/// How many requests may wait for the coordinator's actor.
const JOB_QUEUE: usize = 1024;

/// Has the actor answer `msg` from `peer` (unless it is refused at once); returns the reply
/// (none to a message of the log) and the peer, bound to its id if it registered.
async fn answer(
    jobs: &mpsc::Sender<Job>,
    inbox: &mpsc::Sender<Inbound>,
    msg: Message,
    mut peer: Peer,
) -> (Option<Message>, Peer) {
    let request = match prepare(msg, &peer) {
        Ok(Prepared::Raft(bytes)) => {
            // Dropped when the actor is behind: raft sends again.
            let _ = inbox.try_send(Inbound::Raft(bytes));
            return (None, peer);
        }
        Ok(request) => request,
        Err(refusal) => return (Some(*refusal), peer),
    };
    let (answer, wait) = oneshot::channel();
    let job = Job {
        request,
        peer,
        answer,
    };
    // An answer dropped unsent: the actor stopped, or stopped leading before it could
    // answer. Either way the asker should try another coordinator.
    let elsewhere = || Message::FromCoordinator(CoordResponse::NotLeader { leader: None });
    if jobs.send(job).await.is_err() {
        return (Some(elsewhere()), peer);
    }
    match wait.await {
        Ok(a) => {
            if a.registered.is_some() {
                peer.server = a.registered;
            }
            (Some(a.msg), peer)
        }
        Err(_) => (Some(elsewhere()), peer),
    }
}
