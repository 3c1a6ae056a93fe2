//! The daemon: stores objects and serves them with chain replication.
//!
//! The replication logic is the pure [`replica::Replica`]; this module is its I/O:
//!
//! - **Start-up**: read the server id kept in the data directory (if any), register with the
//!   coordinator (retrying until [`DaemonOptions::startup_timeout`], then exiting with a clear
//!   message), save the id.
//! - **The actor**: one task owns the replica and the store. It takes a batch of events,
//!   steps the replica through them, syncs the store once, and only then sends replies and
//!   chain messages (group commit: one fsync for many writes).
//! - **Leases**: a heartbeat goes to the coordinator every `heartbeat_interval`; the daemon
//!   answers clients only while the last answered heartbeat was *sent* less than `lease` ago
//!   and the coordinator then had the same configuration version as the daemon.
//!   The coordinator replaces a daemon only after `failure_timeout > lease`, so a head cut
//!   off from the coordinator stops answering reads before a new head can accept writes.
//! - **Peers**: one outgoing connection per peer, re-established on failure; each new
//!   connection tells the replica to resend what the peer may have missed.

pub mod record;
pub mod replica;
pub mod search;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyperdex_model::{Reply, ReturnCode};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, error, info, warn};

use crate::bugs::{planted, Bug};
use crate::config::Timing;
use crate::config::{Config, ServerId, ServerState};
use crate::error::Error;
use crate::net::{serve, ReplyTx, RpcConn};
use crate::protocol::{Envelope, Message, DEFAULT_MAX_FRAME};
use crate::rt;
use crate::storage::{Store, Table};
use replica::{Input, Output, Replica};

#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// `host:port` the daemon is reached at (what it registers with the coordinator).
    pub address: String,
    /// `host:port` of the coordinator.
    pub coordinator: String,
    pub max_frame: usize,
    pub timing: Timing,
    /// How long to keep trying to register before giving up.
    pub startup_timeout: Duration,
    /// Most objects per state-transfer window.
    pub transfer_window: usize,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            address: "127.0.0.1:2012".into(),
            coordinator: "127.0.0.1:1982".into(),
            max_frame: DEFAULT_MAX_FRAME,
            timing: Timing::default(),
            startup_timeout: Duration::from_secs(10),
            transfer_window: replica::TRANSFER_WINDOW,
        }
    }
}

const SERVER_ID_KEY: &[u8] = b"server-id";
const RPC_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a reply goes: the connection and the request id.
pub type Waiter = (ReplyTx, u64);

type Event = Input<Waiter>;

/// Registers with the coordinator, retrying until the start-up timeout.
async fn register(
    opts: &DaemonOptions,
    id: Option<ServerId>,
) -> Result<(ServerId, Config, RpcConn), Error> {
    let deadline = rt::now() + opts.startup_timeout;
    let mut last_err = String::from("no attempt made");
    while rt::now() < deadline {
        match RpcConn::connect(&opts.coordinator, opts.max_frame, RPC_TIMEOUT).await {
            Ok(conn) => {
                let msg = Message::Register {
                    id,
                    addr: opts.address.clone(),
                };
                match conn.call(msg, RPC_TIMEOUT).await {
                    Ok(Message::Registered { id, config }) => return Ok((id, config, conn)),
                    Ok(Message::Error { message, .. }) => {
                        return Err(Error::Coordinator {
                            addr: opts.coordinator.clone(),
                            reason: format!("registration refused: {message}"),
                        })
                    }
                    Ok(other) => last_err = format!("unexpected reply {}", other.name()),
                    Err(e) => last_err = e.to_string(),
                }
            }
            Err(e) => last_err = e.to_string(),
        }
        rt::sleep(Duration::from_millis(200)).await;
    }
    Err(Error::Coordinator {
        addr: opts.coordinator.clone(),
        reason: format!(
            "gave up after {:?} ({last_err}); is `hyperdex coordinator` running there?",
            opts.startup_timeout
        ),
    })
}

/// The lease: when the last answered heartbeat was sent, and the configuration version the
/// coordinator had then. It covers only that version: a daemon whose configuration is older
/// than the coordinator's stops answering at once, before it has even installed the new one.
#[derive(Clone)]
struct Lease {
    granted: Arc<Mutex<Option<(rt::Instant, u64)>>>,
    length: Duration,
}

impl Lease {
    fn renew(&self, sent: rt::Instant, version: u64) {
        let mut g = self.granted.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none_or(|(t, _)| t <= sent) {
            *g = Some((sent, version));
        }
    }

    fn valid(&self, version: u64) -> bool {
        let g = self.granted.lock().unwrap_or_else(|e| e.into_inner());
        g.is_some_and(|(t, v)| v == version && rt::now().duration_since(t) < self.length)
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
    let (me, config, coord) = register(&opts, old_id).await?;
    store.put(
        Table::Meta,
        SERVER_ID_KEY,
        Some(me.0.to_be_bytes().to_vec()),
    );
    store.sync()?;
    info!(server = me.0, address = %opts.address, config = config.version, "daemon registered");

    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Event>();
    let fetch = Arc::new(Notify::new());
    let lease = Lease {
        granted: Arc::new(Mutex::new(Some((rt::now(), config.version)))),
        length: opts.timing.lease,
    };
    let fatal = Arc::new(AtomicBool::new(false));

    // Heartbeats, configuration updates and reports to the coordinator.
    let (reports_tx, mut reports_rx) = mpsc::unbounded_channel::<(crate::config::RegionId, u64)>();
    {
        let events = events_tx.clone();
        let fetch = fetch.clone();
        let lease = lease.clone();
        let opts = opts.clone();
        let mut version = config.version;
        rt::spawn(async move {
            let mut coord = Some(coord);
            loop {
                let mut reports = std::collections::BTreeSet::new();
                tokio::select! {
                    biased;
                    _ = rt::sleep(opts.timing.heartbeat_interval) => {}
                    _ = fetch.notified() => {}
                    r = reports_rx.recv() => reports.extend(r),
                }
                // Every report queued so far, once each.
                while let Ok(r) = reports_rx.try_recv() {
                    reports.insert(r);
                }
                if coord.as_ref().is_none_or(|c| !c.is_alive()) {
                    coord = RpcConn::connect(&opts.coordinator, opts.max_frame, RPC_TIMEOUT)
                        .await
                        .ok();
                }
                let Some(c) = &coord else { continue };
                for (region, since) in reports {
                    let msg = Message::TransferComplete {
                        id: me,
                        region,
                        since,
                    };
                    let _ = c.call(msg, RPC_TIMEOUT).await;
                }
                let sent = rt::now();
                let hb = Message::Heartbeat {
                    id: me,
                    config_version: version,
                };
                let config = match c.call(hb, opts.timing.lease).await {
                    Ok(Message::HeartbeatReply { config }) => {
                        let current = config.as_ref().map_or(version, |c| c.version);
                        lease.renew(sent, current);
                        config
                    }
                    Ok(other) => {
                        debug!("unexpected heartbeat reply {}", other.name());
                        None
                    }
                    Err(e) => {
                        debug!("heartbeat failed: {e}");
                        None
                    }
                };
                let Some(mut config) = config else { continue };
                if config
                    .server(me)
                    .is_none_or(|s| s.state != ServerState::Available)
                {
                    // Declared failed while alive (a partition, a pause): register again and
                    // rejoin by state transfer.
                    warn!(
                        server = me.0,
                        "the coordinator declared this server failed; registering again"
                    );
                    let msg = Message::Register {
                        id: Some(me),
                        addr: opts.address.clone(),
                    };
                    match c.call(msg, RPC_TIMEOUT).await {
                        Ok(Message::Registered { config: c2, .. }) => config = c2,
                        Ok(Message::Error { message, .. }) => {
                            error!("the coordinator refused this server: {message}");
                            continue;
                        }
                        _ => continue,
                    }
                }
                version = config.version;
                if events.send(Input::Config(config)).is_err() {
                    return;
                }
            }
        });
    }

    // Retransmission of anything still pending.
    {
        let events = events_tx.clone();
        let every = opts.timing.heartbeat_interval * 5;
        rt::spawn(async move {
            loop {
                rt::sleep(every).await;
                if events.send(Input::Tick).is_err() {
                    return;
                }
            }
        });
    }

    // Outgoing connections to peers, on the shared runtime.
    let (peers_tx, peers_rx) = mpsc::unbounded_channel::<(ServerId, String, Message)>();
    rt::spawn(Peers::new(events_tx.clone(), opts.max_frame).run(peers_rx));

    // The actor.
    {
        let events = events_tx.clone();
        let fetch = fetch.clone();
        let lease = lease.clone();
        let fatal = fatal.clone();
        let transfer_window = opts.transfer_window;
        // The actor blocks on fsync: it gets a thread of its own so that heartbeats and
        // connections never wait behind a disk.
        rt::spawn_dedicated("hyperdex-actor", async move {
            // Start from an empty configuration and install the real one as an input, so
            // that joining, transfers and clean-up start exactly as for any later one.
            let mut replica: Replica<Waiter> =
                Replica::new(me, Config::default()).with_transfer_window(transfer_window);
            let _ = events.send(Input::Config(config));
            drop(events);
            let mut batches = 0u64;
            while let Some(first) = events_rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 1024 {
                    match events_rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                let mut outs = Vec::new();
                for input in batch {
                    if let Input::Op { waiter, .. } | Input::Search { waiter, .. } = &input {
                        if !lease.valid(replica.config().version) && !planted(Bug::StaleConfig) {
                            let (tx, id) = waiter;
                            let _ = tx.send(Envelope {
                                id: *id,
                                msg: Message::Reply(Reply::Error(
                                    ReturnCode::Offline,
                                    format!("server {me} has lost contact with the coordinator"),
                                )),
                            });
                            continue;
                        }
                    }
                    match replica.step(store.as_mut(), input) {
                        Ok(o) => outs.extend(o),
                        Err(e) => {
                            error!("storage failed, stopping: {e}");
                            fatal.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
                batches += 1;
                // The planted bug syncs only every 50th batch, acknowledging staged writes.
                let skip_sync = planted(Bug::AckBeforeSync) && !batches.is_multiple_of(50);
                let synced = if skip_sync { Ok(()) } else { store.sync() };
                if let Err(e) = synced {
                    error!("storage sync failed, stopping: {e}");
                    fatal.store(true, Ordering::SeqCst);
                    return;
                }
                for o in outs {
                    match o {
                        Output::Reply((tx, id), msg) => {
                            let _ = tx.send(Envelope { id, msg });
                        }
                        Output::Send(to, msg) => {
                            if let Some(server) = replica.config().server(to) {
                                let _ = peers_tx.send((to, server.addr.clone(), msg));
                            }
                        }
                        Output::FetchConfig => fetch.notify_one(),
                        Output::TransferDone(region, since) => {
                            let _ = reports_tx.send((region, since));
                        }
                    }
                }
            }
        });
    }

    // Client and peer connections.
    loop {
        if fatal.load(Ordering::SeqCst) {
            return Err(Error::Config(
                "the daemon stopped after a storage failure".into(),
            ));
        }
        let (stream, peer) = match rt::timeout(Duration::from_millis(500), listener.accept()).await
        {
            Some(r) => r?,
            None => continue,
        };
        let events = events_tx.clone();
        let max_frame = opts.max_frame;
        rt::spawn(async move {
            let why = serve(stream, max_frame, |env: Envelope, tx: &ReplyTx| {
                let input = match env.msg {
                    Message::Op {
                        config_version,
                        client,
                        seq,
                        low_seq,
                        op,
                    } => Input::Op {
                        waiter: (tx.clone(), env.id),
                        config_version,
                        client,
                        seq,
                        low_seq,
                        op,
                    },
                    Message::Search {
                        config_version,
                        space,
                        regions,
                        checks,
                    } => Input::Search {
                        waiter: (tx.clone(), env.id),
                        config_version,
                        space,
                        regions,
                        checks,
                    },
                    Message::ChainWrite(w) => Input::ChainWrite(w),
                    Message::ChainAck(a) => Input::ChainAck(a),
                    Message::TransferData(t) => Input::TransferData(t),
                    Message::TransferAck(a) => Input::TransferAck(a),
                    other => {
                        let _ = tx.send(Envelope {
                            id: env.id,
                            msg: Message::Error {
                                code: ReturnCode::Garbage,
                                message: format!("a daemon does not handle {}", other.name()),
                            },
                        });
                        return;
                    }
                };
                let _ = events.send(input);
            })
            .await;
            debug!(%peer, "connection ended: {why}");
        });
    }
}

/// Outgoing connections to other daemons, one task per peer.
struct Peers {
    links: BTreeMap<ServerId, (String, mpsc::UnboundedSender<Message>)>,
    events: mpsc::UnboundedSender<Event>,
    max_frame: usize,
}

impl Peers {
    fn new(events: mpsc::UnboundedSender<Event>, max_frame: usize) -> Peers {
        Peers {
            links: BTreeMap::new(),
            events,
            max_frame,
        }
    }

    /// Forwards every message to its peer's link until the actor is gone.
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<(ServerId, String, Message)>) {
        while let Some((to, addr, msg)) = rx.recv().await {
            self.send(to, addr, msg);
        }
    }

    fn send(&mut self, to: ServerId, addr: String, msg: Message) {
        let stale = self
            .links
            .get(&to)
            .is_none_or(|(a, tx)| *a != addr || tx.is_closed());
        if stale {
            let (tx, rx) = mpsc::unbounded_channel();
            rt::spawn(peer_link(
                to,
                addr.clone(),
                rx,
                self.events.clone(),
                self.max_frame,
            ));
            self.links.insert(to, (addr, tx));
        }
        if let Some((_, tx)) = self.links.get(&to) {
            let _ = tx.send(msg);
        }
    }
}

/// Keeps a connection to one peer, forwarding queued messages; reconnects on failure and
/// tells the replica each time a connection is up.
async fn peer_link(
    to: ServerId,
    addr: String,
    mut rx: mpsc::UnboundedReceiver<Message>,
    events: mpsc::UnboundedSender<Event>,
    max_frame: usize,
) {
    loop {
        match RpcConn::connect(&addr, max_frame, RPC_TIMEOUT).await {
            Ok(conn) => {
                if events.send(Input::PeerUp(to)).is_err() {
                    return;
                }
                while let Some(msg) = rx.recv().await {
                    if !conn.send(msg) {
                        break;
                    }
                }
                if rx.is_closed() {
                    return;
                }
            }
            Err(e) => debug!(peer = to.0, "cannot reach peer: {e}"),
        }
        // Messages queued while disconnected are dropped: the replica resends what matters
        // when the link is up again.
        while rx.try_recv().is_ok() {}
        rt::sleep(Duration::from_millis(50)).await;
    }
}
