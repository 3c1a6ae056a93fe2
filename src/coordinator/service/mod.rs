//! The coordinator's actor: the only task that touches the state and the replicated log.
//!
//! Connections hand it [`Job`]s over a bounded channel and await the answer; messages of the
//! log from other coordinators arrive on a channel of their own ([`Inbound`]). Only the
//! leader of the log serves requests; another coordinator answers
//! [`CoordResponse::NotLeader`] with the leader's address. A change is proposed to the log
//! and answered once committed and applied (see `consensus`); a heartbeat is answered once
//! a round of the log confirms this coordinator still leads, because its answer is a lease
//! (see docs/coordinator.md for the arithmetic). Between jobs it ticks: the log's clock, the
//! failure detector (leader only), and answers held by [`Waits`] until a change is in force.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hyperdex_model::ReturnCode;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

mod leading;

use super::access::Prepared;
use super::consensus::{Consensus, Membership};
use super::progress::{describe, Progress};
use super::state::{Cluster, Command, Outcome};
use super::waits::{Event, Until, Waits};
use crate::bugs::{planted, Bug};
use crate::config::{ServerId, ServerState, Timing};
use crate::metrics::{Metrics, StateLabels};
use crate::protocol::auth::Peer;
use crate::protocol::{AdminCommand, AdminOutput, CoordRequest, CoordResponse, Message};
use crate::rt;

/// A request for the actor, with where its answer goes.
pub struct Job {
    pub request: Prepared,
    pub peer: Peer,
    pub answer: oneshot::Sender<Answer>,
}

/// What reaches the actor from the other coordinators.
pub enum Inbound {
    /// A message of the log.
    Raft(Vec<u8>),
    /// The coordinators a leader named when this one joined.
    Learned(BTreeMap<u64, String>),
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

/// What a request comes to: an answer now, one held until a change is in force, or a
/// heartbeat's reply (for a daemon at this configuration version), sent once this
/// coordinator's leadership is confirmed and everything committed before is applied.
enum Step {
    Reply(CoordResponse),
    Hold(Until, Option<Command>),
    Confirm(u64),
}

/// A heartbeat's answer waiting for a confirmation of leadership.
struct Confirming {
    answer: oneshot::Sender<Answer>,
    /// The daemon's configuration version.
    version: u64,
    /// The log index to apply first, once the confirmation completed.
    index: Option<u64>,
}

pub struct Service {
    pub cluster: Cluster,
    consensus: Consensus,
    inbox: mpsc::Receiver<Inbound>,
    timing: Timing,
    last_heard: BTreeMap<ServerId, rt::Instant>,
    waits: Waits<Held>,
    /// State transfers in progress, as the joiners report them.
    progress: Progress,
    metrics: Arc<Metrics>,
    /// Whether servers prove the cluster secret (then a server's claim to its id is trusted).
    trusted: bool,
    /// Whether this coordinator led the log when last looked at.
    leading: bool,
    /// Outcomes of proposals, until their proposer collects them.
    outcomes: BTreeMap<u64, Result<Outcome, Failure>>,
    /// Heartbeat answers sent once a confirmation of leadership completes.
    confirming: BTreeMap<u64, Confirming>,
    /// Set when the store failed: the coordinator stops.
    broken: Option<String>,
}

fn lost_lead() -> Failure {
    (
        ReturnCode::AdminServerError,
        "this coordinator stopped leading before the change was committed; it may still take \
         effect (ask again)"
            .into(),
    )
}

impl Service {
    /// The actor for `cluster` as the log stands for it: every known server gets a full
    /// failure timeout to be heard from.
    pub fn new(
        cluster: Cluster,
        consensus: Consensus,
        inbox: mpsc::Receiver<Inbound>,
        timing: Timing,
    ) -> Service {
        Service {
            cluster,
            consensus,
            inbox,
            timing,
            last_heard: BTreeMap::new(),
            waits: Waits::default(),
            progress: Progress::default(),
            metrics: Metrics::new(),
            trusted: false,
            leading: false,
            outcomes: BTreeMap::new(),
            confirming: BTreeMap::new(),
            broken: None,
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

    fn tick_period(&self) -> std::time::Duration {
        self.timing.heartbeat_interval / 2
    }

    /// Serves jobs until every sender is gone or the store fails.
    pub async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        self.drive().await;
        let mut next_tick = rt::now() + self.tick_period();
        while self.broken.is_none() {
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
                    next_tick = rt::now() + self.tick_period();
                }
                Some(m) = self.inbox.recv() => {
                    self.inbound(m);
                    self.drive().await;
                }
                job = jobs.recv() => match job {
                    Some(job) => {
                        self.job(job).await;
                        self.drive().await;
                    }
                    None => return,
                },
            }
        }
        if let Some(why) = &self.broken {
            error!("the coordinator stops: {why}");
        }
    }

    fn inbound(&mut self, m: Inbound) {
        match m {
            Inbound::Raft(bytes) => self.consensus.step(&bytes),
            Inbound::Learned(coordinators) => self.consensus.learn(coordinators),
        }
    }

    /// Advances the log until it has nothing more to do, and acts on what it produced.
    async fn drive(&mut self) {
        while self.broken.is_none() && self.consensus.has_ready() {
            match self.consensus.advance(&mut self.cluster).await {
                Ok(advanced) => {
                    self.outcomes.extend(advanced.done);
                    for (id, index) in advanced.confirmed {
                        if let Some(c) = self.confirming.get_mut(&id) {
                            c.index = Some(index);
                        }
                    }
                }
                Err((_, why)) => self.broken = Some(why),
            }
        }
        self.follow_leadership();
        self.answer_confirmed();
    }

    async fn job(&mut self, job: Job) {
        let Job {
            request,
            peer,
            answer,
        } = job;
        if !self.leading {
            return self.not_leader(answer);
        }
        let step = match request {
            Prepared::Request(r) => self.request(r, peer).await,
            Prepared::AddSpace(command) => match command {
                Ok(c) => Ok(refused_in_reply(self.change(c).await)),
                Err(e) => Ok(refused_in_reply(Err(e))),
            },
            Prepared::Raft(bytes) => {
                // Normally routed to the inbox; taken here too, unanswered.
                self.consensus.step(&bytes);
                return;
            }
        };
        let refused = matches!(
            step,
            Err(_) | Ok(Step::Reply(CoordResponse::AdminReply(Err(_))))
        );
        if refused && !self.leading {
            // Refused because (or while) this coordinator stopped leading: the asker tries the
            // new leader, where the request may well succeed.
            return self.not_leader(answer);
        }
        match step {
            Ok(Step::Hold(until, then)) => self.waits.push(until, Held { answer, then }),
            Ok(Step::Confirm(version)) => {
                let id = self.consensus.confirm();
                let c = Confirming {
                    answer,
                    version,
                    index: None,
                };
                self.confirming.insert(id, c);
            }
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

    /// Applies a command through the log: answered once committed and applied here.
    pub async fn apply(&mut self, cmd: Command) -> Result<Outcome, Failure> {
        if !self.leading {
            return Err(lost_lead());
        }
        // A command refused, or one that changes nothing, is answered without the log.
        let mut next = self.cluster.clone();
        let out = next.apply(&cmd)?;
        if next.config.version == self.cluster.config.version
            && !matches!(out, Outcome::Registered(_))
        {
            return Ok(out);
        }
        let id = self.consensus.propose(&cmd)?;
        let out = self.committed(id).await?;
        info!(version = self.cluster.config.version, command = ?cmd, "configuration changed");
        tracing::debug!("{}", self.cluster.config);
        Ok(out)
    }

    /// Waits for the proposal `id` to be committed and applied, driving the log meanwhile.
    async fn committed(&mut self, id: u64) -> Result<Outcome, Failure> {
        let term = self.consensus.term();
        let mut next_tick = rt::now() + self.tick_period();
        loop {
            self.drive().await;
            if let Some(r) = self.outcomes.remove(&id) {
                return r;
            }
            if let Some(why) = &self.broken {
                return Err((ReturnCode::AdminServerError, why.clone()));
            }
            if !self.leading || self.consensus.term() != term {
                return Err(lost_lead());
            }
            let wait = next_tick.saturating_duration_since(rt::now());
            tokio::select! {
                biased;
                Some(m) = self.inbox.recv() => self.inbound(m),
                () = rt::sleep(wait) => {
                    self.consensus.tick();
                    next_tick = rt::now() + self.tick_period();
                }
            }
        }
    }

    /// Changes the log's membership, answered once committed.
    async fn membership(&mut self, change: Membership) -> Result<Outcome, Failure> {
        let id = self.consensus.propose_membership(change)?;
        self.committed(id).await
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
                // The reply renews the daemon's lease: sent only once a round of the log shows
                // no other coordinator can have been elected since the heartbeat was sent.
                Ok(Step::Confirm(config_version))
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
            CoordRequest::Raft(_) | CoordRequest::JoinCoordinator { .. } => {
                self.between_coordinators(request).await
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

    /// What other coordinators ask: a log message (normally routed to the inbox, taken here
    /// too, unanswered) or a coordinator joining the log.
    async fn between_coordinators(&mut self, request: CoordRequest) -> Result<Step, Failure> {
        match request {
            CoordRequest::Raft(bytes) => {
                self.consensus.step(&bytes);
                Err((
                    ReturnCode::AdminGarbage,
                    "a log message needs no answer".into(),
                ))
            }
            CoordRequest::JoinCoordinator { id, addr } => {
                if !self.consensus.is_voter(id) {
                    info!(coordinator = id, %addr, "a coordinator joins");
                    self.membership(Membership::Add { id, addr }).await?;
                }
                Ok(Step::Reply(CoordResponse::Joined {
                    coordinators: self.cluster.config.coordinators.clone(),
                }))
            }
            other => Err((
                ReturnCode::AdminGarbage,
                format!("{} is not a request between coordinators", other.name()),
            )),
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
            AdminCommand::RmCoordinator(id) => {
                if !self.consensus.is_voter(id) {
                    return done(Err((
                        ReturnCode::AdminNotFound,
                        format!("there is no coordinator {id}"),
                    )));
                }
                warn!(coordinator = id, "taking a coordinator out of the log");
                return done(self.membership(Membership::Remove(id)).await);
            }
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
        self.consensus.tick();
        self.drive().await;
        self.record();
        if !self.leading {
            return;
        }
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
mod tests;
