//! Chain replication for one daemon, as a state machine without I/O.
//!
//! [`Replica::step`] takes one [`Input`] (a client request, a chain message, a new
//! configuration, a peer that reconnected), reads and stages writes in the [`Store`], and
//! returns [`Output`]s (replies to clients, messages to peers). The server around it runs a
//! batch of inputs, **syncs the store once, and only then** delivers the outputs; so every
//! acknowledgement and every reply leaves this daemon after the state it vouches for is on
//! disk (group commit).
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
//! - **Configurations**: every message carries the sender's configuration version and a
//!   receiver with another version ignores it (clients are told RECONFIGURE and retry). When a
//!   new configuration is installed, each server resends its pending writes to its (possibly
//!   new) successor; a server that became the tail stores its pending writes and acknowledges
//!   them; pending writes of regions this server left are dropped and their clients told
//!   RECONFIGURE (the write survives downstream if it got there, and the retry finds it).
//!   When a connection to a peer is re-established, pending writes for which that peer is the
//!   successor are resent; receivers ignore versions they already have and re-acknowledge.

use std::collections::BTreeMap;
use std::sync::Arc;

use hyperdex_model::apply::validate_checks;
use hyperdex_model::db::step_key;
use hyperdex_model::{Check, Operation, Reply, ReturnCode};

use crate::bugs::{planted, Bug};
use crate::config::{key_bytes, Config, Joiner, RegionId, ServerId};
use crate::protocol::{ChainAck, ChainWrite, ClientId, Dedupe, Message, TransferAck, TransferData};
use crate::storage::{Store, StoreError, Table};

use super::record::{
    absorb, add_record, load, merge_older_records, object_key, region_prefix, stage, StoredObject,
    REGION_PREFIX_LEN,
};
use super::search::search_store;

/// What the state machine is fed.
#[derive(Debug)]
pub enum Input<W> {
    /// A single-key operation from a client; `waiter` identifies where to reply.
    Op {
        waiter: W,
        config_version: u64,
        client: ClientId,
        seq: u64,
        low_seq: u64,
        op: Operation,
    },
    Search {
        waiter: W,
        config_version: u64,
        space: String,
        regions: Vec<RegionId>,
        checks: Vec<Check>,
    },
    ChainWrite(ChainWrite),
    ChainAck(ChainAck),
    TransferData(TransferData),
    TransferAck(TransferAck),
    Config(Config),
    /// The connection to this peer was (re-)established.
    PeerUp(ServerId),
    /// Periodic: resend pending writes (a lost message must not stall a chain).
    Tick,
}

/// What the state machine asks the server to do, after syncing the store.
#[derive(Debug, PartialEq)]
pub enum Output<W> {
    Reply(W, Message),
    Send(ServerId, Message),
    /// A client has a newer configuration than ours: fetch it now.
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

/// One daemon's replication state.
pub struct Replica<W> {
    me: ServerId,
    config: Arc<Config>,
    /// In-flight writes per (region, key), by version.
    pending: BTreeMap<(RegionId, Vec<u8>), BTreeMap<u64, Pending<W>>>,
    /// Chain messages stamped with a configuration newer than ours, replayed once we have it.
    early: Vec<Input<W>>,
    /// Transfers this server is sending, to the joiner of each region it precedes.
    outgoing: BTreeMap<RegionId, Outgoing>,
    /// Regions this server joins and has received completely (in the current configuration).
    received: std::collections::BTreeSet<RegionId>,
    /// For each region this server joins: the last key received in order (`None`: nothing
    /// yet). A window is accepted only if it starts right after it, so a source that
    /// resumes from a wrong place is told where to resume instead.
    progress: BTreeMap<RegionId, Option<Vec<u8>>>,
    /// Most objects per transfer window.
    window: usize,
}

/// A state transfer in progress from this server.
#[derive(Debug)]
struct Outgoing {
    to: ServerId,
    /// The joiner's start version: a restarted join restarts the transfer.
    since: u64,
    /// Objects with keys up to this one are acknowledged by the joiner.
    cursor: Option<Vec<u8>>,
    done: bool,
    windows: u64,
}

/// Most objects per transfer window.
pub const TRANSFER_WINDOW: usize = 4096;
/// Most bytes per transfer window (a window always carries at least one object).
pub const TRANSFER_WINDOW_BYTES: usize = 1 << 20;

fn reconfigure(why: String) -> Message {
    Message::Reply(Reply::Error(ReturnCode::Reconfigure, why))
}

impl<W: Clone> Replica<W> {
    pub fn new(me: ServerId, config: Config) -> Replica<W> {
        Replica {
            me,
            config: Arc::new(config),
            pending: BTreeMap::new(),
            early: Vec::new(),
            outgoing: BTreeMap::new(),
            received: Default::default(),
            progress: BTreeMap::new(),
            window: TRANSFER_WINDOW,
        }
    }

    /// Sets the most objects per transfer window (small windows exercise resumption).
    pub fn with_transfer_window(mut self, objects: usize) -> Self {
        self.window = objects.max(1);
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of writes in flight through this server.
    pub fn pending_writes(&self) -> usize {
        self.pending.values().map(BTreeMap::len).sum()
    }

    pub fn step(
        &mut self,
        store: &mut dyn Store,
        input: Input<W>,
    ) -> Result<Vec<Output<W>>, StoreError> {
        let mut out = Vec::new();
        match input {
            Input::Op {
                waiter,
                config_version,
                client,
                seq,
                low_seq,
                op,
            } => {
                let request = (client, seq, low_seq);
                self.on_op(store, waiter, config_version, request, op, &mut out)?
            }
            Input::Search {
                waiter,
                config_version,
                space,
                regions,
                checks,
            } => {
                let msg =
                    self.on_search(store, config_version, &space, &regions, &checks, &mut out)?;
                out.push(Output::Reply(waiter, msg));
            }
            Input::ChainWrite(w) => self.on_chain_write(store, w, &mut out)?,
            Input::ChainAck(a) => self.on_chain_ack(store, a, &mut out)?,
            Input::TransferData(t) => self.on_transfer_data(store, t, &mut out)?,
            Input::TransferAck(a) => self.on_transfer_ack(store, a, &mut out)?,
            Input::Config(c) => self.on_config(store, c, &mut out)?,
            Input::PeerUp(peer) => {
                self.resend(Some(peer), &mut out);
                self.send_windows(store, Some(peer), &mut out)?;
            }
            Input::Tick => {
                self.resend(None, &mut out);
                self.send_windows(store, None, &mut out)?;
                for r in &self.received {
                    if let Some(j) = self.config.joiner(*r).filter(|j| j.server == self.me) {
                        out.push(Output::TransferDone(*r, j.since));
                    }
                }
            }
        }
        Ok(out)
    }

    fn check_version(&self, theirs: u64, out: &mut Vec<Output<W>>) -> Result<(), Box<Message>> {
        let mine = self.config.version;
        if theirs == mine || planted(Bug::StaleConfig) {
            return Ok(());
        }
        if theirs > mine {
            out.push(Output::FetchConfig);
        }
        Err(Box::new(reconfigure(format!(
            "the request carries configuration {theirs}, the server has {mine}"
        ))))
    }

    fn position(&self, region: RegionId) -> Option<(usize, &[ServerId])> {
        let chain = self.config.chain(region);
        chain.iter().position(|&m| m == self.me).map(|p| (p, chain))
    }

    #[allow(clippy::too_many_arguments)]
    fn on_op(
        &mut self,
        store: &mut dyn Store,
        waiter: W,
        config_version: u64,
        (client, seq, low_seq): (ClientId, u64, u64),
        op: Operation,
        out: &mut Vec<Output<W>>,
    ) -> Result<(), StoreError> {
        if let Err(m) = self.check_version(config_version, out) {
            out.push(Output::Reply(waiter, *m));
            return Ok(());
        }
        let config = self.config.clone();
        let (Some(space_name), Some(key)) = (op.space(), op.key()) else {
            out.push(Output::Reply(
                waiter,
                Message::Reply(Reply::Error(
                    ReturnCode::Internal,
                    "only single-key operations are sent to a daemon".into(),
                )),
            ));
            return Ok(());
        };
        let Some(space) = config.space(space_name) else {
            out.push(Output::Reply(
                waiter,
                Message::Reply(Reply::Error(
                    ReturnCode::UnknownSpace,
                    format!("unknown space \"{space_name}\""),
                )),
            ));
            return Ok(());
        };
        let Some(kb) = key_bytes(&space.schema, key) else {
            out.push(Output::Reply(
                waiter,
                Message::Reply(Reply::Error(
                    ReturnCode::WrongType,
                    format!(
                        "key: expected {}, found {}",
                        space.schema.key.datatype,
                        key.kind()
                    ),
                )),
            ));
            return Ok(());
        };
        let region = space.region_of_bytes(&kb);
        if config.chain(region).first() != Some(&self.me) {
            out.push(Output::Reply(
                waiter,
                reconfigure(format!(
                    "server {} is not the head of region {region}",
                    self.me
                )),
            ));
            return Ok(());
        }
        let stored = load(store, region, &kb)?;
        if !op.is_mutation() {
            let pending_latest = self
                .pending
                .get(&(region, kb.clone()))
                .and_then(|p| p.values().next_back())
                .map(|p| p.write.object.as_ref());
            let current = match pending_latest {
                Some(latest) if planted(Bug::ReadPending) => latest,
                _ => stored.object.as_ref(),
            };
            let (reply, _) = step_key(&space.schema, current, &op);
            out.push(Output::Reply(waiter, Message::Reply(reply)));
            return Ok(());
        }
        let pend = self.pending.entry((region, kb.clone())).or_default();
        // A retry of a write still in flight joins it.
        if let Some(p) = pend.values_mut().find(|p| {
            p.write
                .dedupe
                .as_ref()
                .is_some_and(|d| d.client == client && d.seq == seq)
        }) {
            p.waiters.push(waiter);
            return Ok(());
        }
        // A retry of a write already applied is answered from the record.
        if let Some(d) = stored
            .dedupe
            .iter()
            .find(|d| d.client == client && d.seq == seq)
        {
            tracing::debug!(server = self.me.0, %region, client, seq, "retry answered from the record");
            out.push(Output::Reply(waiter, Message::Reply(d.reply.clone())));
            self.pending.retain(|_, p| !p.is_empty());
            return Ok(());
        }
        let (latest_version, latest) = match pend.values().next_back() {
            Some(p) => (p.write.version, p.write.object.as_ref()),
            None => (stored.version, stored.object.as_ref()),
        };
        let (reply, change) = step_key(&space.schema, latest, &op);
        let Some(new) = change else {
            tracing::debug!(
                server = self.me.0, %region, client, seq, reply = ?reply,
                pending = pend.len(), stored = stored.version, "write changes nothing"
            );
            match pend.values_mut().next_back() {
                Some(p) => p.deferred.push((waiter, reply)),
                None => out.push(Output::Reply(waiter, Message::Reply(reply))),
            }
            self.pending.retain(|_, p| !p.is_empty());
            return Ok(());
        };
        let write = ChainWrite {
            config_version: config.version,
            region,
            key: kb.clone(),
            version: latest_version + 1,
            object: new,
            dedupe: Some(Dedupe {
                client,
                seq,
                low_seq,
                reply: reply.clone(),
            }),
        };
        tracing::debug!(
            server = self.me.0, %region, version = write.version, client, seq,
            reply = ?reply, config = config.version, "head orders a write"
        );
        let chain = config.chain(region);
        if chain.len() == 1 {
            // Head and tail at once: durable after this batch's sync, then answered.
            let mut s = stored;
            absorb(&mut s, &write);
            stage(store, region, &kb, &s);
            out.push(Output::Reply(waiter, Message::Reply(reply)));
            self.pending.retain(|_, p| !p.is_empty());
            return Ok(());
        }
        out.push(Output::Send(chain[1], Message::ChainWrite(write.clone())));
        let waiters = if planted(Bug::EarlyReply) {
            out.push(Output::Reply(waiter, Message::Reply(reply)));
            Vec::new()
        } else {
            vec![waiter]
        };
        pend.insert(
            write.version,
            Pending {
                write,
                waiters,
                deferred: Vec::new(),
            },
        );
        Ok(())
    }

    fn on_search(
        &mut self,
        store: &mut dyn Store,
        config_version: u64,
        space_name: &str,
        regions: &[RegionId],
        checks: &[Check],
        out: &mut Vec<Output<W>>,
    ) -> Result<Message, StoreError> {
        if let Err(m) = self.check_version(config_version, out) {
            return Ok(*m);
        }
        let Some(space) = self.config.space(space_name) else {
            return Ok(Message::Reply(Reply::Error(
                ReturnCode::UnknownSpace,
                format!("unknown space \"{space_name}\""),
            )));
        };
        if let Some(r) = regions
            .iter()
            .find(|r| r.space != space.id || self.config.chain(**r).first() != Some(&self.me))
        {
            return Ok(reconfigure(format!(
                "server {} is not the head of region {r}",
                self.me
            )));
        }
        let checks = match validate_checks(&space.schema, checks) {
            Ok(c) => c,
            Err(f) => return Ok(Message::Reply(f.into_reply())),
        };
        Ok(Message::Objects(search_store(
            store, space, regions, &checks,
        )?))
    }

    /// Whether a chain message can be acted on now. Messages from a newer configuration are
    /// kept until we have it (and we ask for it); older ones are dropped, since their sender
    /// resends everything pending when it installs the configuration we have.
    fn current(
        &mut self,
        version: u64,
        input: impl FnOnce() -> Input<W>,
        out: &mut Vec<Output<W>>,
    ) -> bool {
        if version > self.config.version {
            if self.early.len() < 100_000 {
                self.early.push(input());
            }
            out.push(Output::FetchConfig);
        }
        version == self.config.version
    }

    fn on_chain_write(
        &mut self,
        store: &mut dyn Store,
        w: ChainWrite,
        out: &mut Vec<Output<W>>,
    ) -> Result<(), StoreError> {
        if !self.current(w.config_version, || Input::ChainWrite(w.clone()), out) {
            return Ok(());
        }
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
            out.push(Output::Send(
                pred,
                Message::ChainAck(self.ack(&w.key, w.region, stored.version)),
            ));
            return Ok(());
        }
        match succ {
            None => {
                absorb(&mut stored, &w);
                stage(store, w.region, &w.key, &stored);
                out.push(Output::Send(
                    pred,
                    Message::ChainAck(self.ack(&w.key, w.region, w.version)),
                ));
            }
            Some(succ) => {
                let pend = self.pending.entry((w.region, w.key.clone())).or_default();
                if let std::collections::btree_map::Entry::Vacant(slot) = pend.entry(w.version) {
                    out.push(Output::Send(succ, Message::ChainWrite(w.clone())));
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
        out: &mut Vec<Output<W>>,
    ) -> Result<(), StoreError> {
        if !self.current(a.config_version, || Input::ChainAck(a.clone()), out) {
            return Ok(());
        }
        let Some((pos, chain)) = self.position(a.region) else {
            return Ok(());
        };
        let pred = if pos == 0 { None } else { Some(chain[pos - 1]) };
        self.commit_through(store, a.region, &a.key, a.version, out)?;
        // Pass the ack on only if this server really holds the version durably: after a
        // restart it may have lost a write that its successor acknowledges, and the
        // predecessor's retransmission will bring it here again.
        if load(store, a.region, &a.key)?.version < a.version {
            return Ok(());
        }
        if let Some(pred) = pred {
            out.push(Output::Send(
                pred,
                Message::ChainAck(self.ack(&a.key, a.region, a.version)),
            ));
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
        out: &mut Vec<Output<W>>,
    ) -> Result<(), StoreError> {
        let Some(pend) = self.pending.get_mut(&(region, key.to_vec())) else {
            return Ok(());
        };
        let rest = pend.split_off(&(version + 1));
        let done = std::mem::replace(pend, rest);
        if pend.is_empty() {
            self.pending.remove(&(region, key.to_vec()));
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
            let reply = p
                .write
                .dedupe
                .as_ref()
                .map(|d| d.reply.clone())
                .unwrap_or(Reply::Success);
            for w in p.waiters {
                out.push(Output::Reply(w, Message::Reply(reply.clone())));
            }
            for (w, r) in p.deferred {
                out.push(Output::Reply(w, Message::Reply(r)));
            }
        }
        Ok(())
    }

    fn on_config(
        &mut self,
        store: &mut dyn Store,
        config: Config,
        out: &mut Vec<Output<W>>,
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
        let keys: Vec<(RegionId, Vec<u8>)> = self.pending.keys().cloned().collect();
        for (region, key) in keys {
            // A server that has just become the joiner of a region it served (removed and
            // added again in one step) lost its old role: what it had in flight belongs to the
            // chain it left, not to a copy that is about to be rebuilt.
            let mine = self.config.joiner(region).filter(|j| j.server == self.me);
            let rejoining =
                mine.is_some() && old.joiner(region).map(Joiner::id) != mine.map(Joiner::id);
            let position = self
                .position(region)
                .filter(|_| !rejoining)
                .map(|(p, c)| (p, c.to_vec()));
            match position {
                None => {
                    // We left this chain: clients retry elsewhere.
                    if let Some(pend) = self.pending.remove(&(region, key)) {
                        for p in pend.into_values() {
                            for w in p.waiters {
                                out.push(Output::Reply(
                                    w,
                                    reconfigure("the region moved to other servers".into()),
                                ));
                            }
                            for (w, _) in p.deferred {
                                out.push(Output::Reply(
                                    w,
                                    reconfigure("the region moved to other servers".into()),
                                ));
                            }
                        }
                    }
                }
                Some((pos, chain)) if pos + 1 == chain.len() => {
                    // We are the tail now: everything pending is stored and acknowledged.
                    let top = self.pending[&(region, key.clone())]
                        .keys()
                        .next_back()
                        .copied()
                        .unwrap_or(0);
                    self.commit_through(store, region, &key, top, out)?;
                    if pos > 0 {
                        out.push(Output::Send(
                            chain[pos - 1],
                            Message::ChainAck(self.ack(&key, region, top)),
                        ));
                    }
                }
                Some((pos, chain)) => {
                    let version = self.config.version;
                    if let Some(pend) = self.pending.get_mut(&(region, key)) {
                        for p in pend.values_mut() {
                            p.write.config_version = version;
                            out.push(Output::Send(
                                chain[pos + 1],
                                Message::ChainWrite(p.write.clone()),
                            ));
                        }
                    }
                }
            }
        }
        self.start_transfers(store, &old, out)?;
        let early = std::mem::take(&mut self.early);
        for input in early {
            match input {
                Input::ChainWrite(w) => self.on_chain_write(store, w, out)?,
                Input::ChainAck(a) => self.on_chain_ack(store, a, out)?,
                Input::TransferData(t) => self.on_transfer_data(store, t, out)?,
                Input::TransferAck(a) => self.on_transfer_ack(store, a, out)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// After a new configuration: a server that has just become a joiner drops what it held
    /// of the region (the transfer brings the authoritative copy; stale versions from an
    /// earlier life must not shadow it), and the predecessor of each joiner starts sending.
    fn start_transfers(
        &mut self,
        store: &mut dyn Store,
        old: &Config,
        out: &mut Vec<Output<W>>,
    ) -> Result<(), StoreError> {
        let config = self.config.clone();
        self.received
            .retain(|r| config.joining(*r) == Some(self.me));
        self.progress
            .retain(|r, _| config.joining(*r) == Some(self.me));
        for (region, pos) in config.regions_of(self.me) {
            let chain = config.chain(region);
            let mine = config.joiner(region).filter(|j| j.server == self.me);
            // A join is identified by (server, since): the member it replaces may change
            // while it runs (that member failed) without starting it over.
            if mine.is_some() && old.joiner(region).map(Joiner::id) != mine.map(Joiner::id) {
                self.received.remove(&region);
                self.progress.remove(&region);
                tracing::debug!(server = self.me.0, %region, join = ?mine, "joining: dropping the old copy");
                for (k, _) in store.scan_prefix(Table::Objects, &region_prefix(region))? {
                    store.put(Table::Objects, &k, None);
                }
            }
            let joiner = config
                .joiner(region)
                .filter(|j| chain.get(pos + 1) == Some(&j.server));
            match joiner {
                Some(j) => {
                    // A source that was not this join's source a moment ago starts over (the
                    // joiner tells it where it really is).
                    let old_chain = old.chain(region);
                    let was_source = old.joiner(region).map(Joiner::id) == Some(j.id())
                        && old_chain.iter().position(|&m| m == self.me).map(|p| p + 1)
                            == old_chain.iter().position(|&m| m == j.server);
                    let restart = !was_source
                        || self
                            .outgoing
                            .get(&region)
                            .is_none_or(|o| o.to != j.server || o.since != j.since);
                    if restart {
                        self.outgoing.insert(
                            region,
                            Outgoing {
                                to: j.server,
                                since: j.since,
                                cursor: None,
                                done: false,
                                windows: 0,
                            },
                        );
                    }
                }
                None => {
                    self.outgoing.remove(&region);
                }
            }
        }
        let me = self.me;
        self.outgoing.retain(|r, o| {
            let chain = config.chain(*r);
            let pred = chain
                .iter()
                .position(|&m| m == o.to)
                .and_then(|p| p.checked_sub(1));
            config.joining(*r) == Some(o.to) && pred.and_then(|p| chain.get(p)) == Some(&me)
        });
        let regions: Vec<RegionId> = self.outgoing.keys().copied().collect();
        for r in regions {
            if let Some(o) = self.outgoing.get_mut(&r) {
                // The joiner's configuration changed with ours: resend from the last window
                // it acknowledged.
                o.done = false;
            }
        }
        self.send_windows(store, None, out)
    }

    /// Sends the next window of every transfer not yet done (to `only`, if given).
    fn send_windows(
        &mut self,
        store: &mut dyn Store,
        only: Option<ServerId>,
        out: &mut Vec<Output<W>>,
    ) -> Result<(), StoreError> {
        let config = self.config.clone();
        for (region, o) in &self.outgoing {
            if o.done || only.is_some_and(|p| p != o.to) {
                continue;
            }
            let prefix = region_prefix(*region);
            let after = o.cursor.as_ref().map(|c| object_key(*region, c));
            let mut entries: Vec<(Vec<u8>, Vec<u8>)> = store
                .scan_from(
                    Table::Objects,
                    &prefix,
                    after.as_deref(),
                    TRANSFER_WINDOW + 1,
                )?
                .into_iter()
                .map(|(k, v)| (k[REGION_PREFIX_LEN..].to_vec(), v))
                .collect();
            let mut last = entries.len() <= self.window;
            entries.truncate(self.window);
            let mut bytes = 0;
            if let Some(cut) = entries.iter().position(|(k, v)| {
                bytes += k.len() + v.len();
                bytes > TRANSFER_WINDOW_BYTES
            }) {
                entries.truncate(cut.max(1));
                last = false;
            }
            tracing::debug!(
                server = self.me.0, %region, to = o.to.0, after = ?o.cursor, objects = entries.len(),
                last, config = config.version, "transfer window"
            );
            out.push(Output::Send(
                o.to,
                Message::TransferData(TransferData {
                    config_version: config.version,
                    region: *region,
                    after: o.cursor.clone(),
                    entries,
                    last,
                }),
            ));
        }
        Ok(())
    }

    fn on_transfer_data(
        &mut self,
        store: &mut dyn Store,
        t: TransferData,
        out: &mut Vec<Output<W>>,
    ) -> Result<(), StoreError> {
        if !self.current(t.config_version, || Input::TransferData(t.clone()), out) {
            return Ok(());
        }
        if self.config.joining(t.region) != Some(self.me) {
            return Ok(());
        }
        let Some((pos, chain)) = self.position(t.region) else {
            return Ok(());
        };
        let Some(&pred) = pos.checked_sub(1).and_then(|p| chain.get(p)) else {
            return Ok(());
        };
        tracing::debug!(
            server = self.me.0, region = %t.region, after = ?t.after, objects = t.entries.len(),
            last = t.last, config = t.config_version, "transfer window received"
        );
        let progress = self.progress.entry(t.region).or_default();
        if t.after != *progress {
            // Not the next window: tell the source where to resume.
            let upto = progress.clone();
            out.push(Output::Send(
                pred,
                Message::TransferAck(TransferAck {
                    config_version: self.config.version,
                    region: t.region,
                    upto,
                    done: false,
                }),
            ));
            return Ok(());
        }
        let mut upto = t.after.clone();
        for (kb, bytes) in &t.entries {
            let Ok(incoming) = postcard::from_bytes::<StoredObject>(bytes) else {
                continue;
            };
            let mut stored = load(store, t.region, kb)?;
            if incoming.version > stored.version {
                stage(store, t.region, kb, &incoming);
            } else if merge_older_records(&mut stored, &incoming) {
                // A write reached this joiner before the transfer did: the object is newer
                // here, but the records of earlier writes (which retries are matched
                // against) come only with the transfer.
                stage(store, t.region, kb, &stored);
            }
            upto = Some(kb.clone());
        }
        self.progress.insert(t.region, upto.clone());
        if t.last {
            if self.received.insert(t.region) {
                tracing::info!(region = %t.region, "state transfer complete");
            }
            if let Some(j) = self.config.joiner(t.region) {
                out.push(Output::TransferDone(t.region, j.since));
            }
        }
        out.push(Output::Send(
            pred,
            Message::TransferAck(TransferAck {
                config_version: self.config.version,
                region: t.region,
                upto,
                done: t.last,
            }),
        ));
        Ok(())
    }

    fn on_transfer_ack(
        &mut self,
        store: &mut dyn Store,
        a: TransferAck,
        out: &mut Vec<Output<W>>,
    ) -> Result<(), StoreError> {
        if !self.current(a.config_version, || Input::TransferAck(a.clone()), out) {
            return Ok(());
        }
        let Some(o) = self.outgoing.get_mut(&a.region) else {
            return Ok(());
        };
        // The joiner says where it is; resume from there (possibly back, if a window was not
        // the one it expected).
        if a.done && a.upto.as_deref() < o.cursor.as_deref() {
            return Ok(());
        }
        o.cursor = a.upto;
        o.windows += 1;
        if o.windows.is_multiple_of(100) {
            tracing::info!(region = %a.region, to = o.to.0, windows = o.windows, "state transfer in progress");
        }
        if a.done {
            o.done = true;
            return Ok(());
        }
        let to = o.to;
        self.send_windows(store, Some(to), out)
    }

    /// Resends pending writes to their successor (only those whose successor is `only`, if
    /// given). Receivers ignore versions they have and acknowledge again.
    fn resend(&mut self, only: Option<ServerId>, out: &mut Vec<Output<W>>) {
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
                    out.push(Output::Send(peer, Message::ChainWrite(p.write.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::state::{Cluster, Command};
    use crate::storage::MemStore;
    use hyperdex_model::{Func, Funcall, Value};

    /// Three replicas wired by hand: messages are delivered by the test, so every step of the
    /// protocol can be observed.
    struct Net {
        replicas: BTreeMap<ServerId, (Replica<u32>, MemStore)>,
        replies: Vec<(u32, Message)>,
        in_flight: Vec<(ServerId, Message)>,
        transfers_done: Vec<(ServerId, RegionId)>,
    }

    impl Net {
        fn new(servers: usize, space: &str) -> (Net, Config) {
            let mut c = Cluster::new(1);
            for i in 0..servers {
                c.apply(&Command::Register {
                    id: None,
                    addr: format!("s{i}"),
                })
                .unwrap();
            }
            c.apply(&Command::AddSpace(space.into())).unwrap();
            let replicas = c
                .config
                .servers
                .keys()
                .map(|&id| {
                    let r = Replica::new(id, c.config.clone()).with_transfer_window(64);
                    (id, (r, MemStore::new()))
                })
                .collect();
            (
                Net {
                    replicas,
                    replies: Vec::new(),
                    in_flight: Vec::new(),
                    transfers_done: Vec::new(),
                },
                c.config,
            )
        }

        fn input(&mut self, to: ServerId, input: Input<u32>) {
            let (r, store) = self.replicas.get_mut(&to).unwrap();
            let outs = r.step(store, input).unwrap();
            store.sync().unwrap();
            for o in outs {
                match o {
                    Output::Reply(w, m) => self.replies.push((w, m)),
                    Output::Send(s, m) => self.in_flight.push((s, m)),
                    Output::FetchConfig => {}
                    Output::TransferDone(r, _) => self.transfers_done.push((to, r)),
                }
            }
        }

        fn deliver_all(&mut self) {
            while !self.in_flight.is_empty() {
                let (to, m) = self.in_flight.remove(0);
                let input = match m {
                    Message::ChainWrite(w) => Input::ChainWrite(w),
                    Message::ChainAck(a) => Input::ChainAck(a),
                    Message::TransferData(t) => Input::TransferData(t),
                    Message::TransferAck(a) => Input::TransferAck(a),
                    other => panic!("unexpected {other:?}"),
                };
                self.input(to, input);
            }
        }
    }

    fn op(config: &Config, waiter: u32, seq: u64, op: Operation) -> Input<u32> {
        Input::Op {
            waiter,
            config_version: config.version,
            client: 7,
            seq,
            low_seq: 1,
            op,
        }
    }

    fn head_of(config: &Config, key: &str) -> (ServerId, RegionId) {
        let s = config.space("s").unwrap();
        let r = s.region_of(&Value::string(key)).unwrap();
        (config.chain(r)[0], r)
    }

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
        let Message::ChainWrite(w) = m else { panic!() };
        net.input(to, Input::ChainWrite(w));
        assert!(net.replies.is_empty());
        let kb = key_bytes(&config.space("s").unwrap().schema, &Value::string("a")).unwrap();
        let head_store = &net.replicas[&head].1;
        assert_eq!(load(head_store, region, &kb).unwrap().version, 0);
        net.deliver_all();
        assert_eq!(net.replies, vec![(1, Message::Reply(Reply::Success))]);
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
        let replies: BTreeMap<u32, Message> = net.replies.drain(..).collect();
        assert_eq!(replies[&2], Message::Reply(Reply::Success));
        assert_eq!(replies[&3], Message::Reply(Reply::Success));
        assert_eq!(replies[&4], Message::Reply(Reply::Success));
        let Message::Reply(Reply::Found(o)) = &replies[&5] else {
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
        assert!(matches!(
            net.replies[1],
            (2, Message::Reply(Reply::CmpFail(_)))
        ));
    }

    #[test]
    fn stale_configurations_are_refused() {
        let (mut net, config) = Net::new(2, "space s key k create 1 partition");
        let (head, _) = head_of(&config, "a");
        let mut input = op(&config, 1, 1, Operation::get("s", "a"));
        if let Input::Op { config_version, .. } = &mut input {
            *config_version -= 1;
        }
        net.input(head, input);
        assert!(matches!(
            &net.replies[0].1,
            Message::Reply(Reply::Error(ReturnCode::Reconfigure, _))
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
        net.input(head, Input::Config(next));
        assert_eq!(net.replies, vec![(1, Message::Reply(Reply::Success))]);
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
        net.input(head, Input::Config(solo.clone()));
        net.input(other, Input::Config(solo.clone()));
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
        net.input(other, Input::Config(joined.clone()));
        net.input(head, Input::Config(joined.clone()));
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
            if let Input::Op { client, .. } = &mut other {
                *client = 1000 + i;
            }
            net.input(head, other);
        }
        net.deliver_all();
        net.input(head, op(&config, 3, 3, Operation::del("s", "a")));
        net.deliver_all();
        net.input(head, op(&config, 4, 2, add));
        net.deliver_all();
        let replies: BTreeMap<u32, Message> = net.replies.drain(..).collect();
        assert_eq!(
            replies[&4],
            Message::Reply(Reply::Success),
            "answered from the record, not applied again"
        );
    }
}
