//! The coordinator's actor: the only task that touches the state and its disk.
//!
//! Connections hand it [`Job`]s over a bounded channel and await the answer. A command that
//! changes the state is applied to a copy, written and synced, and only then does the copy
//! replace the state and the answer go out; the actor yields between staging, syncing and
//! answering (see [`rt::disk_pause`]), so the simulation can crash it at each point. Between
//! jobs it ticks: the failure detector runs, and answers held by [`Waits`] until a change is
//! in force are released.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hyperdex_model::ReturnCode;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::access::Prepared;
use super::progress::{describe, Progress};
use super::state::{Cluster, Command, Outcome};
use super::waits::{Event, Until, Waits};
use super::{MAX_STATE_BYTES, STATE_KEY};
use crate::bugs::{planted, Bug};
use crate::config::{ServerId, ServerState, Timing};
use crate::metrics::{Metrics, StateLabels};
use crate::protocol::auth::Peer;
use crate::protocol::{AdminCommand, AdminOutput, CoordRequest, CoordResponse, Message};
use crate::rt;
use crate::storage::{Store, Table};

/// A request for the actor, with where its answer goes.
pub struct Job {
    pub request: Prepared,
    pub peer: Peer,
    pub answer: oneshot::Sender<Answer>,
}

/// The actor's answer: the reply, and the id to bind the connection to when a daemon
/// registered on it.
pub struct Answer {
    pub msg: Message,
    pub registered: Option<ServerId>,
}

type Failure = (ReturnCode, String);

/// An answer held until a change is in force, and the command to apply first, if any.
struct Held {
    answer: oneshot::Sender<Answer>,
    then: Option<Command>,
}

/// What a request comes to: an answer now, or one held until a change is in force.
enum Step {
    Reply(CoordResponse),
    Hold(Until, Option<Command>),
}

pub struct Service {
    pub cluster: Cluster,
    store: Box<dyn Store>,
    timing: Timing,
    last_heard: BTreeMap<ServerId, rt::Instant>,
    waits: Waits<Held>,
    /// State transfers in progress, as the joiners report them.
    progress: Progress,
    /// Changes applied, for the planted bug that syncs only some of them.
    changes: u64,
    metrics: Arc<Metrics>,
    /// Whether servers prove the cluster secret (then a server's claim to its id is trusted).
    trusted: bool,
}

impl Service {
    /// The actor for `cluster` as loaded from `store`: every known server gets a full
    /// failure timeout to be heard from.
    pub fn new(cluster: Cluster, store: Box<dyn Store>, timing: Timing) -> Service {
        let now = rt::now();
        let last_heard = cluster.config.servers.keys().map(|&id| (id, now)).collect();
        Service {
            cluster,
            store,
            timing,
            last_heard,
            waits: Waits::default(),
            progress: Progress::default(),
            changes: 0,
            metrics: Metrics::new(),
            trusted: false,
        }
    }

    /// Servers prove the cluster secret: a `Leave` is taken at its word.
    pub fn with_secret(self, secret: bool) -> Service {
        Service {
            trusted: secret,
            ..self
        }
    }

    /// Records into `metrics` (the configuration version, servers by state, heartbeats).
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Service {
        Service { metrics, ..self }
    }

    /// Serves jobs until every sender is gone.
    pub async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let period = self.timing.heartbeat_interval / 2;
        let mut next_tick = rt::now() + period;
        loop {
            let wait = next_tick.saturating_duration_since(rt::now());
            tokio::select! {
                biased;
                () = rt::sleep(wait) => {
                    // Jobs that arrived while the last one was being synced go first: a
                    // heartbeat waiting in the queue is a server heard from, and must not
                    // be missed by the failure detector because the coordinator was busy.
                    for _ in 0..super::JOB_QUEUE {
                        match jobs.try_recv() {
                            Ok(job) => self.job(job).await,
                            Err(_) => break,
                        }
                    }
                    self.tick().await;
                    next_tick = rt::now() + period;
                }
                job = jobs.recv() => match job {
                    Some(job) => self.job(job).await,
                    None => return,
                },
            }
        }
    }

    async fn job(&mut self, job: Job) {
        let Job {
            request,
            peer,
            answer,
        } = job;
        let step = match request {
            Prepared::Request(r) => self.request(r, peer).await,
            Prepared::AddSpace(command) => match command {
                Ok(c) => Ok(refused_in_reply(self.change(c).await)),
                Err(e) => Ok(refused_in_reply(Err(e))),
            },
        };
        match step {
            Ok(Step::Hold(until, then)) => self.waits.push(until, Held { answer, then }),
            Ok(Step::Reply(r)) => {
                let registered = match &r {
                    CoordResponse::Registered { id, .. } => Some(*id),
                    _ => None,
                };
                let msg = Message::FromCoordinator(r);
                let _ = answer.send(Answer { msg, registered });
            }
            Err(e) => {
                let _ = answer.send(error(e));
            }
        }
    }

    /// Applies a command, persisting the state before anything is answered.
    pub async fn apply(&mut self, cmd: Command) -> Result<Outcome, Failure> {
        // The command is applied to a copy that replaces the state only once it is durable,
        // so a failed write to disk leaves the coordinator exactly as it was.
        let mut next = self.cluster.clone();
        let out = next.apply(&cmd)?;
        if next.config.version == self.cluster.config.version
            && !matches!(out, Outcome::Registered(_))
        {
            return Ok(out);
        }
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
        self.changes += 1;
        if planted(Bug::CoordinatorEarlyAnswer) && !self.changes.is_multiple_of(4) {
            // The planted bug: the change is answered and published while only staged.
            self.cluster = next;
            return Ok(out);
        }
        rt::disk_pause().await;
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
        rt::disk_pause().await;
        info!(version = next.config.version, command = ?cmd, "configuration changed");
        tracing::debug!("{}", next.config);
        self.cluster = next;
        Ok(out)
    }

    /// Applies an administrative change and holds its answer until the change is in force
    /// on every server that was available (or every lease on the old configuration expired).
    async fn change(&mut self, cmd: Command) -> Result<Step, Failure> {
        let mut missing = self.available();
        self.apply(cmd).await?;
        let version = self.cluster.config.version;
        if planted(Bug::ChangeNotInForce) {
            return Ok(Step::Reply(CoordResponse::AdminReply(Ok(
                AdminOutput::Done,
            ))));
        }
        // A command that changed nothing (a retry, say) is answered once the configuration
        // that has its effect is in force too: the first call may still be waiting for it.
        missing.extend(self.available());
        let deadline = rt::now() + self.timing.lease_bound();
        Ok(Step::Hold(
            Until::Everywhere {
                version,
                missing,
                deadline,
            },
            None,
        ))
    }

    fn available(&self) -> BTreeSet<ServerId> {
        self.cluster
            .config
            .servers
            .values()
            .filter(|s| s.state == ServerState::Available)
            .map(|s| s.id)
            .collect()
    }

    async fn request(&mut self, request: CoordRequest, peer: Peer) -> Result<Step, Failure> {
        let reply = |r| Ok(Step::Reply(r));
        match request {
            CoordRequest::GetConfig => reply(CoordResponse::Config(self.cluster.config.clone())),
            CoordRequest::Register { id: Some(id), .. }
            | CoordRequest::Heartbeat { id, .. }
            | CoordRequest::TransferComplete { id, .. }
                if self.waits.fenced(id) =>
            {
                tracing::debug!(?peer, "refused a request of fenced server {id}");
                crate::probe!("coordinator.heartbeat_fenced");
                Err((
                    crate::protocol::coordinator::FENCED,
                    format!("server {id} is being removed by an operator"),
                ))
            }
            CoordRequest::Register { id, addr } => {
                let Outcome::Registered(id) = self.apply(Command::Register { id, addr }).await?
                else {
                    return Err((
                        ReturnCode::AdminInternal,
                        "registration produced no id".into(),
                    ));
                };
                self.last_heard.insert(id, rt::now());
                reply(CoordResponse::Registered {
                    id,
                    config: self.cluster.config.clone(),
                })
            }
            CoordRequest::Heartbeat {
                id,
                config_version,
                joining,
            } => {
                let known = self
                    .cluster
                    .config
                    .server(id)
                    .is_some_and(|s| s.state == ServerState::Available);
                self.metrics.heartbeats.inc();
                if known {
                    self.last_heard.insert(id, rt::now());
                    self.progress
                        .heard(&self.cluster.config, id, &joining, rt::now());
                }
                let heard = Event::Heard {
                    server: id,
                    version: config_version,
                };
                let due = self.waits.step(heard);
                self.release(due).await;
                reply(CoordResponse::HeartbeatReply {
                    config: (config_version != self.cluster.config.version)
                        .then(|| self.cluster.config.clone()),
                    unix: rt::unix_now(),
                })
            }
            CoordRequest::Admin(cmd) => Ok(refused_in_reply(self.admin(cmd).await)),
            CoordRequest::TransferComplete { id, region, since } => {
                let done = self
                    .apply(Command::TransferComplete {
                        server: id,
                        region,
                        since,
                    })
                    .await;
                if done.is_ok() {
                    self.progress.completed(region, id, since);
                }
                reply(CoordResponse::AdminReply(done.map(|_| AdminOutput::Done)))
            }
            CoordRequest::Leave { id } if !self.trusted && self.available().contains(&id) => {
                // Without a cluster secret anyone may claim to be this server: replace it only
                // once its lease has run out, as `server-kill` does.
                Ok(Step::Hold(Until::Failed(id), None))
            }
            CoordRequest::Leave { id } => {
                // It no longer answers anyone (it says so once its store is closed): no lease
                // of it needs to run out before its regions get other heads.
                info!(
                    server = id.0,
                    "the server is stopping: taking it out of its chains"
                );
                let done = self.apply(Command::ServerFailed(id)).await;
                if done.is_ok() {
                    let due = self.waits.step(Event::Failed(id));
                    self.release(due).await;
                }
                reply(CoordResponse::AdminReply(done.map(|_| AdminOutput::Done)))
            }
        }
    }

    async fn admin(&mut self, cmd: AdminCommand) -> Result<Step, Failure> {
        let done = |r: Result<Outcome, Failure>| {
            Ok(Step::Reply(CoordResponse::AdminReply(
                r.map(|_| AdminOutput::Done),
            )))
        };
        let command = match cmd {
            AdminCommand::ListSpaces => {
                return Ok(Step::Reply(CoordResponse::AdminReply(Ok(
                    AdminOutput::Spaces(self.cluster.config.spaces.keys().cloned().collect()),
                ))))
            }
            AdminCommand::WaitUntilStable => {
                let mut unstable = self.cluster.unstable();
                if unstable.is_empty() {
                    return Ok(Step::Reply(CoordResponse::AdminReply(Ok(
                        AdminOutput::Done,
                    ))));
                }
                unstable.extend(describe(&self.progress.reports(&self.cluster.config)));
                return Ok(Step::Reply(CoordResponse::AdminReply(Ok(
                    AdminOutput::NotStable(unstable.join("; ")),
                ))));
            }
            AdminCommand::Transfers => {
                let reports = self.progress.reports(&self.cluster.config);
                return Ok(Step::Reply(CoordResponse::AdminReply(Ok(
                    AdminOutput::Transfers(reports),
                ))));
            }
            AdminCommand::ServerKill(id) | AdminCommand::ServerForget(id)
                if self.available().contains(&id) && !planted(Bug::ChangeNotInForce) =>
            {
                if let AdminCommand::ServerForget(_) = cmd {
                    // Refused now rather than after the fence if it would be refused then.
                    self.cluster.clone().apply(&Command::ServerForget(id))?;
                }
                // Fence it: its lease runs out, the failure detector declares it failed, and
                // only then does the change happen.
                warn!(server = id.0, "fencing the server at an operator's request");
                let then = matches!(cmd, AdminCommand::ServerForget(_))
                    .then_some(Command::ServerForget(id));
                return Ok(Step::Hold(Until::Failed(id), then));
            }
            AdminCommand::ServerKill(id) => return done(self.apply(Command::ServerKill(id)).await),
            AdminCommand::ServerForget(id) => {
                return done(self.apply(Command::ServerForget(id)).await)
            }
            AdminCommand::AddSpace(text) => Command::add_space(&text)?,
            AdminCommand::RmSpace(name) => Command::RmSpace(name),
            AdminCommand::FaultTolerance { space, tolerate } => {
                Command::FaultTolerance { space, tolerate }
            }
            AdminCommand::ReadOnly(on) => Command::ReadOnly(on),
            AdminCommand::AddIndex { space, attribute } => Command::AddIndex { space, attribute },
            AdminCommand::RmIndex(id) => Command::RmIndex(id),
        };
        self.change(command).await
    }

    /// Sends answers that were held, applying first what each waited to apply.
    async fn release(&mut self, due: Vec<Held>) {
        for held in due {
            let result = match held.then {
                Some(cmd) => self.apply(cmd).await.map(|_| AdminOutput::Done),
                None => Ok(AdminOutput::Done),
            };
            let msg = Message::FromCoordinator(CoordResponse::AdminReply(result));
            let _ = held.answer.send(Answer {
                msg,
                registered: None,
            });
        }
    }

    async fn tick(&mut self) {
        self.record();
        self.detect_failures().await;
        let due = self.waits.step(Event::Tick(rt::now()));
        self.release(due).await;
    }

    fn record(&self) {
        let config = &self.cluster.config;
        self.metrics.config_version.set(config.version as i64);
        for state in [ServerState::Available, ServerState::Failed] {
            let n = config.servers.values().filter(|s| s.state == state).count();
            self.metrics
                .servers
                .get_or_create(&StateLabels {
                    state: state.to_string(),
                })
                .set(n as i64);
        }
    }

    /// Declares failed every available server not heard from within the failure timeout.
    async fn detect_failures(&mut self) {
        let now = rt::now();
        let timeout = self.timing.failure_timeout;
        let late: Vec<ServerId> = self
            .available()
            .into_iter()
            .filter(|id| {
                self.last_heard
                    .get(id)
                    .is_none_or(|t| now.duration_since(*t) > timeout)
            })
            .collect();
        for id in late {
            warn!(
                server = id.0,
                "no heartbeat within {timeout:?}: declaring the server failed"
            );
            match self.apply(Command::ServerFailed(id)).await {
                Ok(_) => {
                    crate::probe!("coordinator.server_failed");
                    let due = self.waits.step(Event::Failed(id));
                    self.release(due).await;
                }
                Err((_, e)) => warn!(server = id.0, "could not record the failure: {e}"),
            }
        }
    }
}

/// An administrative command's refusal goes in its reply, not as an error message.
fn refused_in_reply(step: Result<Step, Failure>) -> Step {
    step.unwrap_or_else(|e| Step::Reply(CoordResponse::AdminReply(Err(e))))
}

fn error((code, message): Failure) -> Answer {
    Answer {
        msg: Message::Error { code, message },
        registered: None,
    }
}

#[cfg(all(test, not(madsim)))]
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
        fn delete_prefix(&mut self, table: Table, prefix: &[u8]) {
            self.inner.delete_prefix(table, prefix)
        }
        fn sync(&mut self) -> Result<(), StoreError> {
            if *self.broken.lock().unwrap_or_else(|e| e.into_inner()) {
                return Err(StoreError::Io("disk full".into()));
            }
            self.inner.sync()
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    #[test]
    fn a_command_that_cannot_be_persisted_changes_nothing() {
        block_on(persisting_fails());
    }

    async fn persisting_fails() {
        let disk = MemStore::new();
        let broken = Arc::new(Mutex::new(false));
        let mut shared = Service::new(
            Cluster::new(7),
            Box::new(FlakyDisk {
                inner: disk.clone(),
                broken: broken.clone(),
            }),
            Timing::default(),
        );
        shared
            .apply(Command::Register {
                id: None,
                addr: "127.0.0.1:2012".into(),
            })
            .await
            .expect("register");
        let before = shared.cluster.clone();

        *broken.lock().unwrap() = true;
        let err = shared
            .apply(Command::add_space("space kv key k attributes v").expect("a valid space"))
            .await
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
            .await
            .expect("register");
        let reloaded = load(&disk).expect("load");
        assert_eq!(reloaded, shared.cluster);
        assert!(
            reloaded.config.spaces.is_empty(),
            "the refused space came back"
        );
    }
}
