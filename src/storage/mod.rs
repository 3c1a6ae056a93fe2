//! Durable storage behind one small trait, with two implementations.
//!
//! A [`Store`] holds byte keys and values in a few [`Table`]s. Writes are *staged*
//! ([`Store::put`]): visible to later reads at once, durable only after [`Store::sync`]. The
//! daemon stages everything one batch of messages produces, syncs once (group commit), and only
//! then sends acknowledgements, so no acknowledged write lives only in memory.
//!
//! - [`redb_store::RedbStore`]: redb on a real directory (production); one write transaction
//!   with immediate durability per sync.
//! - [`MemStore`]: an in-memory disk with an explicit sync boundary, kept outside the node that
//!   uses it (an `Arc`), so that the simulation can "crash" it: [`MemStore::crash`] drops every
//!   staged, unsynced write, as a power failure would.
//!
//! This module and `rt` are the only places that may touch the file system.

mod overlay;
pub mod redb_store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use overlay::Overlay;
pub use redb_store::RedbStore;

/// The tables a store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Objects: (space id, key bytes) → stored object.
    Objects,
    /// Small facts about the node: its server id, the coordinator's state.
    Meta,
    /// Secondary index entries (`daemon::index`): keys only.
    Index,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use data directory {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("storage failure: {0}")]
    Io(String),
}

pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// Byte-keyed tables with staged writes and an explicit sync.
pub trait Store: Send {
    /// The value under `key`, staged writes included.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Up to `limit` entries whose keys start with `prefix` and come after `after` (all of
    /// the prefix when `None`), in key order, staged writes included.
    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StoreError>;
    /// Every entry whose key starts with `prefix`, in key order, staged writes included.
    fn scan_prefix(&self, table: Table, prefix: &[u8]) -> Result<KeyValues, StoreError> {
        self.scan_from(table, prefix, None, usize::MAX)
    }
    /// Stages a write (`None` deletes).
    fn put(&mut self, table: Table, key: &[u8], value: Option<Vec<u8>>);
    /// Stages the deletion of every entry whose key starts with `prefix`, without reading
    /// them (memory independent of how many there are).
    fn delete_prefix(&mut self, table: Table, prefix: &[u8]);
    /// Makes every staged write durable.
    fn sync(&mut self) -> Result<(), StoreError>;
}

#[derive(Debug, Default)]
struct MemDisk {
    durable: BTreeMap<(Table, Vec<u8>), Vec<u8>>,
    staged: Overlay,
    syncs: u64,
}

/// An in-memory disk with a sync boundary; clones share the same disk.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    disk: Arc<Mutex<MemDisk>>,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn disk(&self) -> std::sync::MutexGuard<'_, MemDisk> {
        // A panic while holding this lock would already have failed the run; recover the data.
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A power failure: every write not yet synced is lost. Returns how many were lost.
    pub fn crash(&self) -> usize {
        let mut d = self.disk();
        std::mem::take(&mut d.staged).len()
    }

    /// The disk replaced by an empty one (a server rebuilt from scratch).
    pub fn wipe(&self) {
        let mut d = self.disk();
        d.staged = Overlay::default();
        d.durable.clear();
    }

    /// How many syncs have happened (for tests and simulation statistics).
    pub fn syncs(&self) -> u64 {
        self.disk().syncs
    }
}

impl Store for MemStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let d = self.disk();
        match d.staged.get(table, key) {
            Some(v) => Ok(v),
            None => Ok(d.durable.get(&(table, key.to_vec())).cloned()),
        }
    }

    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        use std::ops::Bound;
        let d = self.disk();
        let lower = match after {
            Some(a) if a >= prefix => Bound::Excluded((table, a.to_vec())),
            _ => Bound::Included((table, prefix.to_vec())),
        };
        let durable = d
            .durable
            .range((lower, Bound::Unbounded))
            .take_while(|((t, k), _)| *t == table && k.starts_with(prefix))
            .map(|((_, k), v)| (k.clone(), v.clone()));
        Ok(d.staged.scan(table, (prefix, after), durable, limit))
    }

    fn put(&mut self, table: Table, key: &[u8], value: Option<Vec<u8>>) {
        self.disk().staged.put(table, key, value);
    }

    fn delete_prefix(&mut self, table: Table, prefix: &[u8]) {
        self.disk().staged.clear_prefix(table, prefix);
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        let mut d = self.disk();
        let Overlay { staged, cleared } = std::mem::take(&mut d.staged);
        for (t, p) in cleared {
            let doomed: Vec<_> = d
                .durable
                .range((t, p.clone())..)
                .take_while(|((table, k), _)| *table == t && k.starts_with(&p))
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                d.durable.remove(&k);
            }
        }
        for ((t, k), v) in staged {
            match v {
                Some(v) => d.durable.insert((t, k), v),
                None => d.durable.remove(&(t, k)),
            };
        }
        d.syncs += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_writes_are_visible_and_lost_in_a_crash() {
        let mut s = MemStore::new();
        s.put(Table::Objects, b"a1", Some(b"x".to_vec()));
        s.sync().unwrap();
        s.put(Table::Objects, b"a2", Some(b"y".to_vec()));
        s.put(Table::Objects, b"a1", None);
        assert_eq!(s.get(Table::Objects, b"a1").unwrap(), None);
        assert_eq!(
            s.scan_prefix(Table::Objects, b"a").unwrap(),
            vec![(b"a2".to_vec(), b"y".to_vec())]
        );
        s.put(Table::Objects, b"a3", Some(b"z".to_vec()));
        assert_eq!(
            s.scan_from(Table::Objects, b"a", Some(b"a1"), 1).unwrap(),
            vec![(b"a2".to_vec(), b"y".to_vec())]
        );
        assert_eq!(
            s.scan_from(Table::Objects, b"a", Some(b"a2"), 5)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(s.crash(), 3);
        assert_eq!(s.get(Table::Objects, b"a1").unwrap(), Some(b"x".to_vec()));
        // A prefix deleted whole, then a key under it written again.
        s.put(Table::Objects, b"a2", Some(b"y".to_vec()));
        s.put(Table::Objects, b"b1", Some(b"w".to_vec()));
        s.sync().unwrap();
        s.delete_prefix(Table::Objects, b"a");
        s.put(Table::Objects, b"a3", Some(b"z".to_vec()));
        assert_eq!(s.get(Table::Objects, b"a1").unwrap(), None);
        assert_eq!(
            s.scan_prefix(Table::Objects, b"").unwrap(),
            vec![
                (b"a3".to_vec(), b"z".to_vec()),
                (b"b1".to_vec(), b"w".to_vec())
            ]
        );
        s.sync().unwrap();
        assert_eq!(s.scan_prefix(Table::Objects, b"a").unwrap().len(), 1);
        s.delete_prefix(Table::Objects, b"a");
        assert_eq!(s.crash(), 1, "a prefix deletion not synced is lost");
        assert_eq!(s.get(Table::Objects, b"a3").unwrap(), Some(b"z".to_vec()));
        s.put(Table::Meta, b"id", Some(b"7".to_vec()));
        s.delete_prefix(Table::Objects, b"");
        s.sync().unwrap();
        assert!(s.scan_prefix(Table::Objects, b"").unwrap().is_empty());
        assert_eq!(
            s.get(Table::Meta, b"id").unwrap(),
            Some(b"7".to_vec()),
            "other tables kept"
        );
        s.put(Table::Objects, b"a1", Some(b"x".to_vec()));
        s.sync().unwrap();
        assert_eq!(s.get(Table::Objects, b"a1").unwrap(), Some(b"x".to_vec()));
        assert_eq!(s.get(Table::Objects, b"a2").unwrap(), None);
        assert_eq!(s.get(Table::Meta, b"a1").unwrap(), None);
    }
}
