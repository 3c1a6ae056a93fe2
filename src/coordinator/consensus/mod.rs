//! The coordinators' replicated log: raft (the `raft` crate, a pure state machine driven by
//! ticks and messages, with no I/O or clock of its own) under [`Cluster::apply`].
//!
//! Every change to the cluster is a [`Command`] in the log; every coordinator applies the
//! committed entries in order to its own [`Cluster`], so a configuration version always has
//! the same contents everywhere. Membership changes are raft's own configuration changes,
//! applied to the cluster too (as [`Command::AddCoordinator`] / [`Command::RmCoordinator`]),
//! so daemons and clients learn the coordinators' addresses from the configuration.
//!
//! [`Consensus::advance`] does one round of raft's `Ready`: messages that need nothing
//! durable go out at once; the snapshot and committed entries are applied; new entries and
//! the hard state are written and synced; only then do the messages that promise them
//! (votes, append acknowledgements) go out. Every [`COMPACT_EVERY`] entries the applied state
//! becomes the snapshot and the entries it covers are dropped, so the log stays small; a
//! coordinator too far behind gets that snapshot.

mod log;
mod logger;
mod peers;

use std::collections::BTreeMap;

use hyperdex_model::ReturnCode;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, Message as RaftMessage, Snapshot,
};
use raft::{RawNode, StateRole};

use super::state::{Cluster, Command, Outcome};
use super::MAX_STATE_BYTES;
use crate::bugs::{planted, Bug};
use crate::rt;
use crate::storage::{Store, Table};
use log::LogStore;
pub use peers::Peers;

pub type Failure = (ReturnCode, String);

/// Entries applied between snapshots.
pub const COMPACT_EVERY: u64 = 256;
/// Ticks without a leader's word before a follower stands for election (randomized up to
/// twice this), and between a leader's heartbeats.
const ELECTION_TICKS: usize = 10;
const HEARTBEAT_TICKS: usize = 2;

const ID_KEY: &[u8] = b"raft/id";

/// What one round of [`Consensus::advance`] produced for the service.
#[derive(Default)]
pub struct Advanced {
    /// Outcomes of this coordinator's proposals, by proposal id, as applied in log order.
    pub done: Vec<(u64, Result<Outcome, Failure>)>,
    /// Confirmations of leadership ([`Consensus::confirm`]) that completed: the id, and the
    /// log index to apply before answering (everything committed when it was asked).
    pub confirmed: Vec<(u64, u64)>,
}

/// How a coordinator with no log yet starts.
pub enum Start {
    /// A new cluster, or one saved before the log existed, with this state.
    New(Cluster),
    /// Joining a running cluster: its leader sends the state.
    Join,
}

/// A membership change of the log.
pub enum Membership {
    Add { id: u64, addr: String },
    Remove(u64),
}

pub struct Consensus {
    node: RawNode<LogStore>,
    store: Box<dyn Store>,
    peers: Peers,
    /// Addresses of coordinators learned outside the log (a joiner's, before the snapshot).
    learned: BTreeMap<u64, String>,
    /// Membership as of the last entry applied.
    conf: ConfState,
    applied: u64,
    next_proposal: u64,
    next_read: u64,
    /// Sync rounds (the planted bug skips some).
    rounds: u64,
    /// A membership change was applied: the next snapshot must show it (a coordinator that
    /// joins installs a snapshot only if it names it).
    snapshot_due: bool,
    /// The term and role the election timeout was last drawn for (see [`Consensus::redraw`]).
    drawn_for: (u64, StateRole),
}

fn internal(what: &str, e: impl std::fmt::Display) -> Failure {
    (ReturnCode::AdminServerError, format!("{what}: {e}"))
}

/// This coordinator's id in the log, chosen once and kept in its store.
fn node_id(store: &mut dyn Store) -> Result<u64, crate::Error> {
    if let Some(b) = store.get(Table::Meta, ID_KEY)? {
        let bytes: [u8; 8] = b
            .as_slice()
            .try_into()
            .map_err(|_| crate::Error::Config("the coordinator's saved id is unreadable".into()))?;
        return Ok(u64::from_be_bytes(bytes));
    }
    let id = rt::random_u64().max(1);
    store.put(Table::Meta, ID_KEY, Some(id.to_be_bytes().to_vec()));
    store.sync()?;
    Ok(id)
}

/// Applies `cmd`, refusing it (and changing nothing) if the state would grow too large.
fn apply_checked(cluster: &mut Cluster, cmd: &Command) -> Result<Outcome, Failure> {
    let mut next = cluster.clone();
    let out = next.apply(cmd)?;
    if next != *cluster {
        let size = postcard::to_allocvec(&next)
            .map_err(|e| internal("cannot encode the configuration", e))?
            .len();
        if size > MAX_STATE_BYTES {
            return Err((
                ReturnCode::BadSpace,
                format!(
                    "the configuration would take {size} bytes, over the limit of {MAX_STATE_BYTES}"
                ),
            ));
        }
    }
    *cluster = next;
    Ok(out)
}

/// Which coordinator proposed an entry, and its number for the proposal.
fn context(node: u64, proposal: u64) -> Vec<u8> {
    [node.to_be_bytes(), proposal.to_be_bytes()].concat()
}

fn proposer(ctx: &[u8]) -> Option<(u64, u64)> {
    let node = u64::from_be_bytes(ctx.get(..8)?.try_into().ok()?);
    let proposal = u64::from_be_bytes(ctx.get(8..16)?.try_into().ok()?);
    Some((node, proposal))
}

fn snapshot_of(cluster: &Cluster, index: u64, term: u64, conf: ConfState) -> Snapshot {
    let mut snap = Snapshot::default();
    let meta = snap.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(conf);
    snap.data = postcard::to_allocvec(cluster).unwrap_or_default().into();
    snap
}

impl Consensus {
    /// Opens the log in `store`: the saved one, or a new one as `start` says. `addr` is where
    /// this coordinator serves (published to the others). Returns the state the log stands for.
    pub fn open(
        mut store: Box<dyn Store>,
        addr: &str,
        start: impl FnOnce(&dyn Store) -> Result<Start, crate::Error>,
        peers: Peers,
    ) -> Result<(Consensus, Cluster), crate::Error> {
        let id = node_id(store.as_mut())?;
        let unreadable =
            |e| crate::Error::Config(format!("the coordinator's saved state is unreadable: {e}"));
        let (log, cluster) = match LogStore::load(store.as_ref())? {
            Some(log) => {
                let data = &log.snapshot_ref().data;
                let cluster: Cluster = postcard::from_bytes(data).map_err(unreadable)?;
                (log, cluster)
            }
            None => match start(store.as_ref())? {
                Start::Join => (LogStore::default(), Cluster::default()),
                Start::New(mut cluster) => {
                    cluster
                        .apply(&Command::AddCoordinator {
                            id,
                            addr: addr.to_string(),
                        })
                        .map_err(|(_, e)| crate::Error::Config(e))?;
                    let conf = ConfState {
                        voters: vec![id],
                        ..ConfState::default()
                    };
                    let snap = snapshot_of(&cluster, 1, 1, conf);
                    let log = LogStore::starting_at(store.as_mut(), snap);
                    store.sync()?;
                    (log, cluster)
                }
            },
        };
        let applied = log.snapshot_ref().get_metadata().index;
        let conf = log.snapshot_ref().get_metadata().get_conf_state().clone();
        let config = raft::Config {
            id,
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            applied,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 64,
            ..raft::Config::default()
        };
        let logger = logger::logger();
        let fail = |e: raft::Error| crate::Error::Config(format!("the replicated log: {e}"));
        let mut node = RawNode::new(&config, log, &logger).map_err(fail)?;
        if conf.voters == [id] {
            // Alone in the log: no one else could win an election, so win it now.
            node.campaign().map_err(fail)?;
        }
        let mut consensus = Consensus {
            node,
            store,
            peers,
            learned: BTreeMap::new(),
            conf,
            applied,
            next_proposal: rt::random_u64() >> 1,
            next_read: 1,
            rounds: 0,
            snapshot_due: false,
            drawn_for: (u64::MAX, StateRole::Leader),
        };
        consensus.redraw();
        Ok((consensus, cluster))
    }

    pub fn id(&self) -> u64 {
        self.node.raft.id
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// The leader this coordinator knows of, if any.
    pub fn leader(&self) -> Option<u64> {
        let l = self.node.raft.leader_id;
        (l != raft::INVALID_ID).then_some(l)
    }

    /// The index of the last entry applied.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    /// Whether `id` votes in the log.
    pub fn is_voter(&self, id: u64) -> bool {
        self.conf.voters.contains(&id)
    }

    /// Addresses of coordinators learned from a leader before the log has them.
    pub fn learn(&mut self, coordinators: BTreeMap<u64, String>) {
        self.learned.extend(coordinators);
    }

    /// Whether [`Consensus::advance`] has anything to do.
    pub fn has_ready(&mut self) -> bool {
        self.node.has_ready()
    }

    pub fn tick(&mut self) {
        self.node.tick();
        self.redraw();
    }

    /// Draws the election timeout from this runtime's random numbers whenever raft has just
    /// drawn one (on every change of term or role) from its own generator, which the
    /// simulation does not control: so a seed replays the same elections.
    fn redraw(&mut self) {
        let now = (self.node.raft.term, self.node.raft.state);
        if now == self.drawn_for {
            return;
        }
        self.drawn_for = now;
        let (lo, hi) = (ELECTION_TICKS, 2 * ELECTION_TICKS);
        let t = lo + (rt::random_u64() % (hi - lo) as u64) as usize;
        self.node.raft.set_randomized_election_timeout(t);
    }

    /// Takes a message from another coordinator.
    pub fn step(&mut self, bytes: &[u8]) {
        match RaftMessage::parse_from_bytes(bytes) {
            Ok(m) if m.to == self.id() => {
                self.peers.heard(m.from);
                if let Err(e) = self.node.step(m) {
                    tracing::debug!("a log message was not taken: {e}");
                }
                self.redraw();
            }
            Ok(m) => tracing::debug!(to = m.to, "a log message for another coordinator"),
            Err(e) => tracing::warn!("an undecodable log message: {e}"),
        }
    }

    /// Proposes `cmd`; its outcome comes back from [`Consensus::advance`] under the returned id.
    pub fn propose(&mut self, cmd: &Command) -> Result<u64, Failure> {
        let data = postcard::to_allocvec(cmd).map_err(|e| internal("cannot encode", e))?;
        let id = self.next_proposal;
        self.next_proposal += 1;
        self.node
            .propose(context(self.id(), id), data)
            .map_err(|e| internal("this coordinator cannot take changes now", e))?;
        Ok(id)
    }

    /// Proposes a membership change (one at a time, as raft requires).
    pub fn propose_membership(&mut self, change: Membership) -> Result<u64, Failure> {
        let mut cc = ConfChange::default();
        match change {
            Membership::Add { id, addr } => {
                cc.set_change_type(ConfChangeType::AddNode);
                cc.node_id = id;
                cc.context = addr.into_bytes().into();
            }
            Membership::Remove(id) => {
                cc.set_change_type(ConfChangeType::RemoveNode);
                cc.node_id = id;
            }
        }
        let id = self.next_proposal;
        self.next_proposal += 1;
        self.node
            .propose_conf_change(context(self.id(), id), cc)
            .map_err(|e| {
                (
                    ReturnCode::AdminServerError,
                    format!("another membership change is in progress; try again ({e})"),
                )
            })?;
        Ok(id)
    }

    /// Starts confirming that this coordinator still leads (a round of heartbeats a majority
    /// answers); it is done when [`Advanced::confirmed`] has the returned id.
    pub fn confirm(&mut self) -> u64 {
        let id = self.next_read;
        self.next_read += 1;
        self.node.read_index(id.to_be_bytes().to_vec());
        id
    }

    /// One round of raft's `Ready` (see the module docs). An error means the store failed:
    /// the coordinator must stop, since it may have promised what it did not keep.
    pub async fn advance(&mut self, cluster: &mut Cluster) -> Result<Advanced, Failure> {
        let mut out = Advanced::default();
        if !self.node.has_ready() {
            return Ok(out);
        }
        let mut ready = self.node.ready();
        self.send(cluster, ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snap = ready.snapshot().clone();
            *cluster = postcard::from_bytes(&snap.data)
                .map_err(|e| internal("the leader's snapshot is unreadable", e))?;
            self.conf = snap.get_metadata().get_conf_state().clone();
            self.applied = snap.get_metadata().index;
            self.node.mut_store().install(self.store.as_mut(), snap);
        }
        self.apply(cluster, ready.take_committed_entries(), &mut out);
        if !ready.entries().is_empty() {
            self.node
                .mut_store()
                .append(self.store.as_mut(), ready.entries());
        }
        if let Some(hs) = ready.hs() {
            self.node
                .mut_store()
                .set_hard_state(self.store.as_mut(), hs.clone());
        }
        for rs in ready.take_read_states() {
            if let Ok(b) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) {
                out.confirmed.push((u64::from_be_bytes(b), rs.index));
            }
        }
        self.sync().await?;
        self.send(cluster, ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.node
                .mut_store()
                .set_commit(self.store.as_mut(), commit);
        }
        self.send(cluster, light.take_messages());
        self.apply(cluster, light.take_committed_entries(), &mut out);
        self.node.advance_apply();
        self.compact(cluster);
        Ok(out)
    }

    async fn sync(&mut self) -> Result<(), Failure> {
        self.rounds += 1;
        if planted(Bug::CoordinatorEarlyAnswer) && !self.rounds.is_multiple_of(4) {
            // The planted bug: votes and entries are promised while only staged.
            return Ok(());
        }
        rt::disk_pause().await;
        self.store
            .sync()
            .map_err(|e| internal("cannot persist the replicated log", e))?;
        rt::disk_pause().await;
        Ok(())
    }

    fn send(&mut self, cluster: &Cluster, msgs: Vec<RaftMessage>) {
        for m in msgs {
            let to = m.to;
            let addr = cluster
                .config
                .coordinators
                .get(&to)
                .or_else(|| self.learned.get(&to));
            let (Some(addr), Ok(bytes)) = (addr, m.write_to_bytes()) else {
                tracing::debug!(to, "no address for a coordinator");
                continue;
            };
            self.peers.send(to, addr, bytes);
        }
    }

    fn apply(&mut self, cluster: &mut Cluster, entries: Vec<Entry>, out: &mut Advanced) {
        for e in entries {
            self.applied = e.index;
            let result = match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => continue,
                EntryType::EntryNormal => match postcard::from_bytes::<Command>(&e.data) {
                    Ok(cmd) => apply_checked(cluster, &cmd),
                    Err(err) => Err(internal("an undecodable change in the log", err)),
                },
                EntryType::EntryConfChange => self.apply_membership(cluster, &e.data),
                EntryType::EntryConfChangeV2 => Err(internal("unsupported", "joint consensus")),
            };
            if let Some((node, proposal)) = proposer(&e.context) {
                if node == self.id() {
                    out.done.push((proposal, result));
                }
            }
        }
    }

    fn apply_membership(&mut self, cluster: &mut Cluster, data: &[u8]) -> Result<Outcome, Failure> {
        let cc = ConfChange::parse_from_bytes(data)
            .map_err(|e| internal("an undecodable membership change", e))?;
        self.conf = self
            .node
            .apply_conf_change(&cc)
            .map_err(|e| internal("membership change refused", e))?;
        let cmd = match cc.get_change_type() {
            ConfChangeType::RemoveNode => Command::RmCoordinator(cc.node_id),
            _ => Command::AddCoordinator {
                id: cc.node_id,
                addr: String::from_utf8_lossy(&cc.context).into_owned(),
            },
        };
        let voters = self.conf.voters.clone();
        self.peers.retain(|id| voters.contains(&id));
        self.snapshot_due = true;
        apply_checked(cluster, &cmd)
    }

    /// Makes the applied state the snapshot once enough entries follow the last one.
    fn compact(&mut self, cluster: &Cluster) {
        let store = self.node.store();
        let since = store.snapshot_ref().get_metadata().index;
        if self.applied < since + COMPACT_EVERY && !self.snapshot_due {
            return;
        }
        self.snapshot_due = false;
        let Ok(term) = raft::Storage::term(store, self.applied) else {
            return;
        };
        let snap = snapshot_of(cluster, self.applied, term, self.conf.clone());
        self.node.mut_store().compact(self.store.as_mut(), snap);
    }
}
