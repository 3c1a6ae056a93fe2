//! Retry records kept apart from their objects once a key has more than a few, so that a
//! write reads and rewrites the records of its own client only, not those of every client
//! that wrote the key lately.
//!
//! Up to [`INLINE_RECORDS`] records stay inline, in the object's entry ([`Table::Objects`]):
//! one read and one write per write, as cheap as it gets for a key few clients write. Beyond
//! that they go to table [`Table::Records`]: region prefix (12 bytes), the key's length (4
//! bytes, big-endian), the key, then the client id (8 bytes, big-endian) → that client's
//! records for the key (usually one). The object's entry then ends with a [`Summary`]: the
//! newest record time, how many records are stored apart, and a bound below every stored
//! record's time.
//!
//! The rules are `record`'s, applied as follows:
//!
//! - **expiry** is a filter: a record older than [`horizon`] before the newest one is not
//!   read; it is removed when its client writes the key again, or by a compaction;
//! - **the count limit** ([`DEDUPE_RECORDS`]) is kept by compaction: once more than
//!   [`DEDUPE_RECORDS`] + [`COMPACTION_SLACK`] records are stored, or a stored record expired
//!   long enough ago (a quarter of the horizon), a write reads every record of its key, drops
//!   the expired ones and the oldest beyond the limit, and writes back the rest (inline again
//!   if few are left). So a key written by many clients costs a write O(1) records on
//!   average, not O(clients);
//! - an object stored before records were kept apart (its records inline, no summary) reads
//!   as one whose records are inline.
//!
//! [`Writing`] is what the write path uses: the object and the records of the clients it
//! touches. [`load_full`] and [`stage_full`] read and write an object with every record (state
//! transfer, the simulation's audit), in a fixed order: by time, then client, then sequence
//! number; a transfer sends an object with its records inline ([`transfer_bytes`]).

use std::collections::BTreeMap;

use hyperdex_model::Object;
use serde::{Deserialize, Serialize};

use crate::bugs::{planted, Bug};
use crate::config::RegionId;
use crate::protocol::{ChainWrite, ClientId, Dedupe};
use crate::storage::{Store, StoreError, Table};

use super::record::{
    decode_apart, encode_apart, horizon, newest_of, object_key, prefixed, region_prefix, visible,
    StoredObject, DEDUPE_RECORDS, REGION_PREFIX_LEN, UNKNOWN_TIME,
};

/// Records a key may hold beyond [`DEDUPE_RECORDS`] before a write compacts them (8 in the
/// simulation, where the limit is 64).
pub const COMPACTION_SLACK: usize = if cfg!(madsim) { 8 } else { 256 };

/// The most records a key holds stored at any time: a write that would leave more compacts
/// them to [`DEDUPE_RECORDS`].
pub const MOST_STORED: usize = DEDUPE_RECORDS + COMPACTION_SLACK;

/// Up to this many records stay inline, in the object's entry: a write then reads and writes
/// one entry, not three. More go apart. (Two in the simulation, whose few clients would
/// otherwise never send a key's records apart.)
pub const INLINE_RECORDS: usize = if cfg!(madsim) { 2 } else { 16 };

/// What an object's entry says of its records kept apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The newest known record time (0: none).
    pub newest: u64,
    /// Records stored apart, expired ones not yet removed included.
    pub count: u64,
    /// No record stored apart has a known time below this (`u64::MAX`: none has one).
    pub oldest: u64,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            newest: 0,
            count: 0,
            oldest: u64::MAX,
        }
    }
}

impl Summary {
    /// Whether a write that leaves `count` records stored should compact the key's records
    /// (see the module documentation).
    fn compaction_due(&self, count: u64) -> bool {
        let h = horizon();
        if count > MOST_STORED as u64 && !planted(Bug::CountLimitIgnored) {
            crate::probe!("records.compacted_by_count");
            return true;
        }
        self.oldest != u64::MAX
            && self.newest != 0
            && self.oldest.saturating_add(h + h / 4) < self.newest
    }

    fn saw(&mut self, unix: u64) {
        if unix != UNKNOWN_TIME {
            self.newest = self.newest.max(unix);
            self.oldest = self.oldest.min(unix);
        }
    }
}

/// The store prefix of every record of `key`.
pub fn records_prefix(region: RegionId, key: &[u8]) -> Vec<u8> {
    prefixed(region, &[&(key.len() as u32).to_be_bytes(), key])
}

/// The store key of one client's records of `key`.
fn client_key(prefix: &[u8], client: ClientId) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&client.to_be_bytes());
    k
}

/// A client's records as stored; unreadable bytes read as none.
fn decode_records(bytes: &[u8]) -> Vec<Dedupe> {
    postcard::from_bytes(bytes).unwrap_or_default()
}

/// One client's records as a write holds them.
#[derive(Debug, Default)]
struct Held {
    /// The records read (the visible ones), then changed by the write.
    records: Vec<Dedupe>,
    /// How many records the stored entry has (expired ones included).
    stored: u64,
    changed: bool,
}

/// An object being written, with the records of the clients the write touches.
#[derive(Debug)]
pub struct Writing {
    pub version: u64,
    pub object: Option<Object>,
    region: RegionId,
    /// The object's store key: the region prefix, then the key ([`object_key`]).
    entry_key: Vec<u8>,
    summary: Summary,
    clients: BTreeMap<ClientId, Held>,
    /// `clients` holds every record of the key: they are inline (few), or were all read (a
    /// compaction), or the object replaces what is stored.
    whole: bool,
    /// The records table may hold entries of the key that `clients` does not reflect (a copy
    /// from an earlier life, or entries whose records are moving inline): staging removes
    /// them.
    stale_entries: bool,
    /// Every entry the records table holds for the key was read into `clients`.
    scanned: bool,
}

impl Writing {
    /// The object stored under `key` (never written: version 0): its inline records, or none
    /// of those kept apart read yet.
    pub fn load(store: &dyn Store, region: RegionId, key: &[u8]) -> Result<Writing, StoreError> {
        let w = Writing::fresh(region, key);
        let bytes = store.get(Table::Objects, &w.entry_key)?;
        let entry = bytes.and_then(|b| decode_apart(&b)).unwrap_or_default();
        w.of_entry(store, entry)
    }

    /// `self` (fresh) as the object whose entry decodes as `(stored, summary)` (see
    /// [`Writing::load`]).
    fn of_entry(
        self,
        store: &dyn Store,
        (stored, summary): (StoredObject, Summary),
    ) -> Result<Writing, StoreError> {
        let mut w = self;
        w.version = stored.version;
        w.object = stored.object;
        w.summary = summary;
        w.stale_entries = false;
        w.whole = summary.count == 0;
        if !stored.dedupe.is_empty() && !w.whole {
            // Both inline records and records apart (not written so; read both).
            w.read_all(store)?;
        }
        for d in stored.dedupe {
            w.summary.saw(d.unix);
            w.clients.entry(d.client).or_default().records.push(d);
        }
        Ok(w)
    }

    /// A key with no object and no records, replacing whatever is stored when staged.
    pub fn fresh(region: RegionId, key: &[u8]) -> Writing {
        Writing {
            version: 0,
            object: None,
            region,
            entry_key: object_key(region, key),
            summary: Summary::default(),
            clients: BTreeMap::new(),
            whole: true,
            stale_entries: true,
            scanned: false,
        }
    }

    /// The object's key.
    fn key(&self) -> &[u8] {
        &self.entry_key[REGION_PREFIX_LEN..]
    }

    /// The store prefix of the key's records kept apart ([`records_prefix`]).
    fn prefix(&self) -> Vec<u8> {
        records_prefix(self.region, self.key())
    }

    /// The store key of `client`'s records of the key (one allocation: the prefix has room).
    fn client_key(&self, client: ClientId) -> Vec<u8> {
        let mut k = self.prefix();
        k.extend_from_slice(&client.to_be_bytes());
        k
    }

    /// An object with every one of its records (`stored.dedupe`), replacing what is stored
    /// when staged.
    pub fn whole(region: RegionId, key: &[u8], stored: &StoredObject) -> Writing {
        let mut w = Writing::fresh(region, key);
        w.version = stored.version;
        w.object = stored.object.clone();
        for d in &stored.dedupe {
            w.summary.saw(d.unix);
            w.clients
                .entry(d.client)
                .or_default()
                .records
                .push(d.clone());
        }
        w
    }

    /// Reads `client`'s records, if not read yet.
    pub fn read_client(&mut self, store: &dyn Store, client: ClientId) -> Result<(), StoreError> {
        if self.whole || self.clients.contains_key(&client) {
            return Ok(());
        }
        let mut held = Held::default();
        if let Some(bytes) = store.get(Table::Records, &self.client_key(client))? {
            let records = decode_records(&bytes);
            held.stored = records.len() as u64;
            let newest = self.summary.newest;
            held.records = records.into_iter().filter(|d| visible(d, newest)).collect();
            if held.records.len() as u64 != held.stored {
                crate::probe!("record.expired_dropped");
            }
        }
        self.clients.insert(client, held);
        Ok(())
    }

    /// Reads every record of the key kept apart (those already read stay as they are).
    fn read_all(&mut self, store: &dyn Store) -> Result<(), StoreError> {
        if !self.whole {
            let prefix = self.prefix();
            let plen = prefix.len();
            for (k, v) in store.scan_prefix(Table::Records, &prefix)? {
                let Some(client) = client_of(&k, plen) else {
                    continue;
                };
                self.clients.entry(client).or_insert_with(|| {
                    let records = decode_records(&v);
                    Held {
                        stored: records.len() as u64,
                        records,
                        changed: false,
                    }
                });
            }
            self.scanned = true;
        }
        self.whole = true;
        self.stale_entries = true;
        Ok(())
    }

    /// The record of `client`'s request `seq`, if `client`'s records were read and hold it.
    pub fn find(&self, client: ClientId, seq: u64) -> Option<&Dedupe> {
        debug_assert!(self.whole || self.clients.contains_key(&client));
        self.clients
            .get(&client)?
            .records
            .iter()
            .find(|d| d.seq == seq)
    }

    /// The newest known record time.
    pub fn newest(&self) -> Option<u64> {
        (self.summary.newest != 0).then_some(self.summary.newest)
    }

    /// Adds a write's record (once), unless its client's records say the client no longer
    /// needs it (a later request's `low_seq` is above it), and drops that client's records
    /// below the write's own `low_seq`; returns whether it was added. Expiry and the count
    /// limit apply when staged. Writes can reach a member out of order after a
    /// reconfiguration or a retransmission: the value of an older one is superseded, but its
    /// record must still be kept, or a retry of it would be applied again.
    pub fn add_record(&mut self, store: &dyn Store, d: &Dedupe) -> Result<bool, StoreError> {
        let Some(held) = self.admit(store, d)? else {
            return Ok(false);
        };
        held.records.push(d.clone());
        Ok(true)
    }

    /// [`Writing::add_record`], keeping `d` itself.
    fn add_record_taking(&mut self, store: &dyn Store, d: Dedupe) -> Result<bool, StoreError> {
        let Some(held) = self.admit(store, &d)? else {
            return Ok(false);
        };
        held.records.push(d);
        Ok(true)
    }

    /// The rules of [`Writing::add_record`]: the records of `d`'s client that `d` is to join
    /// (those below its `low_seq` dropped, the client's records marked changed), or `None`
    /// when it is not to be added.
    fn admit(&mut self, store: &dyn Store, d: &Dedupe) -> Result<Option<&mut Held>, StoreError> {
        self.read_client(store, d.client)?;
        let held = self.clients.entry(d.client).or_default();
        if held.records.iter().any(|r| d.seq < r.low_seq) {
            crate::probe!("record.below_low_seq_skipped");
            return Ok(None);
        }
        if held.records.iter().any(|r| r.seq == d.seq) {
            return Ok(None);
        }
        held.records.retain(|r| r.seq >= d.low_seq);
        held.changed = true;
        self.summary.saw(d.unix);
        Ok(self.clients.get_mut(&d.client))
    }

    /// Applies a chain write: new version, new value, its record.
    pub fn absorb(&mut self, store: &dyn Store, w: &ChainWrite) -> Result<(), StoreError> {
        self.version = w.version;
        self.object = w.object.clone();
        if let Some(d) = &w.dedupe {
            self.add_record(store, d)?;
        }
        Ok(())
    }

    /// [`Writing::absorb`], keeping the write's value and record themselves.
    pub fn absorb_taking(&mut self, store: &dyn Store, w: ChainWrite) -> Result<(), StoreError> {
        self.version = w.version;
        self.object = w.object;
        if let Some(d) = w.dedupe {
            self.add_record_taking(store, d)?;
        }
        Ok(())
    }

    /// Stages the object and its records: inline when they are few and none are apart, else
    /// the entries of the clients that changed (every entry of the key when a compaction is
    /// due, or when the records move apart).
    pub fn stage(&mut self, store: &mut dyn Store) -> Result<(), StoreError> {
        self.stage_keeping(store, true)
    }

    /// [`Writing::stage`] for a write that is dropped once staged: the records it holds are
    /// not rebuilt for later use (what is staged is the same).
    pub fn stage_last(mut self, store: &mut dyn Store) -> Result<(), StoreError> {
        self.stage_keeping(store, false)
    }

    /// [`Writing::stage`]; `keep`: whether `self` is used again (its records kept as staged).
    fn stage_keeping(&mut self, store: &mut dyn Store, keep: bool) -> Result<(), StoreError> {
        let changed = self.clients.values().filter(|h| h.changed);
        let count = changed.fold(self.summary.count, |n, h| {
            (n + h.records.len() as u64).saturating_sub(h.stored)
        });
        if !self.whole && self.summary.compaction_due(count) {
            crate::probe!("records.compacted");
            self.read_all(store)?;
            if planted(Bug::CompactionDropsLive) {
                self.clients.retain(|_, h| h.changed);
            }
        }
        let records = match self.whole {
            true => self.stage_whole(store, keep)?,
            false => {
                self.stage_changed(store);
                Vec::new()
            }
        };
        let bytes = encode_apart(self.version, &self.object, &records, &self.summary);
        store.put(Table::Objects, &self.entry_key, Some(bytes));
        Ok(())
    }

    /// Writes the entries of the clients whose records changed.
    fn stage_changed(&mut self, store: &mut dyn Store) {
        let newest = self.summary.newest;
        let key = &self.entry_key[REGION_PREFIX_LEN..];
        let mut prefix = None;
        for (client, held) in &mut self.clients {
            if !held.changed {
                continue;
            }
            held.records.retain(|d| visible(d, newest));
            let prefix = prefix.get_or_insert_with(|| records_prefix(self.region, key));
            let key = client_key(prefix, *client);
            store.put(Table::Records, &key, encode_records(&held.records));
            let now = held.records.len() as u64;
            if !(planted(Bug::RecordsMiscounted) && held.stored == 0) {
                self.summary.count = (self.summary.count + now).saturating_sub(held.stored);
            }
            held.stored = now;
            held.changed = false;
        }
    }

    /// Stages every record of the key from `clients`: the visible ones, at most
    /// [`DEDUPE_RECORDS`] (the oldest go first), with a summary counted afresh. Returns them
    /// when they are few enough to go inline (none are apart then), or writes them apart.
    fn stage_whole(
        &mut self,
        store: &mut dyn Store,
        keep: bool,
    ) -> Result<Vec<Dedupe>, StoreError> {
        let before = std::mem::take(&mut self.clients);
        let mut all: Vec<Dedupe> = before
            .values()
            .flat_map(|h| h.records.iter().cloned())
            .collect();
        let newest = newest_of(&all);
        let count = all.len();
        all.retain(|d| visible(d, newest));
        if all.len() < count {
            crate::probe!("record.expired_dropped");
        }
        sort_records(&mut all);
        let excess = all.len().saturating_sub(DEDUPE_RECORDS);
        if excess > 0 {
            crate::probe!("records.beyond_limit_dropped");
            match planted(Bug::NewestCutAtLimit) {
                true => all.truncate(DEDUPE_RECORDS),
                false => drop(all.drain(..excess)),
            }
        }
        let inline = all.len() <= INLINE_RECORDS;
        let mut summary = Summary::default();
        for d in &all {
            summary.saw(d.unix);
            // Records apart are staged from `clients` below; inline ones from `all`.
            if keep || !inline {
                self.clients
                    .entry(d.client)
                    .or_default()
                    .records
                    .push(d.clone());
            }
        }
        if !inline {
            crate::probe!("records.kept_apart");
            summary.count = all.len() as u64;
            all.clear();
        }
        // Only a key whose records are (or were) apart needs their prefix.
        let prefix = match self.scanned || self.stale_entries || !inline {
            true => self.prefix(),
            false => Vec::new(),
        };
        let plen = prefix.len();
        // The entries that go: every stored one a client keeps no record apart in.
        let apart = |c: &ClientId| !inline && self.clients.contains_key(c);
        if self.scanned {
            for (client, held) in &before {
                if held.stored > 0 && !apart(client) {
                    store.put(Table::Records, &client_key(&prefix, *client), None);
                }
            }
        } else if self.stale_entries && self.stored_apart(store)? {
            for (k, _) in store.scan_prefix(Table::Records, &prefix)? {
                if !client_of(&k, plen).is_some_and(|c| apart(&c)) {
                    store.put(Table::Records, &k, None);
                }
            }
        }
        if !inline {
            for (client, held) in &mut self.clients {
                // An entry stored as it is now is left alone.
                let same = before.get(client).is_some_and(|b| {
                    let mut was = b.records.clone();
                    sort_records(&mut was);
                    !b.changed && b.stored == was.len() as u64 && was == held.records
                });
                if !same {
                    let key = client_key(&prefix, *client);
                    store.put(Table::Records, &key, encode_records(&held.records));
                }
                held.stored = held.records.len() as u64;
            }
        }
        self.summary = summary;
        self.stale_entries = false;
        self.scanned = false;
        self.whole = inline;
        Ok(all)
    }
}

impl Writing {
    /// Whether the object's entry as stored says records are kept apart (entries exist only
    /// then: every staging that empties them leaves a count of 0).
    fn stored_apart(&self, store: &dyn Store) -> Result<bool, StoreError> {
        let entry = store.get(Table::Objects, &self.entry_key)?;
        Ok(entry
            .and_then(|b| decode_apart(&b))
            .is_some_and(|(_, summary)| summary.count > 0))
    }
}

/// The client whose entry `key` is (`plen`: the length of the key's records prefix).
fn client_of(key: &[u8], plen: usize) -> Option<ClientId> {
    key.get(plen..)
        .and_then(|c| <[u8; 8]>::try_from(c).ok())
        .map(u64::from_be_bytes)
}

/// A client's records as stored (`None`, deleting the entry, when there are none).
fn encode_records(records: &[Dedupe]) -> Option<Vec<u8>> {
    (!records.is_empty()).then(|| postcard::to_allocvec(records).unwrap_or_default())
}

/// The order records are read in: by time (unknown times first), client, sequence number.
pub(super) fn sort_records(records: &mut [Dedupe]) {
    records.sort_by_key(order);
}

fn order(d: &Dedupe) -> (u64, u64, u64) {
    let time = if d.unix == UNKNOWN_TIME { 0 } else { d.unix };
    (time, d.client, d.seq)
}

/// An object with every record it keeps (inline or apart), by time, then client, then sequence number.
pub fn load_full(
    store: &dyn Store,
    region: RegionId,
    key: &[u8],
) -> Result<StoredObject, StoreError> {
    full(store, Writing::load(store, region, key)?)
}

/// `w`'s object with every record it keeps: the visible ones, at most the newest
/// [`DEDUPE_RECORDS`] (so that two members that compacted at different writes read the same).
fn full(store: &dyn Store, mut w: Writing) -> Result<StoredObject, StoreError> {
    if w.summary.count > 0 {
        w.read_all(store)?;
    }
    let newest = w.summary.newest;
    let mut dedupe: Vec<Dedupe> = w
        .clients
        .into_values()
        .flat_map(|h| h.records)
        .filter(|d| visible(d, newest))
        .collect();
    sort_records(&mut dedupe);
    let excess = dedupe.len().saturating_sub(DEDUPE_RECORDS);
    dedupe.drain(..excess);
    Ok(StoredObject {
        version: w.version,
        object: w.object,
        dedupe,
    })
}

/// Stages an object with exactly the records `stored` holds (those beyond the count limit
/// and the expired ones left out), replacing every record stored for the key.
pub fn stage_full(
    store: &mut dyn Store,
    region: RegionId,
    key: &[u8],
    stored: &StoredObject,
) -> Result<(), StoreError> {
    Writing::whole(region, key, stored).stage(store)
}

/// [`stage_full`] for a key known to have no object stored (so no records either: entries
/// exist only for an object that counts them), without looking for any to replace.
pub fn stage_new(
    store: &mut dyn Store,
    region: RegionId,
    key: &[u8],
    stored: &StoredObject,
) -> Result<(), StoreError> {
    let mut w = Writing::whole(region, key, stored);
    w.stale_entries = false;
    w.stage(store)
}

/// Removes an object and every record of it.
pub fn remove(store: &mut dyn Store, region: RegionId, key: &[u8]) -> Result<(), StoreError> {
    let w = Writing::fresh(region, key);
    if w.stored_apart(store)? {
        for (k, _) in store.scan_prefix(Table::Records, &w.prefix())? {
            store.put(Table::Records, &k, None);
        }
    }
    store.put(Table::Objects, &w.entry_key, None);
    Ok(())
}

/// An object's entry as a state transfer sends it (and digests it): every record inline, in
/// the current layout without a summary, in [`load_full`]'s order, so that two servers
/// holding the same object and records send the same bytes.
pub fn transfer_bytes(
    store: &dyn Store,
    region: RegionId,
    key: &[u8],
    entry: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let Ok((stored, rest)) = postcard::take_from_bytes::<StoredObject>(entry) else {
        // The layout before record times, or not an object (sent as it is, and refused).
        let Some(stored) = super::record::decode(entry) else {
            return Ok(entry.to_vec());
        };
        let w = Writing::fresh(region, key).of_entry(store, (stored, Summary::default()))?;
        return Ok(postcard::to_allocvec(&full(store, w)?).unwrap_or_default());
    };
    let summary: Summary = postcard::from_bytes(rest).unwrap_or_default();
    let apart = summary.count > 0 && !planted(Bug::RecordsLeftBehind);
    if !apart && in_order(&stored.dedupe) {
        // What is stored is what would be sent, but for the summary.
        return Ok(entry[..entry.len() - rest.len()].to_vec());
    }
    let stored = match apart || !stored.dedupe.is_empty() {
        true => full(
            store,
            Writing::fresh(region, key).of_entry(store, (stored, summary))?,
        )?,
        false => stored,
    };
    Ok(postcard::to_allocvec(&stored).unwrap_or_default())
}

/// Whether inline records are as [`load_full`] would read them: all visible, in order, within
/// the limit (as every staging since records were kept apart leaves them).
fn in_order(records: &[Dedupe]) -> bool {
    let newest = newest_of(records);
    records.len() <= DEDUPE_RECORDS
        && records.iter().all(|d| visible(d, newest))
        && records.is_sorted_by_key(order)
}

#[cfg(test)]
#[path = "retry_records_tests.rs"]
mod tests;

/// Checks that the records a region keeps apart agree with its objects' summaries: every
/// entry belongs to an object, holds records, and each object counts exactly the records its
/// entries hold, at most [`MOST_STORED`] (what the simulation's audit asks of every replica).
/// Returns how many entries it read.
pub fn check_region(store: &dyn Store, region: RegionId) -> Result<usize, String> {
    let prefix = region_prefix(region);
    let mut held: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let entries = store
        .scan_prefix(Table::Records, &prefix)
        .map_err(|e| e.to_string())?;
    for (k, v) in &entries {
        let rest = &k[prefix.len()..];
        let len = rest
            .get(..4)
            .and_then(|l| <[u8; 4]>::try_from(l).ok())
            .map(|l| u32::from_be_bytes(l) as usize);
        let Some(key) = len.and_then(|l| rest.get(4..4 + l)) else {
            return Err(format!("records entry {k:?} has no key"));
        };
        if client_of(k, prefix.len() + 4 + key.len()).is_none() {
            return Err(format!("records entry {k:?} has no client"));
        }
        let n = decode_records(v).len() as u64;
        if n == 0 {
            return Err(format!("records entry {k:?} holds no record"));
        }
        *held.entry(key.to_vec()).or_default() += n;
    }
    let objects = store
        .scan_prefix(Table::Objects, &prefix)
        .map_err(|e| e.to_string())?;
    for (k, v) in objects {
        let key = &k[prefix.len()..];
        let counted = decode_apart(&v).map_or(0, |(_, s)| s.count);
        let stored = held.remove(key).unwrap_or(0);
        let key = || String::from_utf8_lossy(key);
        if counted != stored {
            return Err(format!(
                "object {:?} counts {counted} records kept apart, its entries hold {stored}",
                key()
            ));
        }
        if stored > MOST_STORED as u64 {
            return Err(format!(
                "object {:?} holds {stored} records, more than the {MOST_STORED} a key may",
                key()
            ));
        }
    }
    match held.keys().next() {
        Some(key) => Err(format!(
            "records kept apart for {:?}, which has no object",
            String::from_utf8_lossy(key)
        )),
        None => Ok(entries.len()),
    }
}
