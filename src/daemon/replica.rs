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
//!   [`ChainWrite`] to its successor. It replies to the client when the [`ChainAck`] for that
//!   version comes back, i.e. when every replica has the write durably. A write that fails
//!   (CMPFAIL, NOTFOUND...) changes nothing, but its reply waits until every earlier pending
//!   write of the key is acknowledged, because it observed them.
//! - **Middle** servers keep received writes pending and forward them; on the ack they store
//!   the acknowledged version durably and pass the ack up.
//! - **Tail**: stores each write durably, then acknowledges it.
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

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hyperdex_model::db::step_key;
use hyperdex_model::{Operation, Reply, ReturnCode};

use crate::bugs::{planted, Bug};
use crate::config::{key_bytes, Config, Joiner, RegionId, ServerId, SpaceConfig, Timing};
use crate::limits::EARLY_MESSAGES;
use crate::protocol::{
    ChainAck, ChainMessage, ChainWrite, ClientResponse, Dedupe, OpRequest, SearchRequest,
};
use crate::rt::Instant;
use crate::storage::{Store, StoreError, Table};

use super::record::{absorb, add_record, load, stage, StoredObject};
use super::search;
use super::transfer::{Effect, Transfers, TRANSFER_WINDOW};

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
    /// A single-key operation from a client; `waiter` identifies where to reply.
    Op {
        waiter: W,
        req: OpRequest,
    },
    Search {
        waiter: W,
        req: SearchRequest,
    },
    /// A message from another daemon.
    Chain(ChainMessage),
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
    Send(ServerId, ChainMessage),
    /// Someone has a newer configuration than ours: fetch it now.
    FetchConfig,
    /// This server has every object of a region it joins: tell the coordinator.
    TransferDone(RegionId, u64),
}

#[derive(Debug)]
struct Pending<W> {
    write: ChainWrite,
    waiters: Vec<W>,
    /// Replies to failed operations that observed this write; sent when it is acknowledged.
    deferred: Vec<(W, Reply)>,
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
    early: Vec<ChainMessage>,
    transfers: Transfers,
    lease: Option<Lease>,
    lease_length: Duration,
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
            config: Arc::new(config),
            pending: BTreeMap::new(),
            early: Vec::new(),
            transfers: Transfers::new(me, TRANSFER_WINDOW),
            lease: None,
            lease_length: Timing::default().lease,
        }
    }

    /// Sets the most objects per transfer window (small windows exercise resumption).
    pub fn with_transfer_window(mut self, objects: usize) -> Self {
        self.transfers = Transfers::new(self.me, objects);
        self
    }

    /// Sets how long an answered heartbeat lets this server answer clients.
    pub fn with_lease(mut self, length: Duration) -> Self {
        self.lease_length = length;
        self
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
        let mut out = Vec::new();
        match input {
            Input::Op { waiter, req } => self.on_op(store, now, waiter, req, &mut out)?,
            Input::Search { waiter, req } => {
                let answer = match self.admit(now, req.config_version, &mut out) {
                    Ok(()) => search::run(store, &self.config, self.me, &req)?,
                    Err(refusal) => refusal,
                };
                out.push(Output::Reply(waiter, answer));
            }
            Input::Chain(msg) => self.on_chain(store, msg, &mut out)?,
            Input::Config(c) => self.on_config(store, c, &mut out)?,
            Input::Lease(lease) => {
                if self.lease.is_none_or(|l| l.sent <= lease.sent) {
                    self.lease = Some(lease);
                }
            }
            Input::PeerUp(peer) => {
                self.resend(Some(peer), &mut out);
                let effects = self
                    .transfers
                    .send_windows(store, &self.config, Some(peer))?;
                push_effects(effects, &mut out);
            }
            Input::Tick => {
                self.resend(None, &mut out);
                let effects = self.transfers.tick(store, &self.config)?;
                push_effects(effects, &mut out);
            }
        }
        Ok(out)
    }

    /// Whether this server holds a lease on its current configuration at `now`.
    pub fn leased(&self, now: Instant) -> bool {
        self.lease.is_some_and(|l| {
            l.config_version == self.config.version
                && now.saturating_duration_since(l.sent) < self.lease_length
        })
    }

    /// Whether a client request stamped with configuration `theirs` may be answered now; the
    /// refusal to send otherwise (see the module docs).
    fn admit(&self, now: Instant, theirs: u64, out: &mut Outputs<W>) -> Result<(), ClientResponse> {
        if planted(Bug::StaleConfig) {
            return Ok(());
        }
        if !self.leased(now) {
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
        Err(reconfigure(format!(
            "the request carries configuration {theirs}, the server has {mine}"
        )))
    }

    fn position(&self, region: RegionId) -> Option<(usize, &[ServerId])> {
        let chain = self.config.chain(region);
        chain.iter().position(|&m| m == self.me).map(|p| (p, chain))
    }

    /// The space, region and key bytes of a single-key operation this server heads.
    fn locate(&self, op: &Operation) -> Result<(Arc<Config>, RegionId, Vec<u8>), ClientResponse> {
        let config = self.config.clone();
        let (Some(space_name), Some(key)) = (op.space(), op.key()) else {
            return Err(reply(Reply::Error(
                ReturnCode::Internal,
                "only single-key operations are sent to a daemon".into(),
            )));
        };
        let Some(space) = config.space(space_name) else {
            return Err(reply(Reply::Error(
                ReturnCode::UnknownSpace,
                format!("unknown space \"{space_name}\""),
            )));
        };
        let Some(kb) = key_bytes(&space.schema, key) else {
            return Err(reply(Reply::Error(
                ReturnCode::WrongType,
                format!(
                    "key: expected {}, found {}",
                    space.schema.key.datatype,
                    key.kind()
                ),
            )));
        };
        let region = space.region_of_bytes(&kb);
        if config.chain(region).first() != Some(&self.me) {
            return Err(reconfigure(format!(
                "server {} is not the head of region {region}",
                self.me
            )));
        }
        Ok((config, region, kb))
    }

    fn on_op(
        &mut self,
        store: &mut dyn Store,
        now: Instant,
        waiter: W,
        req: OpRequest,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        let located = self
            .admit(now, req.config_version, out)
            .and_then(|()| self.locate(&req.op));
        let (config, region, kb) = match located {
            Ok(l) => l,
            Err(refusal) => {
                out.push(Output::Reply(waiter, refusal));
                return Ok(());
            }
        };
        let Some(space) = config.space(req.op.space().unwrap_or_default()) else {
            return Ok(());
        };
        let stored = load(store, region, &kb)?;
        if !req.op.is_mutation() {
            let pending = self.pending.get(&(region, kb));
            let answer = read(space, &stored, pending, &req.op);
            out.push(Output::Reply(waiter, reply(answer)));
            return Ok(());
        }
        let ordered = Ordered {
            space,
            region,
            key: kb,
            stored,
        };
        self.order_write(store, waiter, &req, ordered, out);
        Ok(())
    }

    /// The head orders a write: joins a retry to its pending copy, answers it from its
    /// record, or computes the new object and sends it down the chain.
    fn order_write(
        &mut self,
        store: &mut dyn Store,
        waiter: W,
        req: &OpRequest,
        o: Ordered<'_>,
        out: &mut Outputs<W>,
    ) {
        let slot = (o.region, o.key.clone());
        if let Some(p) = self
            .pending
            .get_mut(&slot)
            .and_then(|pend| pend.values_mut().find(|p| carries(p, req.client, req.seq)))
        {
            // A retry of a write still in flight joins it.
            p.waiters.push(waiter);
            return;
        }
        if let Some(d) = o
            .stored
            .dedupe
            .iter()
            .find(|d| d.client == req.client && d.seq == req.seq)
        {
            tracing::debug!(server = self.me.0, region = %o.region, client = req.client, seq = req.seq, "retry answered from the record");
            out.push(Output::Reply(waiter, reply(d.reply.clone())));
            return;
        }
        let latest_pending = self
            .pending
            .get_mut(&slot)
            .and_then(|p| p.values_mut().next_back());
        let (latest_version, latest) = match &latest_pending {
            Some(p) => (p.write.version, p.write.object.as_ref()),
            None => (o.stored.version, o.stored.object.as_ref()),
        };
        let (answer, change) = step_key(&o.space.schema, latest, &req.op);
        let Some(new) = change else {
            tracing::debug!(
                server = self.me.0, region = %o.region, client = req.client, seq = req.seq,
                reply = ?answer, stored = o.stored.version, "write changes nothing"
            );
            match latest_pending {
                Some(p) => p.deferred.push((waiter, answer)),
                None => out.push(Output::Reply(waiter, reply(answer))),
            }
            return;
        };
        let write = ChainWrite {
            config_version: self.config.version,
            region: o.region,
            key: o.key,
            version: latest_version + 1,
            object: new,
            dedupe: Some(Dedupe {
                client: req.client,
                seq: req.seq,
                low_seq: req.low_seq,
                reply: answer.clone(),
            }),
        };
        tracing::debug!(
            server = self.me.0, region = %o.region, version = write.version, client = req.client,
            seq = req.seq, reply = ?answer, config = self.config.version, "head orders a write"
        );
        let chain = self.config.chain(o.region);
        let Some(&next) = chain.get(1) else {
            // Head and tail at once: durable after this batch's sync, then answered.
            let mut s = o.stored;
            absorb(&mut s, &write);
            stage(store, o.region, &write.key, &s);
            out.push(Output::Reply(waiter, reply(answer)));
            return;
        };
        out.push(Output::Send(next, ChainMessage::Write(write.clone())));
        let waiters = if planted(Bug::EarlyReply) {
            out.push(Output::Reply(waiter, reply(answer)));
            Vec::new()
        } else {
            vec![waiter]
        };
        let pending = Pending {
            write,
            waiters,
            deferred: Vec::new(),
        };
        self.pending
            .entry(slot)
            .or_default()
            .insert(pending.write.version, pending);
    }

    /// A chain message, if it belongs to our configuration. Messages from a newer one are
    /// kept until we have it (and we ask for it); older ones are dropped, since their sender
    /// resends everything pending when it installs the configuration we have.
    fn on_chain(
        &mut self,
        store: &mut dyn Store,
        msg: ChainMessage,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        let version = msg.config_version();
        if version > self.config.version {
            if self.early.len() < EARLY_MESSAGES {
                self.early.push(msg);
            }
            out.push(Output::FetchConfig);
            return Ok(());
        }
        if version < self.config.version {
            return Ok(());
        }
        match msg {
            ChainMessage::Write(w) => self.on_chain_write(store, w, out),
            ChainMessage::Ack(a) => self.on_chain_ack(store, a, out),
            ChainMessage::TransferData(t) => {
                let effects = self.transfers.on_data(store, &self.config, t)?;
                push_effects(effects, out);
                Ok(())
            }
            ChainMessage::TransferAck(a) => {
                let effects = self.transfers.on_ack(store, &self.config, a)?;
                push_effects(effects, out);
                Ok(())
            }
        }
    }

    fn on_chain_write(
        &mut self,
        store: &mut dyn Store,
        w: ChainWrite,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        let Some((pos, chain)) = self.position(w.region) else {
            return Ok(());
        };
        if pos == 0 {
            return Ok(());
        }
        let pred = chain[pos - 1];
        let succ = chain.get(pos + 1).copied();
        let mut stored = load(store, w.region, &w.key)?;
        tracing::debug!(
            server = self.me.0, region = %w.region, version = w.version, stored = stored.version,
            pos, tail = succ.is_none(), dedupe = ?w.dedupe.as_ref().map(|d| (d.client, d.seq)),
            "chain write"
        );
        if w.version <= stored.version {
            // Already held (a retransmission or a late write): keep its dedupe record so a
            // retry is answered, and acknowledge what is stored.
            if let Some(d) = &w.dedupe {
                if add_record(&mut stored, d) {
                    stage(store, w.region, &w.key, &stored);
                }
            }
            let ack = self.ack(&w.key, w.region, stored.version);
            out.push(Output::Send(pred, ChainMessage::Ack(ack)));
            return Ok(());
        }
        match succ {
            None => {
                absorb(&mut stored, &w);
                stage(store, w.region, &w.key, &stored);
                let ack = self.ack(&w.key, w.region, w.version);
                out.push(Output::Send(pred, ChainMessage::Ack(ack)));
            }
            Some(succ) => {
                let pend = self.pending.entry((w.region, w.key.clone())).or_default();
                if let Entry::Vacant(slot) = pend.entry(w.version) {
                    out.push(Output::Send(succ, ChainMessage::Write(w.clone())));
                    slot.insert(Pending {
                        write: w,
                        waiters: Vec::new(),
                        deferred: Vec::new(),
                    });
                }
            }
        }
        Ok(())
    }

    fn ack(&self, key: &[u8], region: RegionId, version: u64) -> ChainAck {
        ChainAck {
            config_version: self.config.version,
            region,
            key: key.to_vec(),
            version,
        }
    }

    fn on_chain_ack(
        &mut self,
        store: &mut dyn Store,
        a: ChainAck,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        let Some((pos, chain)) = self.position(a.region) else {
            return Ok(());
        };
        let pred = pos.checked_sub(1).map(|p| chain[p]);
        self.commit_through(store, a.region, &a.key, a.version, out)?;
        // Pass the ack on only if this server really holds the version durably: after a
        // restart it may have lost a write that its successor acknowledges, and the
        // predecessor's retransmission will bring it here again.
        if load(store, a.region, &a.key)?.version < a.version {
            return Ok(());
        }
        if let Some(pred) = pred {
            let ack = self.ack(&a.key, a.region, a.version);
            out.push(Output::Send(pred, ChainMessage::Ack(ack)));
        }
        Ok(())
    }

    /// Stores pending writes of `key` up to `version` and answers their clients (at the head).
    fn commit_through(
        &mut self,
        store: &mut dyn Store,
        region: RegionId,
        key: &[u8],
        version: u64,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        let slot = (region, key.to_vec());
        let Some(pend) = self.pending.get_mut(&slot) else {
            return Ok(());
        };
        let rest = pend.split_off(&(version + 1));
        let done = std::mem::replace(pend, rest);
        if pend.is_empty() {
            self.pending.remove(&slot);
        }
        if done.is_empty() {
            return Ok(());
        }
        let mut stored = load(store, region, key)?;
        for p in done.values() {
            if p.write.version > stored.version {
                absorb(&mut stored, &p.write);
            } else if let Some(d) = &p.write.dedupe {
                add_record(&mut stored, d);
            }
        }
        stage(store, region, key, &stored);
        for p in done.into_values() {
            let answer = p
                .write
                .dedupe
                .as_ref()
                .map(|d| d.reply.clone())
                .unwrap_or(Reply::Success);
            for w in p.waiters {
                out.push(Output::Reply(w, reply(answer.clone())));
            }
            for (w, r) in p.deferred {
                out.push(Output::Reply(w, reply(r)));
            }
        }
        Ok(())
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
        // Data of removed spaces goes.
        for s in old.spaces.values() {
            if self.config.space_by_id(s.id).is_none() {
                for (k, _) in store.scan_prefix(Table::Objects, &s.id.0.to_be_bytes())? {
                    store.put(Table::Objects, &k, None);
                }
            }
        }
        let slots: Vec<(RegionId, Vec<u8>)> = self.pending.keys().cloned().collect();
        for (region, key) in slots {
            self.reconfigure_pending(store, &old, region, key, out)?;
        }
        let config = self.config.clone();
        push_effects(self.transfers.on_config(store, &old, &config)?, out);
        for msg in std::mem::take(&mut self.early) {
            self.on_chain(store, msg, out)?;
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
                for p in self
                    .pending
                    .remove(&slot)
                    .into_iter()
                    .flat_map(BTreeMap::into_values)
                {
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
                // We are the tail now: everything pending is stored and acknowledged.
                let top = self.pending[&slot].keys().next_back().copied().unwrap_or(0);
                self.commit_through(store, region, &slot.1, top, out)?;
                if pos > 0 {
                    let ack = self.ack(&slot.1, region, top);
                    out.push(Output::Send(chain[pos - 1], ChainMessage::Ack(ack)));
                }
            }
            Some((pos, chain)) => {
                let version = self.config.version;
                for p in self
                    .pending
                    .get_mut(&slot)
                    .into_iter()
                    .flat_map(|p| p.values_mut())
                {
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

    /// Resends pending writes to their successor (only those whose successor is `only`, if
    /// given). Receivers ignore versions they have and acknowledge again.
    fn resend(&mut self, only: Option<ServerId>, out: &mut Outputs<W>) {
        for ((region, _), pend) in &self.pending {
            let chain = self.config.chain(*region);
            let succ = chain
                .iter()
                .position(|&m| m == self.me)
                .and_then(|p| chain.get(p + 1))
                .copied();
            let Some(peer) = succ else { continue };
            if only.is_none_or(|o| o == peer) {
                for p in pend.values() {
                    out.push(Output::Send(peer, ChainMessage::Write(p.write.clone())));
                }
            }
        }
    }
}

/// A write the head is ordering: where its object lives and what is stored.
struct Ordered<'a> {
    space: &'a SpaceConfig,
    region: RegionId,
    key: Vec<u8>,
    stored: StoredObject,
}

/// The answer to a read at the head: the latest acknowledged (stored) version, never a
/// pending one (unless the planted bug says otherwise).
fn read<W>(
    space: &SpaceConfig,
    stored: &StoredObject,
    pending: Option<&PendingWrites<W>>,
    op: &Operation,
) -> Reply {
    let pending_latest = pending
        .and_then(|p| p.values().next_back())
        .map(|p| p.write.object.as_ref());
    let current = match pending_latest {
        Some(latest) if planted(Bug::ReadPending) => latest,
        _ => stored.object.as_ref(),
    };
    step_key(&space.schema, current, op).0
}

fn push_effects<W>(effects: Vec<Effect>, out: &mut Outputs<W>) {
    out.extend(effects.into_iter().map(|e| match e {
        Effect::Send(to, msg) => Output::Send(to, msg),
        Effect::Done(region, since) => Output::TransferDone(region, since),
    }));
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::record::load;
    use crate::daemon::testnet::{head_of, op, Net};
    use hyperdex_model::{Func, Funcall, Value};

    #[test]
    fn a_write_is_answered_only_after_the_tail_stored_it() {
        let (mut net, config) = Net::new(
            3,
            "space s key k attributes int n create 1 partition tolerate 2 failures",
        );
        let (head, region) = head_of(&config, "a");
        net.input(
            head,
            op(
                &config,
                1,
                1,
                Operation::put("s", "a", vec![("n", Value::Int(5))]),
            ),
        );
        assert!(net.replies.is_empty(), "no reply before the ack");
        assert_eq!(net.in_flight.len(), 1);
        // Deliver the write to the middle only: still no reply, nothing stored at the head.
        let (to, m) = net.in_flight.remove(0);
        net.input(to, Input::Chain(m));
        assert!(net.replies.is_empty());
        let kb = key_bytes(&config.space("s").unwrap().schema, &Value::string("a")).unwrap();
        let head_store = &net.replicas[&head].1;
        assert_eq!(load(head_store, region, &kb).unwrap().version, 0);
        net.deliver_all();
        assert_eq!(net.replies, vec![(1, (Reply::Success))]);
        for (_, store) in net.replicas.values() {
            let s = load(store, region, &kb).unwrap();
            assert_eq!(s.version, 1);
            assert_eq!(s.object.unwrap()["n"], Value::Int(5));
        }
    }

    #[test]
    fn retries_are_answered_once() {
        let (mut net, config) = Net::new(2, "space s key k attributes int n create 1 partition");
        let (head, _) = head_of(&config, "a");
        net.input(
            head,
            op(
                &config,
                1,
                1,
                Operation::put("s", "a", vec![("n", Value::Int(1))]),
            ),
        );
        let add = Operation::atomic(
            hyperdex_model::NumOp::Add,
            "s",
            "a",
            vec![("n", Value::Int(10))],
        );
        net.input(head, op(&config, 2, 2, add.clone()));
        // The same request again while it is in flight, and again after it finished.
        net.input(head, op(&config, 3, 2, add.clone()));
        net.deliver_all();
        net.input(head, op(&config, 4, 2, add));
        net.input(head, op(&config, 5, 3, Operation::get("s", "a")));
        let replies: BTreeMap<u32, Reply> = net.replies.drain(..).collect();
        assert_eq!(replies[&2], (Reply::Success));
        assert_eq!(replies[&3], (Reply::Success));
        assert_eq!(replies[&4], (Reply::Success));
        let Reply::Found(o) = &replies[&5] else {
            panic!()
        };
        assert_eq!(o["n"], Value::Int(11), "applied once");
    }

    #[test]
    fn a_failed_write_waits_for_the_writes_it_observed() {
        let (mut net, config) = Net::new(2, "space s key k attributes int n create 1 partition");
        let (head, _) = head_of(&config, "a");
        net.input(
            head,
            op(&config, 1, 1, Operation::put_if_not_exist("s", "a", vec![])),
        );
        net.input(
            head,
            op(&config, 2, 2, Operation::put_if_not_exist("s", "a", vec![])),
        );
        assert!(
            net.replies.is_empty(),
            "the CMPFAIL observed an unacknowledged write"
        );
        net.deliver_all();
        assert_eq!(net.replies.len(), 2);
        assert!(matches!(net.replies[1], (2, Reply::CmpFail(_))));
    }

    #[test]
    fn stale_configurations_are_refused() {
        let (mut net, config) = Net::new(2, "space s key k create 1 partition");
        let (head, _) = head_of(&config, "a");
        let mut input = op(&config, 1, 1, Operation::get("s", "a"));
        if let Input::Op { req, .. } = &mut input {
            req.config_version -= 1;
        }
        net.input(head, input);
        assert!(matches!(
            &net.replies[0].1,
            Reply::Error(ReturnCode::Reconfigure, _)
        ));
    }

    #[test]
    fn when_the_tail_fails_its_predecessor_acknowledges_pending_writes() {
        let (mut net, config) = Net::new(2, "space s key k attributes int n create 1 partition");
        let (head, _) = head_of(&config, "a");
        net.input(
            head,
            op(
                &config,
                1,
                1,
                Operation::put("s", "a", vec![("n", Value::Int(3))]),
            ),
        );
        net.in_flight.clear(); // the write to the tail is lost with it
        let tail = config.chain(RegionId {
            space: config.space("s").unwrap().id,
            index: 0,
        })[1];
        let mut next = config.clone();
        next.version += 1;
        for ch in &mut next.spaces.get_mut("s").unwrap().chains {
            ch.retain(|&m| m != tail);
        }
        net.install(head, &next);
        assert_eq!(net.replies, vec![(1, (Reply::Success))]);
    }

    #[test]
    fn a_joiner_receives_every_object_and_later_writes() {
        let (mut net, config) = Net::new(
            2,
            "space s key k attributes int n create 1 partition tolerate 1 failure",
        );
        let space = config.space("s").unwrap().clone();
        let region = RegionId {
            space: space.id,
            index: 0,
        };
        let chain = config.chain(region).to_vec();
        let (head, other) = (chain[0], chain[1]);
        // Shrink the chain to the head alone, and write 150 objects (three windows of 64).
        let mut solo = config.clone();
        solo.version += 1;
        solo.spaces.get_mut("s").unwrap().chains[0] = vec![head];
        net.install(head, &solo);
        net.install(other, &solo);
        for i in 0..150 {
            let key = format!("k{i}");
            net.input(
                head,
                op(
                    &solo,
                    i,
                    i as u64 + 1,
                    Operation::put("s", key.as_str(), vec![("n", Value::Int(i as i64))]),
                ),
            );
        }
        net.input(head, op(&solo, 999, 999, Operation::del("s", "k7")));
        assert_eq!(net.replies.len(), 151);
        // The other server joins; a write arrives while the transfer is under way.
        let mut joined = solo.clone();
        joined.version += 1;
        joined.spaces.get_mut("s").unwrap().chains[0] = vec![head, other];
        joined.spaces.get_mut("s").unwrap().joining[0] = Some(crate::config::Joiner {
            replaces: None,
            server: other,
            since: joined.version,
        });
        net.install(other, &joined);
        net.install(head, &joined);
        net.input(
            head,
            op(
                &joined,
                1000,
                1000,
                Operation::put("s", "late", vec![("n", Value::Int(-1))]),
            ),
        );
        net.deliver_all();
        assert_eq!(net.transfers_done, vec![(other, region)]);
        let (_, head_store) = &net.replicas[&head];
        let (_, joiner_store) = &net.replicas[&other];
        let prefix = space.id.0.to_be_bytes();
        assert_eq!(
            head_store.scan_prefix(Table::Objects, &prefix).unwrap(),
            joiner_store.scan_prefix(Table::Objects, &prefix).unwrap(),
            "the joiner holds exactly what the head holds, tombstones included"
        );
        assert_eq!(
            joiner_store
                .scan_prefix(Table::Objects, &prefix)
                .unwrap()
                .len(),
            151
        );
    }

    #[test]
    fn a_retry_is_recognised_after_many_other_writes_to_the_key() {
        let (mut net, config) =
            Net::new(2, "space s key k attributes set(int) s create 1 partition");
        let (head, _) = head_of(&config, "a");
        net.input(head, op(&config, 1, 1, Operation::put("s", "a", vec![])));
        let add = Operation::funcs(
            "s",
            "a",
            vec![Funcall::new("s", Func::SetAdd(Value::Int(3)))],
        );
        net.input(head, op(&config, 2, 2, add.clone()));
        net.deliver_all();
        // Other clients write the key many times; then client 7 retries seq 2 and deletes.
        for i in 0..40u64 {
            let mut other = op(&config, 100 + i as u32, i, Operation::put("s", "a", vec![]));
            if let Input::Op { req, .. } = &mut other {
                req.client = 1000 + i;
            }
            net.input(head, other);
        }
        net.deliver_all();
        net.input(head, op(&config, 3, 3, Operation::del("s", "a")));
        net.deliver_all();
        net.input(head, op(&config, 4, 2, add));
        net.deliver_all();
        let replies: BTreeMap<u32, Reply> = net.replies.drain(..).collect();
        assert_eq!(
            replies[&4],
            (Reply::Success),
            "answered from the record, not applied again"
        );
    }

    fn offline(r: &Reply) -> bool {
        matches!(r, Reply::Error(ReturnCode::Offline, _))
    }

    #[test]
    fn a_server_without_a_lease_answers_no_client() {
        let (mut net, config) = Net::new(1, "space s key k create 1 partition");
        let (head, _) = head_of(&config, "a");
        let fresh = Replica::new(head, config.clone());
        net.replicas.get_mut(&head).unwrap().0 = fresh;
        net.input(head, op(&config, 1, 1, Operation::get("s", "a")));
        assert!(offline(&net.replies[0].1), "{:?}", net.replies);
        net.grant(head, config.version);
        net.input(head, op(&config, 2, 2, Operation::get("s", "a")));
        assert_eq!(net.replies[1], (2, Reply::NotFound));
    }

    #[test]
    fn a_lease_runs_out_after_its_length_from_when_the_heartbeat_was_sent() {
        let (mut net, config) = Net::new(1, "space s key k create 1 partition");
        let (head, _) = head_of(&config, "a");
        let length = Timing::default().lease;
        net.advance(length - Duration::from_millis(1));
        net.input(head, op(&config, 1, 1, Operation::get("s", "a")));
        assert_eq!(net.replies[0], (1, Reply::NotFound), "still leased");
        net.advance(Duration::from_millis(1));
        net.input(head, op(&config, 2, 2, Operation::put("s", "a", vec![])));
        assert!(
            offline(&net.replies[1].1),
            "neither reads nor writes once it ran out"
        );
        // A heartbeat sent now and answered renews it.
        net.grant(head, config.version);
        net.input(head, op(&config, 3, 3, Operation::get("s", "a")));
        assert_eq!(net.replies[2], (3, Reply::NotFound));
    }

    #[test]
    fn a_lease_covers_only_the_configuration_the_coordinator_had() {
        let (mut net, config) = Net::new(2, "space s key k create 1 partition");
        let (head, _) = head_of(&config, "a");
        // The coordinator moved on (the answer to a heartbeat says so) before this server
        // installed the new configuration: it stops answering at once.
        net.grant(head, config.version + 1);
        net.input(head, op(&config, 1, 1, Operation::get("s", "a")));
        assert!(offline(&net.replies[0].1), "{:?}", net.replies);
        let mut next = config.clone();
        next.version += 1;
        net.input(head, Input::Config(next.clone()));
        net.input(head, op(&next, 2, 2, Operation::get("s", "a")));
        assert_eq!(
            net.replies[1],
            (2, Reply::NotFound),
            "leased on the new one"
        );
    }

    #[test]
    fn a_late_answer_to_an_older_heartbeat_does_not_shorten_the_lease() {
        let (mut net, config) = Net::new(1, "space s key k create 1 partition");
        let (head, _) = head_of(&config, "a");
        let older = Lease {
            sent: net.now,
            config_version: config.version,
        };
        net.advance(Timing::default().lease / 2);
        net.grant(head, config.version);
        net.input(head, Input::Lease(older));
        net.advance(Timing::default().lease / 2 + Duration::from_millis(1));
        net.input(head, op(&config, 1, 1, Operation::get("s", "a")));
        assert_eq!(net.replies[0], (1, Reply::NotFound));
    }
}
