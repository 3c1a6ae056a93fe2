//! Durable storage behind one small trait, with two implementations.
//!
//! A [`Store`] holds byte keys and values in a few [`Table`]s. Writes are *staged*
//! ([`Store::put`]): visible to later reads at once, durable only after [`Store::sync`]. The
//! daemon stages everything one batch of messages produces, syncs once (group commit), and only
//! then sends acknowledgements, so no acknowledged write lives only in memory.
//!
//! Both implementations are a write-ahead log in front of a tree ([`logged::Logged`]): a sync
//! appends one record to the log; the tree is written in checkpoints.
//!
//! - [`redb_store::RedbStore`]: a log file and redb in a real directory (production).
//! - [`MemStore`]: an in-memory disk (a byte log and a map), kept outside the node that uses
//!   it (an `Arc`), so that the simulation can "crash" it: [`MemStore::crash`] drops every
//!   staged, unsynced write and leaves a torn record at the log's end, as a power failure
//!   would, and reopens the store by replaying the log.
//!
//! This module and `rt` are the only places that may touch the file system.

mod log_file;
pub mod logged;
mod mem;
pub mod overlay;
pub mod redb_store;
pub mod wal;

pub use mem::{MemDisk, MemStore};
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
    /// Chain writes a member holds before the chain acknowledges them (`daemon::replica`):
    /// durable on arrival, so that an acknowledgement needs no second sync.
    Pending,
    /// What regions of other subspaces keep per key (`hyperspace::entry`): region and key →
    /// entry.
    Subspace,
    /// Retry records, apart from their objects (`daemon::retry_records`): region, key and
    /// client → that client's records for the key.
    Records,
}

impl Table {
    /// Every table, in declaration order (`t as usize` is `t`'s position).
    pub const ALL: [Table; 6] = [
        Table::Objects,
        Table::Meta,
        Table::Index,
        Table::Pending,
        Table::Subspace,
        Table::Records,
    ];
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

    /// Starts making every staged write durable without waiting for the disk (not to be
    /// mixed with [`sync`](Store::sync) while records are in flight): returns the
    /// log record to append with this store's [`log_writer`](Store::log_writer) (elsewhere,
    /// while the caller goes on), or `None` when the writes are already durable (a store
    /// without a log syncs here). Writes staged later are not in the record.
    fn begin_sync(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        self.sync().map(|()| None)
    }
    /// Appends the records [`begin_sync`](Store::begin_sync) returns, in order.
    fn log_writer(&self) -> Option<Box<dyn LogWriter>> {
        None
    }
    /// Whether a write staged since the last record begun (or the last sync) is in `table`;
    /// `true` when the store does not know (a wrapper must pass it on for the daemon's actor to
    /// leave a batch's writes to the next record).
    fn staged_in(&self, table: Table) -> bool {
        let _ = table;
        true
    }
    /// Counts the oldest record begun and not yet counted as durable (records become
    /// durable in the order they were begun).
    fn record_durable(&mut self) {}
    /// Whether `key` may have a write that is not yet durable (staged, or in a record not yet
    /// counted by [`record_durable`](Store::record_durable)): a read of it must wait for the
    /// sync. `true` when the store does not know.
    fn unsynced(&self, table: Table, key: &[u8]) -> bool {
        let _ = (table, key);
        true
    }
    /// Whether the log is long enough for a [`checkpoint`](Store::checkpoint).
    fn checkpoint_due(&self) -> bool {
        false
    }
    /// Starts writing the log's contents to the tree (in the background where the store can;
    /// the log is emptied once they are there), after the checkpoint before has finished.
    /// Only once every record begun is appended, and nothing is staged.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Appends log records and makes them durable, on a thread of its own.
pub trait LogWriter: Send {
    /// Appends `records`, in order, and makes them all durable with one `fdatasync`.
    fn append(&mut self, records: &[&[u8]]) -> Result<(), StoreError>;
}
