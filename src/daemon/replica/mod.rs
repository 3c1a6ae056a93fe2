//! Chain replication for one daemon, as a state machine without I/O.
//!
//! [`Replica::step`] takes one [`Input`] (a client request, a chain message, a new
//! configuration, a renewed lease, a peer that reconnected, a tick) with the current time,
//! reads and stages writes in the [`Store`], and returns [`Output`]s (replies to clients,
//! messages to peers). The actor around it (`daemon::actor`) runs a batch of inputs, **syncs
//! the store once, and only then** delivers the outputs; so every acknowledgement and every
//! reply leaves this daemon after the state it vouches for is on disk (group commit). Every
//! safety decision is made here; the async code around it only moves bytes.
//!
//! ## The protocol (see PROTOCOL.md)
//! - **Head** (first server of the key's region chain): orders operations per key. For a write
//!   it computes the new object with the model's `apply` against the latest state *including
//!   writes still in flight*, gives it version `latest + 1`, keeps it pending and sends a
//!   [`ChainWrite`] to its successor. It replies to the client when the [`ChainAck`](crate::protocol::ChainAck) for that
//!   version comes back, i.e. when every replica has the write durably. A write that fails
//!   (CMPFAIL, NOTFOUND...) changes nothing, but its reply waits until every earlier pending
//!   write of the key is acknowledged, because it observed them.
//! - **Middle** servers keep received writes pending and forward them; on the ack they store
//!   the acknowledged version and pass the ack up.
//! - **Tail**: stores each write durably, then acknowledges it.
//! - **Pending writes are durable on arrival** (`durable`): head and middle servers keep each
//!   pending write on disk from the sync of the batch it arrived in, which overlaps the
//!   successors' syncs, so the acknowledgement (at the head: the reply) that commits it may
//!   leave before the commit itself is synced. A restarted server commits what it kept.
//! - **Reads** go to the head and return the latest acknowledged (stored) version, never a
//!   pending one. A read that returns the stored version while a write is pending linearizes
//!   before that write, whose client has not been answered yet.
//! - **Exactly once**: each write carries `(client, seq)` and its reply; the head answers a
//!   retry from the record stored with the object, or joins it to the same pending write.
//! - **Configurations and leases** (the stale-configuration rule, all of it here): a server
//!   answers a client only if the client's configuration version equals its own (else
//!   RECONFIGURE) and it holds a lease on that version: the coordinator answered a heartbeat,
//!   sent less than the lease length ago, while it had this same version (else OFFLINE). The
//!   coordinator declares a server failed only after a longer failure timeout, so a head cut
//!   off from the coordinator stops answering before another head can be chosen; and since a
//!   lease covers one version only, a server stops answering as soon as the coordinator has
//!   moved on, before it has even installed the new configuration. Chain messages of another
//!   version are not acted on: older ones are dropped (their sender resends what is pending
//!   once it has our version), newer ones are kept until we have that version.
//! - **Reconfiguration**: when a new configuration is installed, each server resends its
//!   pending writes to its (possibly new) successor; a server that became the tail stores its
//!   pending writes and acknowledges them; pending writes of regions this server left are
//!   dropped and their clients told RECONFIGURE (the write survives downstream if it got
//!   there, and the retry finds it). When a connection to a peer is re-established, pending
//!   writes for which that peer is the successor are resent; receivers ignore versions they
//!   already have and re-acknowledge. State transfer to joiners is `daemon::transfer`.
//!
//! Files: this one (inputs, outputs, leases, reconfiguration), `head` (locating a key,
//! reads, ordering writes), `chain` (chain writes, acknowledgements, commits).

pub mod cached;
mod chain;
pub mod durable;
mod head;
mod held;
mod settle;
mod subspace;

pub use subspace::load_entry;
pub(crate) use subspace::stage_entry;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hyperdex_model::{Reply, ReturnCode};

use crate::bugs::{planted, Bug};
use crate::config::{Config, Joiner, RegionId, ServerId, Timing};
use crate::daemon::index::{Builds, Indexed, Specs};
use crate::protocol::{
    ChainMessage, ChainWrite, ClientResponse, OpRequest, SearchRequest, SubspaceUpdate,
};
use crate::rt::Instant;
use crate::storage::{Store, StoreError, Table};

use super::search;
use super::transfer::{Effect, Transfers, TRANSFER_WINDOW};
use subspace::{send_again, Old};

/// The coordinator answered a heartbeat that was sent at `sent`, when it had configuration
/// `config_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub sent: Instant,
    pub config_version: u64,
}

/// What the state machine is fed.
#[derive(Debug)]
pub enum Input<W> {
    /// A single-key operation from a client; `waiter` identifies where to reply, `unix` is
    /// the time it arrived (seconds since the Unix epoch, for macaroons' time caveats).
    Op {
        waiter: W,
        req: OpRequest,
        unix: u64,
    },
    Search {
        waiter: W,
        req: SearchRequest,
    },
    /// A message from another daemon, `from` as its connection introduced it.
    Chain {
        from: ServerId,
        msg: ChainMessage,
    },
    Config(Config),
    Lease(Lease),
    /// The connection to this peer was (re-)established.
    PeerUp(ServerId),
    /// Periodic: resend pending writes and transfer windows (a lost message must not stall a
    /// chain).
    Tick,
}

/// What the state machine asks the server to do, after syncing the store.
#[derive(Debug, PartialEq)]
pub enum Output<W> {
    Reply(W, ClientResponse),
    /// A reply to a read of the object stored under `key` (an object key): it may leave
    /// before the batch's sync when no write to that key is waiting for one. With the object
    /// read, when it may be cached for reads answered without the actor (see [`cached`]).
    Read(W, ClientResponse, Vec<u8>, Option<Arc<cached::Cached>>),
    Send(ServerId, ChainMessage),
    /// Someone has a newer configuration than ours: fetch it now.
    FetchConfig,
    /// This server has every object of a region it joins: tell the coordinator.
    TransferDone(RegionId, u64),
    /// An acknowledgement or reply that vouches only for writes this server keeps pending on
    /// disk (these [`Table::Pending`] keys) and its successors acknowledged: it may leave as
    /// soon as those keys' records are durable, before the sync of the commit that produced
    /// it (see [`durable`]).
    Durable(Box<Output<W>>, Vec<Vec<u8>>),
}

#[derive(Debug)]
struct Pending<W> {
    write: ChainWrite,
    waiters: Vec<W>,
    /// Replies to failed operations that observed this write; sent when it is acknowledged.
    deferred: Vec<(W, Reply)>,
    /// At the end of the key chain, in a space with subspaces: the updates of other
    /// subspaces' regions not yet done (`subspace`). `None` elsewhere.
    awaiting: Option<Vec<SubspaceUpdate>>,
    /// When the tick sends it (and its updates) again, if the key's oldest pending write.
    backoff: Backoff,
}

impl<W> Pending<W> {
    /// A write held pending with no client waiting on it here.
    fn unwaited(write: ChainWrite, awaiting: Option<Vec<SubspaceUpdate>>) -> Pending<W> {
        Pending {
            write,
            waiters: Vec::new(),
            deferred: Vec::new(),
            awaiting,
            backoff: Backoff::default(),
        }
    }
}

/// Ticks a key's pending writes stay quiet between two resends, at most (resends are then
/// 5 ticks apart, 2.5 s at the default heartbeat). A resend is not free: every member it reaches loads the key, and a subspace
/// member stores its entry again; resending every tick whatever the chain's latency, a
/// loaded chain whose writes took longer than a tick spent its time on copies, took longer
/// still, and collapsed (92 puts/s instead of 491 after 60,000 puts with two subspaces).
pub const RESEND_QUIET_MAX: u8 = 4;

/// How many ticks a key's pending writes wait before the tick resends them: one tick after
/// they were first sent, then twice as long after each resend, up to [`RESEND_QUIET_MAX`].
/// A new configuration or a peer reconnecting resends at once, whatever this says.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    /// Ticks still to wait.
    quiet: u8,
    /// Ticks waited after the last resend.
    interval: u8,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            quiet: 1,
            interval: 1,
        }
    }
}

impl Backoff {
    /// A tick: whether to resend now (and wait longer before the next).
    fn due(&mut self) -> bool {
        if self.quiet > 0 {
            self.quiet -= 1;
            return false;
        }
        self.interval = (self.interval * 2).min(RESEND_QUIET_MAX);
        self.quiet = self.interval;
        true
    }
}

type PendingWrites<W> = BTreeMap<u64, Pending<W>>;
type Outputs<W> = Vec<Output<W>>;

/// One daemon's replication state.
pub struct Replica<W> {
    me: ServerId,
    config: Arc<Config>,
    /// In-flight writes per (region, key), by version.
    pending: BTreeMap<(RegionId, Vec<u8>), PendingWrites<W>>,
    /// Chain messages stamped with a configuration newer than ours, replayed once we have it.
    early: Vec<(ServerId, ChainMessage)>,
    transfers: Transfers,
    lease: Option<Lease>,
    lease_length: Duration,
    /// Regions this server came to head by a failover (kept only for a planted bug).
    promoted: std::collections::BTreeSet<RegionId>,
    /// The indexes of the current configuration, and those being built.
    indexes: Arc<Specs>,
    builds: Builds,
    /// Records of committed pending writes, deleted a tick later.
    forget: durable::Forget,
    /// Keys of subspace regions with values kept for searches in progress (`settle`).
    settling: settle::Settling,
    /// Where the sweep of the subspace table for such keys has reached.
    sweep: Option<Vec<u8>>,
    /// The time of the input being taken.
    now: Instant,
}

fn reply(r: Reply) -> ClientResponse {
    ClientResponse::Reply(r)
}

fn reconfigure(why: String) -> ClientResponse {
    reply(Reply::Error(ReturnCode::Reconfigure, why))
}

/// Whether a pending write carries the request `(client, seq)`.
fn carries(p: &Pending<impl Sized>, client: u64, seq: u64) -> bool {
    p.write
        .dedupe
        .as_ref()
        .is_some_and(|d| d.client == client && d.seq == seq)
}

impl<W: Clone> Replica<W> {
    pub fn new(me: ServerId, config: Config) -> Replica<W> {
        Replica {
            me,
            indexes: Arc::new(Specs::of(&config)),
            config: Arc::new(config),
            pending: BTreeMap::new(),
            early: Vec::new(),
            transfers: Transfers::new(me, TRANSFER_WINDOW),
            lease: None,
            lease_length: Timing::default().lease,
            promoted: Default::default(),
            builds: Default::default(),
            forget: Default::default(),
            settling: Default::default(),
            sweep: None,
            now: crate::rt::now(),
        }
    }

    /// Sets the most objects per transfer window (small windows exercise resumption) and
    /// the bytes per second transfer windows may use (0: unlimited).
    pub fn with_transfers(mut self, objects: usize, bytes_per_sec: u64) -> Self {
        self.transfers = Transfers::new(self.me, objects).with_rate(bytes_per_sec);
        self
    }

    /// Sets how long an answered heartbeat lets this server answer clients.
    pub fn with_lease(mut self, length: Duration) -> Self {
        self.lease_length = length;
        self
    }

    /// How far this server's joins are.
    pub fn joining(&self) -> Vec<crate::protocol::coordinator::JoinProgress> {
        self.transfers.joining(&self.config)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of writes in flight through this server.
    pub fn pending_writes(&self) -> usize {
        self.pending.values().map(BTreeMap::len).sum()
    }

    /// Takes one input at time `now`; what to deliver once the store is synced.
    pub fn step(
        &mut self,
        store: &mut dyn Store,
        now: Instant,
        input: Input<W>,
    ) -> Result<Outputs<W>, StoreError> {
        // Every object written below keeps its index entries in step: the indexes of the
        // configuration in force when it is written (a new one is installed first).
        if let Input::Config(c) = &input {
            if c.version > self.config.version {
                self.indexes = Arc::new(Specs::of(c));
            }
        }
        let mut indexed = Indexed::new(store, self.indexes.clone());
        let store: &mut dyn Store = &mut indexed;
        let mut out = Vec::new();
        self.now = now;
        self.transfers.advance(now);
        match input {
            Input::Op { waiter, req, unix } => {
                self.on_op(store, (now, unix), waiter, req, &mut out)?
            }
            Input::Search { waiter, req } => {
                let admitted = if planted(Bug::SearchWithoutLease) {
                    Ok(())
                } else {
                    self.admit(now, req.config_version, &mut out)
                };
                let admitted = match admitted {
                    Ok(()) => self.search_held(store, &req)?,
                    refused => refused,
                };
                let answer = match admitted {
                    Ok(()) => search::run(store, &self.config, self.me, &req)?,
                    Err(refusal) => {
                        crate::probe!("replica.search_refused");
                        refusal
                    }
                };
                out.push(Output::Reply(waiter, answer));
            }
            Input::Chain { from, msg } => self.on_chain(store, from, msg, &mut out)?,
            Input::Config(c) => self.on_config(store, c, &mut out)?,
            Input::Lease(lease) => {
                if self.lease.is_none_or(|l| l.sent <= lease.sent) {
                    self.lease = Some(lease);
                }
            }
            Input::PeerUp(peer) => {
                self.resend(Some(peer), &mut out);
                let effects = self.transfers.peer_up(store, &self.config, peer)?;
                push_effects(effects, &mut out);
            }
            Input::Tick => {
                self.forget.tick(store);
                self.builds.step(store, &self.indexes)?;
                self.resend_due(&mut out);
                self.settle_tick(store, now, &mut out)?;
                let effects = self.transfers.tick(store, &self.config)?;
                push_effects(effects, &mut out);
            }
        }
        self.loopback(store, &mut out)?;
        self.attach_held(store, &mut out)?;
        Ok(out)
    }

    /// Messages to this server itself (it may serve a key's region and a subspace region the
    /// key's writes update) are taken in at once, in the same batch.
    fn loopback(&mut self, store: &mut dyn Store, out: &mut Outputs<W>) -> Result<(), StoreError> {
        let me = self.me;
        let to_me = |o: &Output<W>| matches!(o, Output::Send(to, _) if *to == me);
        while out.iter().any(to_me) {
            let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(out).into_iter().partition(to_me);
            *out = rest;
            for o in mine {
                if let Output::Send(_, msg) = o {
                    self.on_chain(store, me, msg, out)?;
                }
            }
        }
        Ok(())
    }

    /// Whether this server holds a lease on its current configuration at `now`.
    pub fn leased(&self, now: Instant) -> bool {
        cached::lease_holds(self.lease, self.config.version, self.lease_length, now)
    }

    /// What reads answered without the actor decide by (see [`cached`]).
    pub fn view(&self) -> cached::View {
        cached::View {
            me: self.me,
            config: self.config.clone(),
            lease: self.lease,
            lease_length: self.lease_length,
        }
    }

    /// Whether a client request stamped with configuration `theirs` may be answered now; the
    /// refusal to send otherwise (see the module docs).
    fn admit(&self, now: Instant, theirs: u64, out: &mut Outputs<W>) -> Result<(), ClientResponse> {
        if planted(Bug::StaleConfig) {
            return Ok(());
        }
        if !self.leased(now) {
            crate::probe!("replica.no_lease_refused");
            return Err(reply(Reply::Error(
                ReturnCode::Offline,
                format!("server {} has lost contact with the coordinator", self.me),
            )));
        }
        let mine = self.config.version;
        if theirs == mine {
            return Ok(());
        }
        if theirs > mine {
            out.push(Output::FetchConfig);
        }
        crate::probe!("replica.stale_config_refused");
        Err(reconfigure(format!(
            "the request carries configuration {theirs}, the server has {mine}"
        )))
    }

    /// Refuses (for now: the client asks again) a search of key regions one of which shows
    /// a held write (see `held`).
    fn search_held(
        &self,
        store: &dyn Store,
        req: &SearchRequest,
    ) -> Result<Result<(), ClientResponse>, StoreError> {
        Ok(match self.region_showing_held(store, req)? {
            Some(region) => {
                crate::probe!("replica.search_waits_for_held");
                Err(reconfigure(format!(
                    "region {region} shows a write from before a restart that the regions of \
                     its space's other subspaces do not hold yet"
                )))
            }
            None => Ok(()),
        })
    }

    fn position(&self, region: RegionId) -> Option<(usize, &[ServerId])> {
        let chain = self.config.chain(region);
        chain.iter().position(|&m| m == self.me).map(|p| (p, chain))
    }

    fn on_config(
        &mut self,
        store: &mut dyn Store,
        config: Config,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        if config.version <= self.config.version {
            return Ok(());
        }
        let old = std::mem::replace(&mut self.config, Arc::new(config));
        if old.version == 0 {
            // The first configuration since this server started: what a previous life held
            // pending on disk is committed first (see `durable`).
            crate::daemon::index::subspace::ensure_built(store, &self.config)?;
            let promoted = durable::promote(store, &self.config)?;
            for w in promoted.held {
                // Its old object is gone (the promotion stored the write over it): as the
                // tail, it tells every other region of each subspace that it is not there.
                let updates = self.updates_of(&w, Old::Unknown);
                let slot = (w.region, w.key.clone());
                let pend = self.pending.entry(slot).or_default();
                pend.insert(w.version, Pending::unwaited(w, Some(updates)));
            }
        }
        if planted(Bug::StallReads) {
            for (region, pos) in self.config.regions_of(self.me) {
                if pos == 0 && old.chain(region).iter().skip(1).any(|m| *m == self.me) {
                    self.promoted.insert(region);
                }
            }
        }
        // Data of removed spaces goes (their index entries with it).
        for s in old.spaces.values() {
            if self.config.space_by_id(s.id).is_none() {
                store.delete_prefix(Table::Objects, &s.id.0.to_be_bytes());
                store.delete_prefix(Table::Pending, &s.id.0.to_be_bytes());
                store.delete_prefix(Table::Subspace, &s.id.0.to_be_bytes());
                store.delete_prefix(Table::Records, &s.id.0.to_be_bytes());
            }
        }
        self.builds.reconcile(store, &self.indexes)?;
        let slots: Vec<(RegionId, Vec<u8>)> = self.pending.keys().cloned().collect();
        for (region, key) in slots {
            self.reconfigure_pending(store, &old, region, key, out)?;
        }
        let config = self.config.clone();
        push_effects(self.transfers.on_config(store, &old, &config)?, out);
        self.resend_updates(None, out);
        for (from, msg) in std::mem::take(&mut self.early) {
            self.on_chain(store, from, msg, out)?;
        }
        Ok(())
    }

    /// What becomes of a key's pending writes in the new configuration.
    fn reconfigure_pending(
        &mut self,
        store: &mut dyn Store,
        old: &Config,
        region: RegionId,
        key: Vec<u8>,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        // A server that has just become the joiner of a region it served (removed and added
        // again in one step) lost its old role: what it had in flight belongs to the chain it
        // left, not to a copy that is about to be rebuilt.
        let mine = self.config.joiner(region).filter(|j| j.server == self.me);
        let rejoining =
            mine.is_some() && old.joiner(region).map(Joiner::id) != mine.map(Joiner::id);
        let position = self
            .position(region)
            .filter(|_| !rejoining)
            .map(|(p, c)| (p, c.to_vec()));
        let slot = (region, key);
        match position {
            None => {
                // We left this chain: clients retry elsewhere.
                crate::probe!("replica.left_chain_with_pending");
                for p in self
                    .pending
                    .remove(&slot)
                    .into_iter()
                    .flat_map(BTreeMap::into_values)
                {
                    durable::drop_now(store, &p.write);
                    let waiters = p
                        .waiters
                        .into_iter()
                        .chain(p.deferred.into_iter().map(|(w, _)| w));
                    for w in waiters {
                        out.push(Output::Reply(
                            w,
                            reconfigure("the region moved to other servers".into()),
                        ));
                    }
                }
            }
            Some((pos, chain)) if pos + 1 == chain.len() => {
                // We are the tail now: everything pending is stored and acknowledged, once
                // the regions of other subspaces hold it.
                crate::probe!("replica.became_tail_with_pending");
                self.hold_for_subspaces(store, region, &slot.1)?;
                self.commit_done(store, region, &slot.1, out)?;
            }
            Some((pos, chain)) => {
                crate::probe!("replica.pending_resent_after_reconfigure");
                let version = self.config.version;
                for p in self
                    .pending
                    .get_mut(&slot)
                    .into_iter()
                    .flat_map(|p| p.values_mut())
                {
                    // The new tail updates the other subspaces' regions.
                    p.awaiting = None;
                    p.write.config_version = version;
                    out.push(Output::Send(
                        chain[pos + 1],
                        ChainMessage::Write(p.write.clone()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// On a tick: resends the pending writes of each key whose oldest pending write's
    /// [`Backoff`] is due, in order, to their successor, and their subspace updates not yet
    /// done to those regions' heads.
    fn resend_due(&mut self, out: &mut Outputs<W>) {
        for ((region, _), pend) in &mut self.pending {
            if !pend.values_mut().next().is_some_and(|p| p.backoff.due()) {
                continue;
            }
            crate::probe!("chain.resent");
            let succ = successor(&self.config, *region, self.me);
            for p in pend.values() {
                if let Some(peer) = succ {
                    out.push(Output::Send(peer, ChainMessage::Write(p.write.clone())));
                }
                send_again(&self.config, p.awaiting.iter().flatten(), out);
            }
        }
    }

    /// Resends pending writes to their successor (only those whose successor is `only`, if
    /// given). Receivers ignore versions they have and acknowledge again.
    fn resend(&mut self, only: Option<ServerId>, out: &mut Outputs<W>) {
        self.resend_updates(only, out);
        for ((region, _), pend) in &self.pending {
            let Some(peer) = successor(&self.config, *region, self.me) else {
                continue;
            };
            if only.is_none_or(|o| o == peer) {
                for p in pend.values() {
                    out.push(Output::Send(peer, ChainMessage::Write(p.write.clone())));
                }
            }
        }
    }
}

/// `me`'s successor in `region`'s chain.
fn successor(config: &Config, region: RegionId, me: ServerId) -> Option<ServerId> {
    let chain = config.chain(region);
    let pos = chain.iter().position(|&m| m == me)?;
    chain.get(pos + 1).copied()
}

/// `o`, leaving as soon as the pending records `kept` are durable (as it does after the
/// batch's sync when there are none).
fn vouched<W>(o: Output<W>, kept: Vec<Vec<u8>>) -> Output<W> {
    if kept.is_empty() {
        o
    } else {
        Output::Durable(Box::new(o), kept)
    }
}

fn push_effects<W>(effects: Vec<Effect>, out: &mut Outputs<W>) {
    out.extend(effects.into_iter().map(|e| match e {
        Effect::Send(to, msg) => Output::Send(to, msg),
        Effect::Done(region, since) => Output::TransferDone(region, since),
    }));
}
#[cfg(test)]
mod subspace_tests;
#[cfg(test)]
mod tests;
