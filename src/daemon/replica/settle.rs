//! Forgetting what subspace regions keep only for searches in progress (`hyperspace::entry`):
//! a former value may go once the key's head has committed the version that replaced it and a
//! search's longest life ([`SEARCH_LIFE`]) has passed since.
//!
//! Each member of a subspace region does this on its own, on every tick:
//! - keys it took an update for are noted (at most [`GC_KEYS`]); a sweep through its whole
//!   table, a window per tick, notes the rest (what a restart forgot, what did not fit);
//! - for noted keys with nothing learned yet it asks the key's head, at most
//!   [`SETTLE_BATCH`] keys a message, which version it has committed (the version reads
//!   return there; an old or restarted head can only answer too low, which keeps more);
//! - a search's life after an answer came, it drops what that answer settles.

use std::collections::BTreeMap;

use hyperdex_model::Object;

use super::subspace::{load_entry, stage_entry};
use super::{Output, Outputs, Replica};
use crate::config::{RegionId, ServerId, SpaceId};
use crate::daemon::record::{object_key, stored_version, REGION_PREFIX_LEN};
use crate::hyperspace::entry::Entry;
use crate::limits::{GC_KEYS, SEARCH_LIFE, SETTLE_BATCH};
use crate::protocol::{ChainMessage, SettleAnswer, SettleQuery};
use crate::rt::Instant;
use crate::storage::{Store, StoreError, Table};

/// What a member knows of the keys it must settle: the version the key's head had committed
/// and when that was learned (`None`: to ask).
pub(super) type Settling = BTreeMap<(RegionId, Vec<u8>), Option<(u64, Instant)>>;

/// Entries of the table read per tick by the sweep.
const SWEEP_WINDOW: usize = 256;

fn parse(store_key: &[u8]) -> Option<(RegionId, Vec<u8>)> {
    let (prefix, key) = store_key.split_at_checked(REGION_PREFIX_LEN)?;
    let space = SpaceId(u64::from_be_bytes(prefix[..8].try_into().ok()?));
    let index = u32::from_be_bytes(prefix[8..].try_into().ok()?);
    Some((RegionId { space, index }, key.to_vec()))
}

impl<W: Clone> Replica<W> {
    /// Notes a key of a subspace region to settle.
    pub(super) fn note_settling(&mut self, region: RegionId, key: &[u8]) {
        if self.settling.len() < GC_KEYS {
            self.settling.entry((region, key.to_vec())).or_insert(None);
        }
    }

    /// One tick of settling: sweep a window, drop what is settled, ask about the rest.
    pub(super) fn settle_tick(
        &mut self,
        store: &mut dyn Store,
        now: Instant,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        let window = store.scan_from(Table::Subspace, &[], self.sweep.as_deref(), SWEEP_WINDOW)?;
        self.sweep = window.last().map(|(k, _)| k.clone());
        for (k, bytes) in window {
            let entry = postcard::from_bytes::<Entry<Object>>(&bytes);
            if let (Some((region, key)), Ok(e)) = (parse(&k), entry) {
                if e.unsettled().is_some() {
                    self.note_settling(region, &key);
                }
            }
        }
        let due: Vec<_> = self
            .settling
            .iter()
            .filter_map(|(slot, s)| {
                s.filter(|(_, at)| now >= *at + SEARCH_LIFE)
                    .map(|s| (slot.clone(), s))
            })
            .collect();
        for ((region, key), (committed, at)) in due {
            let mut e = load_entry(store, region, &key)?;
            e.settle(committed, at);
            let gone = e.expire(now, SEARCH_LIFE);
            if gone {
                crate::probe!("subspace.entry_forgotten");
                store.put(Table::Subspace, &object_key(region, &key), None);
            } else {
                stage_entry(store, region, &key, &e);
            }
            if !gone && e.unsettled().is_some() {
                self.settling.insert((region, key), None);
            } else {
                self.settling.remove(&(region, key));
            }
        }
        self.ask(out);
        Ok(())
    }

    /// Asks the keys' heads about the keys nothing is known of yet.
    fn ask(&mut self, out: &mut Outputs<W>) {
        let mut queries: BTreeMap<(ServerId, RegionId, RegionId), Vec<Vec<u8>>> = BTreeMap::new();
        let mut gone = Vec::new();
        for ((region, key), s) in &self.settling {
            if s.is_some() {
                continue;
            }
            let space = self.config.space_by_id(region.space);
            let (Some(space), Some(_)) = (space, self.position(*region)) else {
                gone.push((*region, key.clone()));
                continue;
            };
            let key_region = space.region_of_bytes(key);
            let Some(&head) = self.config.chain(key_region).first() else {
                continue;
            };
            let keys = queries.entry((head, key_region, *region)).or_default();
            if keys.len() < SETTLE_BATCH {
                keys.push(key.clone());
            }
        }
        for slot in gone {
            self.settling.remove(&slot);
        }
        for ((head, region, subspace), keys) in queries {
            let q = SettleQuery {
                config_version: self.config.version,
                region,
                subspace,
                keys,
            };
            out.push(Output::Send(head, ChainMessage::SettleQuery(q)));
        }
    }

    /// At a key region's head: the version committed of each key asked about.
    pub(super) fn on_settle_query(
        &mut self,
        store: &dyn Store,
        from: ServerId,
        q: SettleQuery,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        let Some(space) = self.config.space_by_id(q.region.space) else {
            return Ok(());
        };
        let mut versions = Vec::with_capacity(q.keys.len().min(SETTLE_BATCH));
        for key in q.keys.into_iter().take(SETTLE_BATCH) {
            if space.region_of_bytes(&key) == q.region {
                let version = stored_version(store, q.region, &key)?;
                versions.push((key, version));
            }
        }
        let a = SettleAnswer {
            config_version: self.config.version,
            region: q.region,
            subspace: q.subspace,
            versions,
        };
        out.push(Output::Send(from, ChainMessage::SettleAnswer(a)));
        Ok(())
    }

    /// From a key region's head: what it has committed, learned now.
    pub(super) fn on_settle_answer(&mut self, now: Instant, a: SettleAnswer) {
        let Some(space) = self.config.space_by_id(a.region.space) else {
            return;
        };
        for (key, version) in a.versions {
            if space.region_of_bytes(&key) != a.region {
                continue;
            }
            if let Some(s) = self.settling.get_mut(&(a.subspace, key)) {
                if s.is_none() {
                    *s = Some((version, now));
                }
            }
        }
    }

    /// Whether `from` may send this settling message: a query comes from a member of the
    /// subspace region and goes to the key region's head; the answer comes from that head.
    pub(super) fn settle_sent_by(&self, msg: &ChainMessage, from: ServerId) -> bool {
        match msg {
            ChainMessage::SettleQuery(q) => {
                self.position(q.region).is_some_and(|(pos, _)| pos == 0)
                    && q.subspace.space == q.region.space
                    && self.config.chain(q.subspace).contains(&from)
            }
            ChainMessage::SettleAnswer(a) => self.config.chain(a.region).first() == Some(&from),
            _ => false,
        }
    }
}
