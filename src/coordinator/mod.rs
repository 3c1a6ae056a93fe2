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

pub mod state;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyperdex_model::ReturnCode;
use tracing::{info, warn};

use crate::config::{ServerId, ServerState, Timing};
use crate::net::{accept_loop, serve, Limits, ReplyTx};
use crate::protocol::auth::{Peer, Role, Secret};
use crate::protocol::{AdminCommand, AdminOutput, CoordRequest, CoordResponse, Envelope, Message};
use crate::rt;
use crate::storage::{Store, Table};
use crate::tls::TlsServer;
use state::{Cluster, Command, Outcome};

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
}

impl Default for CoordinatorOptions {
    fn default() -> Self {
        CoordinatorOptions {
            listen: "127.0.0.1:1982".into(),
            limits: Limits::default(),
            timing: Timing::default(),
            secret: None,
            tls: None,
        }
    }
}

const STATE_KEY: &[u8] = b"coordinator-state";

/// The largest state (configuration included) the coordinator keeps: a configuration goes to
/// every daemon in heartbeat replies and must fit comfortably in a frame.
pub const MAX_STATE_BYTES: usize = 8 << 20;

/// A request with its costly part done before the coordinator's lock is taken: a space
/// description is parsed and checked here, so one huge description cannot hold up
/// heartbeats.
pub enum Prepared {
    Request(CoordRequest),
    AddSpace(Result<Command, state::CommandError>),
}

/// Whether `peer` may make `request`: anyone may read the configuration; only daemons
/// register, send heartbeats and report transfers, each under its own id; only admin tools
/// change the configuration. With a cluster secret, a role is one its holder has proven.
fn allowed(request: &CoordRequest, peer: &Peer) -> Result<(), String> {
    let server = |id: Option<ServerId>| {
        if peer.role != Role::Server {
            return Err(format!("{} is for daemons", request.name()));
        }
        if peer.server != id {
            return Err(format!(
                "{} for server {} on a connection of server {}",
                request.name(),
                id.map_or("(new)".into(), |i| i.to_string()),
                peer.server.map_or("(new)".into(), |i| i.to_string()),
            ));
        }
        Ok(())
    };
    match request {
        CoordRequest::GetConfig => Ok(()),
        CoordRequest::Register { id, .. } => server(*id),
        CoordRequest::Heartbeat { id, .. } | CoordRequest::TransferComplete { id, .. } => {
            server(Some(*id))
        }
        CoordRequest::Admin(AdminCommand::ListSpaces | AdminCommand::WaitUntilStable) => Ok(()),
        CoordRequest::Admin(_) if peer.role == Role::Admin => Ok(()),
        CoordRequest::Admin(_) => {
            Err("administrative changes need an admin connection (and the cluster secret, if the cluster has one)".into())
        }
    }
}

/// Prepares a message for [`Shared::handle`], or answers it at once.
fn prepare(msg: Message, peer: &Peer) -> Result<Prepared, Box<Message>> {
    if let Message::ToCoordinator(r) = &msg {
        if let Err(why) = allowed(r, peer) {
            tracing::warn!(?peer, "refused {}: {why}", r.name());
            return Err(Box::new(Message::Error {
                code: ReturnCode::Unauthorized,
                message: why,
            }));
        }
    }
    match msg {
        Message::ToCoordinator(CoordRequest::Admin(AdminCommand::AddSpace(text))) => {
            Ok(Prepared::AddSpace(Command::add_space(&text)))
        }
        Message::ToCoordinator(r) => Ok(Prepared::Request(r)),
        other => Err(Box::new(Message::Error {
            code: ReturnCode::AdminGarbage,
            message: format!("the coordinator does not handle {}", other.name()),
        })),
    }
}

struct Shared {
    cluster: Cluster,
    store: Box<dyn Store>,
    last_heard: BTreeMap<ServerId, rt::Instant>,
}

impl Shared {
    /// Applies a command, persisting the state before anything is answered.
    fn apply(&mut self, cmd: Command) -> Result<Outcome, (ReturnCode, String)> {
        // The command is applied to a copy that replaces the state only once it is durable,
        // so a failed write to disk leaves the coordinator exactly as it was.
        let mut next = self.cluster.clone();
        let out = next.apply(&cmd)?;
        if next.config.version != self.cluster.config.version
            || matches!(out, Outcome::Registered(_))
        {
            let bytes = postcard::to_allocvec(&next).map_err(|e| {
                (
                    ReturnCode::AdminInternal,
                    format!("cannot encode the configuration: {e}"),
                )
            })?;
            if bytes.len() > MAX_STATE_BYTES {
                return Err((
                    ReturnCode::BadSpace,
                    format!(
                        "the configuration would take {} bytes, over the limit of {MAX_STATE_BYTES}",
                        bytes.len()
                    ),
                ));
            }
            self.store.put(Table::Meta, STATE_KEY, Some(bytes));
            if let Err(e) = self.store.sync() {
                // Put the state that still holds back in place of the one that failed, so a
                // later successful write cannot make the refused command durable.
                if let Ok(current) = postcard::to_allocvec(&self.cluster) {
                    self.store.put(Table::Meta, STATE_KEY, Some(current));
                }
                return Err((
                    ReturnCode::AdminServerError,
                    format!("cannot persist the configuration: {e}"),
                ));
            }
            info!(version = next.config.version, command = ?cmd, "configuration changed");
            tracing::debug!("{}", next.config);
        }
        self.cluster = next;
        Ok(out)
    }

    /// Answers a prepared request (under the lock). A daemon that registers on this
    /// connection has the connection bound to its new id.
    fn handle(&mut self, request: Prepared, peer: &mut Peer) -> Message {
        let answer = match request {
            Prepared::Request(r) => self.request(r),
            Prepared::AddSpace(command) => {
                let done = command
                    .and_then(|c| self.apply(c))
                    .map(|_| AdminOutput::Done);
                Ok(CoordResponse::AdminReply(done))
            }
        };
        if let Ok(CoordResponse::Registered { id, .. }) = &answer {
            peer.server = Some(*id);
        }
        match answer {
            Ok(r) => Message::FromCoordinator(r),
            Err((code, message)) => Message::Error { code, message },
        }
    }

    fn request(&mut self, request: CoordRequest) -> Result<CoordResponse, (ReturnCode, String)> {
        Ok(match request {
            CoordRequest::GetConfig => CoordResponse::Config(self.cluster.config.clone()),
            CoordRequest::Register { id, addr } => {
                let Outcome::Registered(id) = self.apply(Command::Register { id, addr })? else {
                    return Err((
                        ReturnCode::AdminInternal,
                        "registration produced no id".into(),
                    ));
                };
                self.last_heard.insert(id, rt::now());
                CoordResponse::Registered {
                    id,
                    config: self.cluster.config.clone(),
                }
            }
            CoordRequest::Heartbeat { id, config_version } => {
                let known = self
                    .cluster
                    .config
                    .server(id)
                    .is_some_and(|s| s.state == ServerState::Available);
                if known {
                    self.last_heard.insert(id, rt::now());
                }
                CoordResponse::HeartbeatReply {
                    config: (config_version != self.cluster.config.version)
                        .then(|| self.cluster.config.clone()),
                }
            }
            CoordRequest::Admin(cmd) => CoordResponse::AdminReply(self.admin(cmd)),
            CoordRequest::TransferComplete { id, region, since } => {
                let done = self.apply(Command::TransferComplete {
                    server: id,
                    region,
                    since,
                });
                CoordResponse::AdminReply(done.map(|_| AdminOutput::Done))
            }
        })
    }

    fn admin(&mut self, cmd: AdminCommand) -> Result<AdminOutput, (ReturnCode, String)> {
        let command = match cmd {
            AdminCommand::ListSpaces => {
                return Ok(AdminOutput::Spaces(
                    self.cluster.config.spaces.keys().cloned().collect(),
                ))
            }
            AdminCommand::WaitUntilStable => {
                let unstable = self.cluster.unstable();
                return Ok(if unstable.is_empty() {
                    AdminOutput::Done
                } else {
                    AdminOutput::NotStable(unstable.join("; "))
                });
            }
            AdminCommand::AddSpace(text) => Command::add_space(&text)?,
            AdminCommand::RmSpace(name) => Command::RmSpace(name),
            AdminCommand::ServerKill(id) => Command::ServerKill(id),
            AdminCommand::ServerForget(id) => Command::ServerForget(id),
            AdminCommand::FaultTolerance { space, tolerate } => {
                Command::FaultTolerance { space, tolerate }
            }
        };
        self.apply(command).map(|_| AdminOutput::Done)
    }

    /// Declares failed every available server not heard from within `timeout`.
    fn detect_failures(&mut self, timeout: Duration) {
        let now = rt::now();
        let late: Vec<ServerId> = self
            .cluster
            .config
            .servers
            .values()
            .filter(|s| s.state == ServerState::Available)
            .filter(|s| {
                self.last_heard
                    .get(&s.id)
                    .is_none_or(|t| now.duration_since(*t) > timeout)
            })
            .map(|s| s.id)
            .collect();
        for id in late {
            warn!(
                server = id.0,
                "no heartbeat within {timeout:?}: declaring the server failed"
            );
            if let Err((_, e)) = self.apply(Command::ServerFailed(id)) {
                warn!(server = id.0, "could not record the failure: {e}");
            }
        }
    }
}

/// Loads the persisted state, or starts a new cluster.
fn load(store: &dyn Store) -> Result<Cluster, crate::Error> {
    match store.get(Table::Meta, STATE_KEY)? {
        Some(bytes) => postcard::from_bytes(&bytes).map_err(|e| {
            crate::Error::Config(format!("the coordinator's saved state is unreadable: {e}"))
        }),
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
    let now = rt::now();
    let last_heard = cluster.config.servers.keys().map(|&id| (id, now)).collect();
    info!(
        version = cluster.config.version,
        servers = cluster.config.servers.len(),
        spaces = cluster.config.spaces.len(),
        "coordinator listening on {}",
        opts.listen
    );
    let shared = Arc::new(Mutex::new(Shared {
        cluster,
        store,
        last_heard,
    }));
    let detector = shared.clone();
    let timing = opts.timing;
    rt::spawn(async move {
        loop {
            rt::sleep(timing.heartbeat_interval).await;
            let mut s = detector.lock().unwrap_or_else(|e| e.into_inner());
            s.detect_failures(timing.failure_timeout);
        }
    });
    let limits = opts.limits;
    let secret = opts.secret.clone().map(Arc::new);
    accept_loop(
        listener,
        limits,
        opts.tls.clone(),
        || false,
        move |stream, peer| {
            let shared = shared.clone();
            let secret = secret.clone();
            async move {
                let why = serve(
                    stream,
                    limits,
                    secret.as_deref(),
                    |env: Envelope, tx: &ReplyTx, peer: &mut Peer| {
                        let reply = match prepare(env.msg, peer) {
                            Ok(request) => shared
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .handle(request, peer),
                            Err(refusal) => *refusal,
                        };
                        tx.send(Envelope {
                            id: env.id,
                            msg: reply,
                        });
                        std::future::ready(())
                    },
                )
                .await;
                tracing::debug!(%peer, "connection ended: {why}");
            }
        },
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{KeyValues, MemStore, StoreError};

    /// A store whose disk can be made to refuse every sync.
    struct FlakyDisk {
        inner: MemStore,
        broken: Arc<Mutex<bool>>,
    }

    impl Store for FlakyDisk {
        fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(table, key)
        }
        fn scan_from(
            &self,
            table: Table,
            prefix: &[u8],
            after: Option<&[u8]>,
            limit: usize,
        ) -> Result<KeyValues, StoreError> {
            self.inner.scan_from(table, prefix, after, limit)
        }
        fn put(&mut self, table: Table, key: &[u8], value: Option<Vec<u8>>) {
            self.inner.put(table, key, value)
        }
        fn sync(&mut self) -> Result<(), StoreError> {
            if *self.broken.lock().unwrap_or_else(|e| e.into_inner()) {
                return Err(StoreError::Io("disk full".into()));
            }
            self.inner.sync()
        }
    }

    #[test]
    fn a_command_that_cannot_be_persisted_changes_nothing() {
        let disk = MemStore::new();
        let broken = Arc::new(Mutex::new(false));
        let mut shared = Shared {
            cluster: Cluster::new(7),
            store: Box::new(FlakyDisk {
                inner: disk.clone(),
                broken: broken.clone(),
            }),
            last_heard: BTreeMap::new(),
        };
        shared
            .apply(Command::Register {
                id: None,
                addr: "127.0.0.1:2012".into(),
            })
            .expect("register");
        let before = shared.cluster.clone();

        *broken.lock().unwrap() = true;
        let err = shared
            .apply(Command::add_space("space kv key k attributes v").expect("a valid space"))
            .expect_err("the sync fails");
        assert_eq!(err.0, ReturnCode::AdminServerError);
        assert!(err.1.contains("disk full"), "{}", err.1);
        assert_eq!(shared.cluster, before, "memory state moved on");

        // Once the disk works again, an unrelated command must not make the refused one durable.
        *broken.lock().unwrap() = false;
        shared
            .apply(Command::Register {
                id: None,
                addr: "127.0.0.1:2013".into(),
            })
            .expect("register");
        let reloaded = load(&disk).expect("load");
        assert_eq!(reloaded, shared.cluster);
        assert!(
            reloaded.config.spaces.is_empty(),
            "the refused space came back"
        );
    }
}
