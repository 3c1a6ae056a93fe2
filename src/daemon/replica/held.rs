//! Writes committed before the regions of their space's other subspaces hold them.
//!
//! A member that restarts commits the writes it held pending on disk (`durable::promote`):
//! the chain may have acknowledged them, so reads and searches must see them. For a space
//! with subspaces that commit can come before the subspaces' regions have the write, so the
//! member also keeps holding it pending, with updates that tell every other region of each
//! subspace that the object is not there (its old object is gone). The obligation travels
//! with the object:
//!
//! - a transfer window that carries such an object carries the write too
//!   ([`Replica::attach_held`]), and the joiner, the region's new tail, holds it
//!   ([`Replica::take_held`]);
//! - a key tail that receives a write whose version it already stores holds it the same way
//!   ([`Replica::recheck`]): it may have the object only from such a transfer or promotion.
//!
//! Once the subspaces' regions hold the write, the tail acknowledges it up the chain and
//! every member lets it go, as for any other write.

use std::collections::btree_map::Entry;

use super::durable;
use super::subspace::{send_updates, Old};
use super::{Output, Outputs, Pending, PendingWrites, Replica};
use crate::bugs::{planted, Bug};
use crate::config::RegionId;
use crate::daemon::record::stored_version;
use crate::protocol::{ChainMessage, ChainWrite, SearchRequest, SubspaceUpdate};
use crate::storage::{Store, StoreError};

impl<W: Clone> Replica<W> {
    /// At the key tail, a write of a space with subspaces whose version it already stores:
    /// it is held pending until the other subspaces' regions hold it, telling every other
    /// region of each subspace that the object is not there. Whether it is held (false: the
    /// space has no subspaces, acknowledge now).
    pub(super) fn recheck(
        &mut self,
        store: &mut dyn Store,
        w: &ChainWrite,
        out: &mut Outputs<W>,
    ) -> bool {
        let slot = (w.region, w.key.clone());
        if self
            .pending
            .get(&slot)
            .is_some_and(|p| p.contains_key(&w.version))
        {
            return true;
        }
        if planted(Bug::StoredNotRechecked) {
            return false;
        }
        let updates = self.updates_of(w, Old::Unknown);
        if updates.is_empty() {
            return false;
        }
        crate::probe!("subspace.stored_write_rechecked");
        self.hold(store, w.clone(), updates, out);
        true
    }

    /// At the key tail: holds write `w` pending (on disk) until the other subspaces' regions
    /// have taken `updates`, which it sends; a write already held stays as it is.
    pub(super) fn hold(
        &mut self,
        store: &mut dyn Store,
        w: ChainWrite,
        updates: Vec<SubspaceUpdate>,
        out: &mut Outputs<W>,
    ) {
        let pend = self.pending.entry((w.region, w.key.clone())).or_default();
        if let Entry::Vacant(slot) = pend.entry(w.version) {
            durable::keep(store, &w);
            send_updates(&self.config, updates.iter(), out);
            slot.insert(Pending::unwaited(w, Some(updates)));
        }
    }

    /// Adds to every transfer window among `out` the writes this server holds pending for
    /// keys in the window although it stores their version.
    pub(super) fn attach_held(
        &self,
        store: &dyn Store,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        if planted(Bug::HeldNotCarried) {
            return Ok(());
        }
        for o in out.iter_mut() {
            let Output::Send(_, ChainMessage::TransferData(t)) = o else {
                continue;
            };
            let subspaces = self
                .config
                .space_by_id(t.region.space)
                .is_some_and(|s| !s.schema.subspaces.is_empty());
            if !subspaces {
                continue;
            }
            let from = (t.region, t.after.clone().unwrap_or_default());
            for ((region, key), pend) in self.pending.range(from..) {
                if *region != t.region || t.through.as_ref().is_some_and(|th| key > th) {
                    break;
                }
                if t.after.as_ref() == Some(key) {
                    continue;
                }
                let stored = stored_version(store, *region, key)?;
                let held = pend.values().filter(|p| p.write.version <= stored);
                t.held.extend(held.map(|p| p.write.clone()));
            }
        }
        Ok(())
    }

    /// At a key's head: the write it shows although it holds it (stores it, and keeps it
    /// pending until the regions of its space's other subspaces hold it), if any. Such a write
    /// may never have been acknowledged, and a search through a subspace would not find it
    /// yet: whoever observes it waits until those regions hold it. `stored`: the version the
    /// head stores.
    pub(super) fn held_shown(
        &mut self,
        region: RegionId,
        key: &[u8],
        stored: u64,
    ) -> Option<&mut Pending<W>> {
        let pend = self.pending.get_mut(&(region, key.to_vec()))?;
        if planted(Bug::HeldShown) || !holds_stored(pend, stored) {
            return None;
        }
        pend.values_mut().next()
    }

    /// At a search's head: the first of the key regions `req` reads with a key whose held
    /// write it shows (see [`shows_held`](Self::shows_held)), among the keys it looks up if
    /// it names any; such a region is not searched until those held writes are done.
    pub(super) fn region_showing_held(
        &self,
        store: &dyn Store,
        req: &SearchRequest,
    ) -> Result<Option<RegionId>, StoreError> {
        if planted(Bug::HeldShown) {
            return Ok(None);
        }
        let shows = |region: RegionId, key: &[u8], pend: &PendingWrites<W>| {
            Ok::<_, StoreError>(holds_stored(pend, stored_version(store, region, key)?))
        };
        if let (false, Some(&region)) = (req.keys.is_empty(), req.regions.first()) {
            for key in &req.keys {
                let Some(pend) = self.pending.get(&(region, key.clone())) else {
                    continue;
                };
                if shows(region, key, pend)? {
                    return Ok(Some(region));
                }
            }
            return Ok(None);
        }
        for &region in &req.regions {
            let from = (region, Vec::new());
            for ((r, key), pend) in self.pending.range(from..) {
                if *r != region {
                    break;
                }
                if shows(region, key, pend)? {
                    return Ok(Some(region));
                }
            }
        }
        Ok(None)
    }

    /// The writes a transfer window carried as held at its source: as the region's tail,
    /// this server holds each whose version it now stores. A key the transfer has not
    /// verified (the window was refused) is skipped: what this server stores there is from
    /// an earlier life, and a version it has may be one a later head gave to another write.
    /// The source resends the write down the chain, or in a later window.
    pub(super) fn take_held(
        &mut self,
        store: &mut dyn Store,
        held: Vec<ChainWrite>,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        for w in held {
            let tail = self
                .position(w.region)
                .is_some_and(|(pos, chain)| pos + 1 == chain.len());
            if !tail {
                continue;
            }
            if self.transfers.unverified(&self.config, w.region, &w.key) {
                crate::probe!("subspace.held_of_unverified_skipped");
                continue;
            }
            if stored_version(store, w.region, &w.key)? == w.version {
                self.recheck(store, &w, out);
            }
        }
        Ok(())
    }
}

/// Whether a key's pending writes include one whose version is at most `stored`, the version
/// the member stores: a write it holds (see the module documentation), not one in flight.
pub(super) fn holds_stored<W>(pend: &PendingWrites<W>, stored: u64) -> bool {
    pend.keys().next().is_some_and(|first| *first <= stored)
}
