//! The daemon: stores objects and serves them with chain replication.
//!
//! One file per concern; only the first two make decisions, and neither does any I/O:
//!
//! - [`replica`]: chain replication as a pure state machine (head ordering, chain
//!   write/ack/commit, reconfiguration, and the stale-configuration rule with its lease);
//! - [`transfer`]: state transfer to joining servers, a pure state machine;
//! - [`record`]: the stored object, the key layout, dedupe records;
//! - [`retry_records`]: dedupe records kept apart from their objects;
//! - [`search`]: reading a region for a search;
//! - [`index`]: secondary indexes, kept in step with the objects by the store they go through;
//! - [`actor`]: the task that owns the replica and the store: batch, step, sync once, deliver;
//! - [`coordinator_link`]: registration, heartbeats, configurations, leases, reports;
//! - `peers`: outgoing connections to other daemons;
//! - `server`: the listener, turning frames into the actor's inputs.
//!
//! This module wires them: read the server id kept in the data directory (if any), register
//! (retrying until [`DaemonOptions::startup_timeout`], then exiting with a clear message),
//! save the id, then start the link, the actor and the listener.

pub mod actor;
pub mod authorize;
pub mod coordinator_link;
pub mod index;
pub mod layout;
mod peers;
pub mod read_cache;
pub mod record;
pub mod replica;
pub mod retry_records;
#[cfg(test)]
mod scripts;
pub mod search;
mod server;
pub mod syncer;
#[cfg(test)]
mod testnet;
pub mod transfer;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tracing::info;

use crate::config::{Config, ServerId, Timing};
use crate::error::Error;
use crate::limits::{EVENT_QUEUE, REPORT_QUEUE};
use crate::metrics::Metrics;
use crate::net::{Credentials, Limits, ReplyTx};
use crate::protocol::auth::{Role, Secret};
use crate::rt;
use crate::storage::{Store, Table};
use crate::tls::ServerTls;
use replica::{Input, Replica};

#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// `host:port` the daemon is reached at (what it registers with the coordinator).
    pub address: String,
    /// `host:port` of the coordinator.
    pub coordinator: String,
    /// Frame size, connection count and timeouts for the connections it serves.
    pub limits: Limits,
    /// The cluster secret: this daemon proves it knows it to the coordinator and its peers,
    /// and asks the same of peers that connect to it.
    pub secret: Option<Secret>,
    /// TLS: the certificate it presents, and the authority it checks the coordinator and
    /// its peers against.
    pub tls: ServerTls,
    pub timing: Timing,
    /// How long to keep trying to register before giving up.
    pub startup_timeout: Duration,
    /// Most objects per state-transfer window.
    pub transfer_window: usize,
    /// Bytes per second the state transfers this daemon sends may use (0: unlimited).
    pub transfer_rate: u64,
    /// Notified once the daemon has registered with the coordinator (it serves from then).
    pub registered: Option<Arc<Notify>>,
    /// Set to `true` to stop the daemon: the actor finishes its batch and closes the store,
    /// and [`run`] returns.
    pub shutdown: Option<watch::Receiver<bool>>,
    /// Where the daemon records its metrics (served by `--metrics-listen`).
    pub metrics: Arc<Metrics>,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            address: "127.0.0.1:2012".into(),
            coordinator: "127.0.0.1:1982".into(),
            limits: Limits::default(),
            secret: None,
            tls: ServerTls::default(),
            timing: Timing::default(),
            startup_timeout: Duration::from_secs(10),
            transfer_window: transfer::TRANSFER_WINDOW,
            transfer_rate: transfer::DEFAULT_TRANSFER_RATE,
            registered: None,
            shutdown: None,
            metrics: Metrics::new(),
        }
    }
}

const SERVER_ID_KEY: &[u8] = b"server-id";
const RPC_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a reply goes (the connection and the request id), and what to record when it does:
/// the kind of request and when it arrived.
#[derive(Clone, Debug)]
pub struct Waiter {
    pub tx: ReplyTx,
    pub id: u64,
    pub kind: &'static str,
    pub received: rt::Instant,
}

/// An input of the actor.
pub type Event = Input<Waiter>;

/// How this daemon introduces itself to the coordinator and its peers.
fn credentials(opts: &DaemonOptions, me: Option<ServerId>) -> Credentials {
    Credentials {
        role: Role::Server,
        server: me,
        secret: opts.secret.clone(),
        tls: opts.tls.connect.clone(),
    }
}

/// Why the daemon must stop, once one of its tasks has decided it must (the store failed, the
/// coordinator refused it for good).
#[derive(Debug, Default)]
pub struct Stop(std::sync::OnceLock<String>);

impl Stop {
    /// Stops the daemon for `why` (the first reason given is kept).
    pub fn now(&self, why: String) {
        let _ = self.0.set(why);
    }

    pub fn why(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// Runs a daemon that accepts connections on `listener` and keeps its data in `store`.
/// Returns only on a fatal error (the coordinator refused it, the store failed).
pub async fn run(
    listener: rt::TcpListener,
    mut store: Box<dyn Store>,
    opts: DaemonOptions,
) -> Result<(), Error> {
    opts.timing.validate().map_err(Error::Config)?;
    let old_id = store
        .get(Table::Meta, SERVER_ID_KEY)?
        .and_then(|b| b.try_into().ok())
        .map(|b: [u8; 8]| ServerId(u64::from_be_bytes(b)));
    let registered = coordinator_link::register(&opts, old_id).await?;
    let me = registered.id;
    store.put(
        Table::Meta,
        SERVER_ID_KEY,
        Some(me.0.to_be_bytes().to_vec()),
    );
    store.sync()?;
    info!(server = me.0, address = %opts.address, config = registered.config.version, "daemon registered");
    if let Some(n) = &opts.registered {
        n.notify_one();
    }

    let (events_tx, events_rx) = mpsc::channel::<Event>(EVENT_QUEUE);
    let (reports_tx, reports_rx) = mpsc::channel(REPORT_QUEUE);
    let (config_tx, config_rx) = watch::channel(Arc::new(registered.config));
    let (lease_tx, lease_rx) = watch::channel(Some(registered.lease));
    let (joining_tx, joining_rx) = watch::channel(Vec::new());
    let fetch = Arc::new(Notify::new());
    let stop = Arc::new(Stop::default());

    let link = coordinator_link::Link {
        me,
        opts: opts.clone(),
        conn: registered.conn,
        config: config_tx,
        lease: lease_tx,
        fetch: fetch.clone(),
        joining: joining_rx,
        stop: stop.clone(),
    };
    rt::spawn(link.run());
    rt::spawn(coordinator_link::report_transfers(
        me,
        opts.clone(),
        reports_rx,
    ));

    // Start from an empty configuration and install the real one as an input, so that
    // joining, transfers and clean-up start exactly as for any later one.
    let replica = Replica::new(me, Config::default())
        .with_transfers(opts.transfer_window, opts.transfer_rate)
        .with_lease(opts.timing.lease);
    let cache = read_cache::ReadCache::new(replica.view(), config_rx.clone(), lease_rx.clone());
    let store = Box::new(read_cache::Invalidating {
        inner: store,
        cache: cache.clone(),
    });
    let actor = actor::Actor {
        replica,
        store,
        events: events_rx,
        config: config_rx,
        lease: lease_rx,
        peers: peers::Peers::new(
            events_tx.clone(),
            opts.limits.max_frame,
            credentials(&opts, Some(me)),
        ),
        fetch,
        reports: reports_tx,
        joining: joining_tx,
        tick: opts.timing.heartbeat_interval * 5,
        last_lease: None,
        shutdown: opts.shutdown.clone(),
        metrics: opts.metrics.clone(),
        cache: cache.clone(),
    };
    // A task; its fsyncs are on a thread of its own, and what else may block for long
    // hands the runtime's other tasks over first, so that heartbeats and connections never
    // wait behind a disk (see `actor::spawn`).
    actor::spawn(actor, stop.clone());

    let security = (opts.secret.clone(), opts.tls.accept.clone());
    let served = server::run(
        listener,
        (events_tx, cache),
        opts.limits,
        security,
        stop.clone(),
        opts.metrics.clone(),
    )
    .await;
    if stop.why() == Some(actor::ASKED_TO_STOP) {
        coordinator_link::leave(&opts, me).await;
        return Ok(());
    }
    served
}
