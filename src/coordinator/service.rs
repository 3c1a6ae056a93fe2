//! The coordinator's state with its disk: applies commands, persisting before answering.

use std::collections::BTreeMap;
use std::time::Duration;

use hyperdex_model::ReturnCode;
use tracing::{info, warn};

use super::access::Prepared;
use super::state::{Cluster, Command, Outcome};
use super::{MAX_STATE_BYTES, STATE_KEY};
use crate::config::{ServerId, ServerState};
use crate::protocol::auth::Peer;
use crate::protocol::{AdminCommand, AdminOutput, CoordRequest, CoordResponse, Message};
use crate::rt;
use crate::storage::{Store, Table};

pub struct Shared {
    pub cluster: Cluster,
    pub store: Box<dyn Store>,
    pub last_heard: BTreeMap<ServerId, rt::Instant>,
}

impl Shared {
    /// Applies a command, persisting the state before anything is answered.
    pub fn apply(&mut self, cmd: Command) -> Result<Outcome, (ReturnCode, String)> {
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
    pub fn handle(&mut self, request: Prepared, peer: &mut Peer) -> Message {
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
    pub fn detect_failures(&mut self, timeout: Duration) {
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

#[cfg(test)]
mod tests {
    use super::super::load;
    use super::*;
    use crate::storage::{KeyValues, MemStore, StoreError};
    use std::sync::{Arc, Mutex};

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
