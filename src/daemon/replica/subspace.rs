//! Value-dependent chaining: a write of a space with subspaces reaches the regions of its
//! other subspaces before it commits (see `hyperspace::entry` for what those regions keep and
//! why, and docs/search.md).
//!
//! - The **key region's tail** (or its head, alone in the chain) does not commit a write of
//!   such a space on arrival: it keeps it pending and sends a [`SubspaceUpdate`] to the head
//!   of each subspace region the write touches (the new object's region, and the old one's
//!   when the object moves). Each region's head passes it down its chain; every member takes
//!   it into its entry for the key (durably, with its batch) and the region's tail
//!   acknowledges it up the chain; the region's head tells the key region's tail
//!   ([`ChainMessage::UpdateDone`]). Once every update of a write, and of every write before
//!   it, is done, the key tail commits it and acknowledges it up the key chain as before. So
//!   the key's head shows a version only after every subspace region it touches holds it.
//! - **Retransmission** is the key tail's alone: it resends the updates not yet done on ticks
//!   (with its pending writes, backing off: `Backoff`), on a new configuration and when a
//!   subspace head reconnects; subspace members keep no pending state (taking in an update
//!   twice changes nothing, and is not written again).
//! - A server that **becomes the key region's tail** with writes pending sends their updates
//!   (each write's old object is the one before it, pending or stored).

use hyperdex_model::Object;

use super::{Output, Outputs, Replica};
use crate::bugs::{planted, Bug};
use crate::config::{Config, RegionId, ServerId};
use crate::daemon::record::{load_without_records, object_key};
use crate::hyperspace::entry::{Entry, Update};
use crate::protocol::{ChainMessage, ChainWrite, SubspaceAck, SubspaceUpdate};
use crate::storage::{Store, StoreError, Table};

/// A subspace region's entry for `key` (an empty one if there is none or it is unreadable).
pub fn load_entry(
    store: &dyn Store,
    region: RegionId,
    key: &[u8],
) -> Result<Entry<Object>, StoreError> {
    let bytes = store.get(Table::Subspace, &object_key(region, key))?;
    Ok(bytes
        .and_then(|b| postcard::from_bytes(&b).ok())
        .unwrap_or_default())
}

pub(crate) fn stage_entry(
    store: &mut dyn Store,
    region: RegionId,
    key: &[u8],
    entry: &Entry<Object>,
) {
    let bytes = postcard::to_allocvec(entry).unwrap_or_default();
    store.put(Table::Subspace, &object_key(region, key), Some(bytes));
}

/// The object a write replaces, as the server computing its subspace updates knows it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Old<'a> {
    /// Stored or pending here (none: the key had no object).
    Known(Option<&'a Object>),
    /// Not known: a joiner's copy of the key has not been verified by its transfer yet.
    Unknown,
}

impl<W: Clone> Replica<W> {
    /// The updates write `w` sends to other subspaces' regions, given the object it
    /// replaces (none for a space without subspaces).
    pub(super) fn updates_of(&self, w: &ChainWrite, old: Old<'_>) -> Vec<SubspaceUpdate> {
        let Some(space) = self.config.space_by_id(w.region.space) else {
            return Vec::new();
        };
        if space.schema.subspaces.is_empty() {
            return Vec::new();
        }
        let Ok(key) = hyperdex_model::value::decode(&w.key) else {
            return Vec::new();
        };
        tracing::debug!(
            server = self.me.0, region = %w.region, key = %String::from_utf8_lossy(&w.key),
            version = w.version, ?old, "subspace updates of a write"
        );
        let mut out = Vec::new();
        for (i, sub) in crate::hyperspace::of_space(space).iter().enumerate() {
            let new = w.object.as_ref().map(|o| sub.region_of(&key, o));
            // Where the object is no longer: the old object's region if it moved, or, when
            // the old object is not known here, every other region of the subspace.
            let gone: Vec<u32> = match old {
                Old::Known(o) => o
                    .map(|o| sub.region_of(&key, o))
                    .filter(|r| Some(*r) != new)
                    .into_iter()
                    .collect(),
                Old::Unknown => (0..space.key_regions())
                    .filter(|r| Some(*r) != new)
                    .collect(),
            };
            // The planted bug drops the new region's update when the object moves.
            let skipped = planted(Bug::SubspaceHopSkipped) && !gone.is_empty();
            let targets = new
                .filter(|_| !skipped)
                .map(|r| (r, w.object.clone()))
                .into_iter()
                .chain(gone.into_iter().map(|r| (r, None)));
            for (r, object) in targets {
                out.push(SubspaceUpdate {
                    config_version: self.config.version,
                    region: space.subspace_region(i + 1, r),
                    key: w.key.clone(),
                    version: w.version,
                    object,
                });
            }
        }
        out
    }

    /// The key region's tail of `key` in space `region.space`.
    fn key_tail(&self, region: RegionId, key: &[u8]) -> Option<ServerId> {
        let space = self.config.space_by_id(region.space)?;
        self.config
            .chain(space.region_of_bytes(key))
            .last()
            .copied()
    }

    /// The only server that may send a subspace message `msg` here (see `on_chain`).
    pub(super) fn subspace_sender(&self, msg: &ChainMessage) -> Option<ServerId> {
        let region = msg.region();
        let chain = self.config.chain(region);
        match msg {
            ChainMessage::Update(u) => match self.position(region)?.0 {
                0 => self.key_tail(region, &u.key),
                pos => Some(chain[pos - 1]),
            },
            ChainMessage::Updated(_) => chain.get(self.position(region)?.0 + 1).copied(),
            ChainMessage::UpdateDone(_) => chain.first().copied(),
            _ => None,
        }
    }

    /// A subspace region's member takes in an update and passes it on (down the chain, or,
    /// at the tail, its acknowledgement up).
    pub(super) fn on_update(
        &mut self,
        store: &mut dyn Store,
        u: SubspaceUpdate,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        let Some((pos, chain)) = self.position(u.region) else {
            return Ok(());
        };
        let chain = chain.to_vec();
        // A joiner notes the keys updated before its transfer reached them (the transfer then
        // merges instead of replacing); when it can note no more, the update waits for a
        // resend.
        let unverified = self.transfers.unverified(&self.config, u.region, &u.key);
        if unverified && !self.transfers.written_live(u.region, &u.key) {
            return Ok(());
        }
        let mut entry = load_entry(store, u.region, &u.key)?;
        tracing::debug!(
            server = self.me.0, region = %u.region, key = %String::from_utf8_lossy(&u.key),
            version = u.version, values = u.object.is_some(), held = entry.version, unverified,
            "subspace update"
        );
        let before = entry.clone();
        entry.absorb(Update {
            version: u.version,
            now: u.object.clone(),
        });
        // An update taken before (a resend) changes nothing: the entry is not written again.
        if entry != before {
            stage_entry(store, u.region, &u.key, &entry);
        }
        if entry.unsettled().is_some() {
            self.note_settling(u.region, &u.key);
        }
        if let Some(&succ) = chain.get(pos + 1) {
            out.push(Output::Send(succ, ChainMessage::Update(u)));
            return Ok(());
        }
        let ack = SubspaceAck {
            config_version: self.config.version,
            region: u.region,
            key: u.key,
            version: u.version,
            object: u.object.is_some(),
        };
        self.pass_up(pos, &chain, ack, out);
        Ok(())
    }

    /// An acknowledgement from the successor in a subspace region's chain: passed on if this
    /// member holds the update too (after a restart it may not; the key tail resends it).
    pub(super) fn on_updated(
        &mut self,
        store: &mut dyn Store,
        a: SubspaceAck,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        let Some((pos, chain)) = self.position(a.region) else {
            return Ok(());
        };
        let chain = chain.to_vec();
        if load_entry(store, a.region, &a.key)?.took(a.version, a.object) {
            self.pass_up(pos, &chain, a, out);
        }
        Ok(())
    }

    fn pass_up(&self, pos: usize, chain: &[ServerId], mut a: SubspaceAck, out: &mut Outputs<W>) {
        a.config_version = self.config.version;
        if pos > 0 {
            out.push(Output::Send(chain[pos - 1], ChainMessage::Updated(a)));
        } else if let Some(tail) = self.key_tail(a.region, &a.key) {
            out.push(Output::Send(tail, ChainMessage::UpdateDone(a)));
        }
    }

    /// At the key region's tail: a subspace region holds an update of a pending write. Writes
    /// whose updates are all done, in order, commit.
    pub(super) fn on_update_done(
        &mut self,
        store: &mut dyn Store,
        a: SubspaceAck,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        let Some(space) = self.config.space_by_id(a.region.space) else {
            return Ok(());
        };
        let slot = (space.region_of_bytes(&a.key), a.key);
        let tail = self.position(slot.0).is_some_and(|(p, c)| p + 1 == c.len());
        let Some(p) = self
            .pending
            .get_mut(&slot)
            .filter(|_| tail)
            .and_then(|p| p.get_mut(&a.version))
        else {
            return Ok(());
        };
        if let Some(awaiting) = &mut p.awaiting {
            awaiting.retain(|u| u.region != a.region);
        }
        self.commit_done(store, slot.0, &slot.1, out)
    }

    /// Commits the pending writes of a key, from the oldest, whose subspace updates are all
    /// done, as an acknowledgement from a successor would.
    pub(super) fn commit_done(
        &mut self,
        store: &mut dyn Store,
        region: RegionId,
        key: &[u8],
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        let top = self.pending.get(&(region, key.to_vec())).and_then(|pend| {
            pend.iter()
                .take_while(|(_, p)| p.awaiting.as_ref().is_some_and(Vec::is_empty))
                .last()
                .map(|(v, _)| *v)
        });
        match top {
            Some(top) => {
                let ack = self.ack(key, region, top);
                self.on_chain_ack(store, ack, out)
            }
            None => Ok(()),
        }
    }

    /// At the end of the key chain: the subspace updates of every pending write of a key that
    /// has none yet (it arrived while this server had a successor); they are sent with the
    /// others not yet done.
    pub(super) fn hold_for_subspaces(
        &mut self,
        store: &dyn Store,
        region: RegionId,
        key: &[u8],
    ) -> Result<(), StoreError> {
        let slot = (region, key.to_vec());
        let Some(pend) = self.pending.get(&slot) else {
            return Ok(());
        };
        let unverified = self.transfers.unverified(&self.config, region, key);
        let mut old = load_without_records(store, region, key)?.0.object;
        let mut computed = Vec::new();
        for (i, (v, p)) in pend.iter().enumerate() {
            if p.awaiting.is_none() {
                let before = match (i, unverified) {
                    (0, true) => Old::Unknown,
                    _ => Old::Known(old.as_ref()),
                };
                computed.push((*v, self.updates_of(&p.write, before)));
            }
            old = p.write.object.clone();
        }
        let pend = self.pending.get_mut(&slot).expect("looked up above");
        for (v, updates) in computed {
            if let Some(p) = pend.get_mut(&v) {
                p.awaiting = Some(updates);
            }
        }
        Ok(())
    }

    /// Resends the subspace updates not yet done (only those for subspace heads `only`, if
    /// given).
    pub(super) fn resend_updates(&self, only: Option<ServerId>, out: &mut Outputs<W>) {
        let awaiting = self
            .pending
            .values()
            .flat_map(|pend| pend.values())
            .filter_map(|p| p.awaiting.as_ref())
            .flatten();
        let to_only = |u: &&SubspaceUpdate| {
            only.is_none_or(|o| self.config.chain(u.region).first() == Some(&o))
        };
        send_again(&self.config, awaiting.filter(to_only), out);
    }
}

/// Sends each update again to its region's head, stamped with the configuration in force.
pub(super) fn send_again<'a, W>(
    config: &Config,
    updates: impl Iterator<Item = &'a SubspaceUpdate>,
    out: &mut Outputs<W>,
) {
    for u in updates {
        let u = SubspaceUpdate {
            config_version: config.version,
            ..u.clone()
        };
        send_updates(config, std::iter::once(&u), out);
    }
}

/// Sends each update to its region's head.
pub(super) fn send_updates<'a, W>(
    config: &Config,
    updates: impl Iterator<Item = &'a SubspaceUpdate>,
    out: &mut Outputs<W>,
) {
    for u in updates {
        if let Some(&head) = config.chain(u.region).first() {
            out.push(Output::Send(head, ChainMessage::Update(u.clone())));
        }
    }
}
