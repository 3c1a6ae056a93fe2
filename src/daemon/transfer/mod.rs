//! State transfer, as a state machine without I/O: filling a server that joins a region's
//! chain with the region's objects.
//!
//! A joiner is the last member of its region's chain (see `config::Joiner`). It stores every
//! write forwarded to it like a tail, and meanwhile its predecessor (the *source*) streams the
//! region's committed objects to it in windows, in key order:
//!
//! - the source sends one [`TransferData`] window at a time (at most [`TRANSFER_WINDOW`]
//!   objects and about [`TRANSFER_WINDOW_BYTES`] bytes) and the next one only when the joiner
//!   acknowledges it, so at most one window per region is in flight; a window not
//!   acknowledged within [`RESEND_TICKS`] ticks is sent again (it or its ack was lost);
//! - a source sends at most [`ACTIVE_TRANSFERS`] transfers at once (the others wait in
//!   region order), so the memory it spends on transfers is bounded however many regions it
//!   serves and however large they are, and its windows together stay within a byte rate
//!   (`rate`);
//! - the joiner accepts a window only if it starts right after the last key it stored (its
//!   *progress*); otherwise it tells the source where to resume. So a source that lost its
//!   place (it restarted, or became the source anew) never skips a key;
//! - a joiner keeps what it held of the region before (it restarted with its data, or served
//!   the region once): the source first asks what it holds ([`TransferQuery`]), the joiner's
//!   acknowledgements describe its next objects by digest, and the source sends those it holds
//!   identically as "unchanged" rather than whole (`window`); the joiner's
//!   copy is trusted only up to its progress (see `reconcile`), and a write reaching it for a
//!   key beyond is applied as if the key were new;
//! - after the last window the joiner reports the region done ([`Effect::Done`]); the daemon
//!   tells the coordinator, which makes the joiner a full member.
//!
//! A join is identified by the joining server and the configuration version it started in
//! (`Joiner::since`): a new join, even of the same server, starts from the region's start.

mod rate;
mod reconcile;
mod window;

use std::collections::{BTreeMap, BTreeSet};

use crate::bugs::{planted, Bug};
use crate::config::{Config, Joiner, RegionId, ServerId};
use crate::limits::JOIN_LIVE_BYTES;
use crate::protocol::coordinator::JoinProgress;
use crate::protocol::{ChainMessage, TransferAck, TransferData, TransferQuery};
use crate::storage::{Store, StoreError, Table};

use rate::Rate;
pub use rate::DEFAULT_TRANSFER_RATE;
pub use reconcile::store_transferred;
use window::{held_after, read_window, Held, Window};

/// The table a region's data is in: a subspace region's entries have their own.
fn table_of(config: &Config, region: RegionId) -> Table {
    match config.space_by_id(region.space) {
        Some(s) if s.subspace_of(region.index).0 > 0 => Table::Subspace,
        _ => Table::Objects,
    }
}

/// Most objects per transfer window.
pub const TRANSFER_WINDOW: usize = 4096;
/// Most bytes per transfer window (a window always carries at least one object).
pub const TRANSFER_WINDOW_BYTES: usize = 1 << 20;

/// A joiner logs its progress every this many objects received.
const PROGRESS_LOG_EVERY: u64 = 100_000;
/// Ticks a window may go unacknowledged before it is sent again.
pub const RESEND_TICKS: u32 = 5;
/// Most transfers one server sends at once, each with one window in flight.
pub const ACTIVE_TRANSFERS: usize = 4;

/// A transfer this server was sending ends before the joiner had everything: the joiner
/// failed, or this server is no longer its source.
fn abandoned(o: &Outgoing) {
    if !o.done && o.cursor.is_some() {
        crate::probe!("transfer.abandoned_mid_way");
    }
}

/// What the transfer machine asks the daemon to do.
#[derive(Debug, PartialEq)]
pub enum Effect {
    Send(ServerId, ChainMessage),
    /// This server holds every object of a region it joins (the join started in `since`).
    Done(RegionId, u64),
}

/// A transfer in progress from this server.
#[derive(Debug)]
struct Outgoing {
    to: ServerId,
    /// The joiner's start version: a restarted join restarts the transfer.
    since: u64,
    /// Objects with keys up to this one are acknowledged by the joiner.
    cursor: Option<Vec<u8>>,
    done: bool,
    windows: u64,
    /// Ticks since the current window was sent (`None`: not sent yet).
    waiting: Option<u32>,
    /// What the joiner said it holds after `cursor` (`None`: not known yet).
    held: Option<Held>,
}

/// One daemon's transfers, as source and as joiner.
#[derive(Debug)]
pub struct Transfers {
    me: ServerId,
    /// Transfers this server is sending, to the joiner of each region it precedes.
    outgoing: BTreeMap<RegionId, Outgoing>,
    /// Regions this server joins and has received completely (in the current configuration).
    received: BTreeSet<RegionId>,
    /// For each region this server joins: the last key received in order (`None`: nothing
    /// yet). A window is accepted only if it starts right after it.
    progress: BTreeMap<RegionId, Option<Vec<u8>>>,
    /// For each region this server joins: objects and bytes received so far.
    received_counts: BTreeMap<RegionId, (u64, u64)>,
    /// For each region this server joins: the keys after its progress that writes reached
    /// during the join (its copy of every other key there is unverified).
    live: BTreeMap<RegionId, BTreeSet<Vec<u8>>>,
    /// Bytes of the keys in `live`.
    live_bytes: usize,
    /// Most objects per window.
    window: usize,
    /// The bytes per second the windows this server sends may use.
    rate: Rate,
}

type Effects = Result<Vec<Effect>, StoreError>;

impl Transfers {
    pub fn new(me: ServerId, window: usize) -> Transfers {
        Transfers {
            me,
            outgoing: BTreeMap::new(),
            received: BTreeSet::new(),
            progress: BTreeMap::new(),
            received_counts: BTreeMap::new(),
            live: BTreeMap::new(),
            live_bytes: 0,
            window: window.max(1),
            rate: Rate::new(0),
        }
    }

    /// Limits the windows this server sends to `bytes_per_sec` (0: unlimited).
    pub fn with_rate(mut self, bytes_per_sec: u64) -> Transfers {
        self.rate = Rate::new(bytes_per_sec);
        self
    }

    /// The time is `now` (the rate limit's bucket refills with time).
    pub fn advance(&mut self, now: crate::rt::Instant) {
        self.rate.advance(now);
    }

    /// A new configuration was installed (`old` → `config`): a server that has just become a
    /// joiner starts its join (its old copy unverified), and the predecessor of each joiner
    /// starts (or resumes) sending.
    pub fn on_config(&mut self, store: &mut dyn Store, old: &Config, config: &Config) -> Effects {
        let me = self.me;
        self.received.retain(|r| config.joining(*r) == Some(me));
        self.progress.retain(|r, _| config.joining(*r) == Some(me));
        self.received_counts
            .retain(|r, _| config.joining(*r) == Some(me));
        self.live.retain(|r, _| config.joining(*r) == Some(me));
        self.recount_live();
        for (region, pos) in config.regions_of(me) {
            let mine = config.joiner(region).filter(|j| j.server == me);
            // A join is identified by (server, since): the member it replaces may change
            // while it runs (that member failed) without starting it over.
            if mine.is_some() && old.joiner(region).map(Joiner::id) != mine.map(Joiner::id) {
                self.start_joining(region, mine);
            }
            let joiner = config
                .joiner(region)
                .filter(|j| config.chain(region).get(pos + 1) == Some(&j.server));
            match joiner {
                Some(j) => self.become_source(old, region, j),
                None => {
                    if let Some(o) = self.outgoing.remove(&region) {
                        abandoned(&o);
                    }
                }
            }
        }
        self.outgoing.retain(|r, o| {
            let chain = config.chain(*r);
            let pred = chain
                .iter()
                .position(|&m| m == o.to)
                .and_then(|p| p.checked_sub(1));
            let keep =
                config.joining(*r) == Some(o.to) && pred.and_then(|p| chain.get(p)) == Some(&me);
            if !keep {
                abandoned(o);
            }
            keep
        });
        // The joiners' configuration changed with ours: resend from the last window each
        // acknowledged (a window sent in the old configuration is refused in the new one).
        // A transfer the joiner finished stays finished: the same join needs nothing more.
        for o in self.outgoing.values_mut() {
            o.waiting = None;
        }
        self.send_windows(store, config, None)
    }

    fn start_joining(&mut self, region: RegionId, join: Option<Joiner>) {
        self.received.remove(&region);
        self.progress.remove(&region);
        self.received_counts.remove(&region);
        self.live.remove(&region);
        self.recount_live();
        tracing::debug!(server = self.me.0, %region, ?join, "joining: the old copy is unverified");
    }

    /// Whether this server's copy of `key` in `region` is to be taken as absent: it joins the
    /// region, the transfer has not reached the key yet, and no write reached the key during
    /// this join. What it holds there is from an earlier life and may never have been
    /// committed, so a write must not be judged against it.
    pub fn unverified(&self, config: &Config, region: RegionId, key: &[u8]) -> bool {
        config.joining(region) == Some(self.me)
            && !self.received.contains(&region)
            && self
                .progress
                .get(&region)
                .is_none_or(|p| p.as_deref().is_none_or(|p| key > p))
            && !self.live.get(&region).is_some_and(|l| l.contains(key))
            && !planted(Bug::TrustStaleCopy)
    }

    /// A write reached an unverified key (see [`Transfers::unverified`]) and is about to be
    /// stored: remembers the key, so the transfer keeps the write. Returns `false` if too
    /// many keys are remembered already; then the write must wait for the transfer to pass
    /// the key (its sender resends it).
    pub fn written_live(&mut self, region: RegionId, key: &[u8]) -> bool {
        if self.live_bytes + key.len() > JOIN_LIVE_BYTES {
            crate::probe!("transfer.live_keys_full");
            return false;
        }
        if self.live.entry(region).or_default().insert(key.to_vec()) {
            self.live_bytes += key.len();
        }
        true
    }

    fn recount_live(&mut self) {
        self.live_bytes = self.live.values().flatten().map(Vec::len).sum();
    }

    fn become_source(&mut self, old: &Config, region: RegionId, j: Joiner) {
        // A source that was not this join's source a moment ago starts over (the joiner
        // tells it where it really is).
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
                    waiting: None,
                    held: None,
                },
            );
        }
    }

    /// Sends the current window of every active transfer (to `only`, if given) that has
    /// not been sent since it last moved: after a configuration change or when a connection
    /// to the joiner came up again (with `waiting` cleared by the caller), or when a transfer
    /// becomes active.
    pub fn send_windows(
        &mut self,
        store: &mut dyn Store,
        config: &Config,
        only: Option<ServerId>,
    ) -> Effects {
        let mut out = Vec::new();
        let active: Vec<RegionId> = self.active().collect();
        for region in active {
            let o = &self.outgoing[&region];
            if o.waiting.is_none() && only.is_none_or(|p| p == o.to) {
                if !self.rate.may_send() {
                    // Sent on a later tick, once the rate allows.
                    crate::probe!("transfer.rate_limited");
                    break;
                }
                out.push(self.window(store, config, region)?);
            }
        }
        Ok(out)
    }

    /// The transfers being sent now: for each joiner, the first [`ACTIVE_TRANSFERS`] not
    /// done (so a joiner this server cannot reach holds up no other joiner's transfers).
    fn active(&self) -> impl Iterator<Item = RegionId> + '_ {
        let mut per_joiner: BTreeMap<ServerId, usize> = BTreeMap::new();
        self.outgoing
            .iter()
            .filter(|(_, o)| !o.done)
            .filter(move |(_, o)| {
                let n = per_joiner.entry(o.to).or_default();
                *n += 1;
                *n <= ACTIVE_TRANSFERS
            })
            .map(|(r, _)| *r)
    }

    /// The current window of the transfer of `region` (marked sent).
    fn window(
        &mut self,
        store: &dyn Store,
        config: &Config,
        region: RegionId,
    ) -> Result<Effect, StoreError> {
        let me = self.me;
        let o = self
            .outgoing
            .get_mut(&region)
            .expect("a window only of a transfer in progress");
        if o.held.is_none() {
            // Not known yet what the joiner holds: ask first.
            o.waiting = Some(0);
            return Ok(Effect::Send(
                o.to,
                ChainMessage::TransferQuery(TransferQuery {
                    config_version: config.version,
                    region,
                }),
            ));
        }
        let Window {
            entries,
            through,
            bytes,
        } = read_window(
            store,
            (table_of(config, region), region),
            o.cursor.as_deref(),
            self.window,
            o.held.as_ref(),
        )?;
        tracing::debug!(
            server = me.0, %region, to = o.to.0, after = ?o.cursor, objects = entries.len(),
            ?through, config = config.version, "transfer window"
        );
        o.waiting = Some(0);
        self.rate.spend(bytes);
        Ok(Effect::Send(
            o.to,
            ChainMessage::TransferData(TransferData {
                config_version: config.version,
                region,
                after: o.cursor.clone(),
                entries,
                through,
                held: Vec::new(),
            }),
        ))
    }

    /// A connection to `peer` came up again: what was in flight to it may be lost.
    pub fn peer_up(&mut self, store: &mut dyn Store, config: &Config, peer: ServerId) -> Effects {
        for o in self.outgoing.values_mut().filter(|o| o.to == peer) {
            o.waiting = None;
        }
        self.send_windows(store, config, Some(peer))
    }

    /// The joiner's side: stores a window if it is the next one, and acknowledges.
    pub fn on_data(&mut self, store: &mut dyn Store, config: &Config, t: TransferData) -> Effects {
        let mut out = Vec::new();
        let Some(pred) = self.source_of(config, t.region) else {
            return Ok(out);
        };
        tracing::debug!(
            server = self.me.0, region = %t.region, after = ?t.after, objects = t.entries.len(),
            through = ?t.through, config = t.config_version, "transfer window received"
        );
        let progress = self.progress.entry(t.region).or_default().clone();
        if self.received.contains(&t.region) {
            // A window sent again after the last one was applied: applying it again would
            // remove keys written since (it does not have them). Answered as a query is.
            crate::probe!("transfer.window_after_done");
            return self.on_query(store, config, t.region);
        }
        if t.after != progress {
            // Not the next window: tell the source where to resume.
            crate::probe!("transfer.rewound");
            return self.on_query(store, config, t.region);
        }
        let live = self.live.entry(t.region).or_default();
        let table = table_of(config, t.region);
        let applied = reconcile::apply_window(store, &t, table, live)?;
        if let Some(upto) = &applied.upto {
            // Keys up to here are verified now.
            let mut beyond = live.split_off(upto);
            let at = beyond.take(upto);
            let passed = std::mem::replace(live, beyond);
            self.live_bytes -= passed.iter().chain(&at).map(Vec::len).sum::<usize>();
        }
        let counts = *self
            .received_counts
            .entry(t.region)
            .and_modify(|c| *c = (c.0 + applied.objects, c.1 + applied.bytes))
            .or_insert((applied.objects, applied.bytes));
        let before = counts.0 - applied.objects;
        if counts.0 / PROGRESS_LOG_EVERY > before / PROGRESS_LOG_EVERY {
            tracing::info!(
                region = %t.region, objects = counts.0, megabytes = counts.1 / 1_000_000,
                "state transfer: receiving"
            );
        }
        self.progress.insert(t.region, applied.upto.clone());
        if applied.complete {
            self.live.remove(&t.region);
            self.recount_live();
            if self.received.insert(t.region) {
                tracing::info!(
                    region = %t.region, objects = counts.0, whole_bytes = counts.1,
                    "state transfer complete (objects compared; bytes of those sent whole)"
                );
                crate::probe!("transfer.completed");
            }
            if let Some(j) = config.joiner(t.region) {
                out.push(Effect::Done(t.region, j.since));
            }
        }
        out.push(self.ack(
            store,
            config,
            pred,
            t.region,
            applied.upto,
            applied.complete,
        )?);
        Ok(out)
    }

    /// The source of this server's join of `region` (`None`: it does not join it).
    fn source_of(&self, config: &Config, region: RegionId) -> Option<ServerId> {
        if config.joining(region) != Some(self.me) {
            return None;
        }
        let chain = config.chain(region);
        let pos = chain.iter().position(|&m| m == self.me)?;
        pos.checked_sub(1).map(|p| chain[p])
    }

    /// The joiner's side: the source asks where it is and what it holds.
    pub fn on_query(
        &mut self,
        store: &mut dyn Store,
        config: &Config,
        region: RegionId,
    ) -> Effects {
        let Some(pred) = self.source_of(config, region) else {
            return Ok(Vec::new());
        };
        let upto = self.progress.get(&region).cloned().flatten();
        let done = self.received.contains(&region);
        Ok(vec![self.ack(store, config, pred, region, upto, done)?])
    }

    /// The joiner's acknowledgement: where it is, and what it holds after that.
    fn ack(
        &self,
        store: &dyn Store,
        config: &Config,
        to: ServerId,
        region: RegionId,
        upto: Option<Vec<u8>>,
        done: bool,
    ) -> Result<Effect, StoreError> {
        let (held, held_all) = if done {
            (Vec::new(), true)
        } else {
            let at = (table_of(config, region), region);
            held_after(store, at, upto.as_deref(), self.window)?
        };
        Ok(Effect::Send(
            to,
            ChainMessage::TransferAck(TransferAck {
                config_version: config.version,
                region,
                upto,
                done,
                held,
                held_all,
            }),
        ))
    }

    /// How far each join of this server has got (what its heartbeats report).
    pub fn joining(&self, config: &Config) -> Vec<JoinProgress> {
        self.received_counts
            .iter()
            .filter_map(|(region, (objects, bytes))| {
                let j = config.joiner(*region).filter(|j| j.server == self.me)?;
                Some(JoinProgress {
                    region: *region,
                    since: j.since,
                    objects: *objects,
                    bytes: *bytes,
                })
            })
            .collect()
    }

    /// The source's side: the joiner says where it is; resume from there (possibly back,
    /// if a window was not the one it expected).
    pub fn on_ack(
        &mut self,
        store: &mut dyn Store,
        config: &Config,
        mut a: TransferAck,
    ) -> Effects {
        let Some(o) = self.outgoing.get_mut(&a.region) else {
            return Ok(Vec::new());
        };
        if a.done && a.upto.as_deref() < o.cursor.as_deref() {
            return Ok(Vec::new());
        }
        let answers_query = o.held.is_none();
        o.held = Some((std::mem::take(&mut a.held), a.held_all));
        // The same place again while a window after it is in flight: a duplicate (of an ack,
        // or the joiner's answer to a duplicate window). Answering it would start a second
        // stream of windows; a window really lost is sent again after `RESEND_TICKS`.
        if !a.done && a.upto == o.cursor && o.waiting.is_some() && !answers_query {
            return Ok(Vec::new());
        }
        o.cursor = a.upto;
        o.windows += 1;
        if o.windows.is_multiple_of(100) {
            tracing::info!(region = %a.region, to = o.to.0, windows = o.windows, "state transfer in progress");
        }
        if a.done {
            // Done: the next transfer waiting, if any, becomes active.
            o.done = true;
            return self.send_windows(store, config, None);
        }
        if !self.rate.may_send() {
            // The next window goes on a later tick, once the rate allows.
            crate::probe!("transfer.rate_limited");
            o.waiting = None;
            return Ok(Vec::new());
        }
        Ok(vec![self.window(store, config, a.region)?])
    }

    /// Periodically: resend windows long unacknowledged (one may have been lost) and report again the
    /// regions received completely (the report may have been lost).
    pub fn tick(&mut self, store: &mut dyn Store, config: &Config) -> Effects {
        let active: Vec<RegionId> = self.active().collect();
        for region in active {
            if let Some(o) = self.outgoing.get_mut(&region) {
                match o.waiting {
                    Some(t) if t + 1 >= RESEND_TICKS => o.waiting = None,
                    Some(t) => o.waiting = Some(t + 1),
                    None => {}
                }
            }
        }
        let mut out = self.send_windows(store, config, None)?;
        for r in &self.received {
            if let Some(j) = config.joiner(*r).filter(|j| j.server == self.me) {
                out.push(Effect::Done(*r, j.since));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
