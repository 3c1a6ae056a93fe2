//! The replicated log's storage: what raft reads (entries, hard state, the latest snapshot),
//! kept in memory and written through to the coordinator's store.
//!
//! Layout in the store's meta table: `raft/snap` (the latest snapshot: index, term, membership
//! and the whole [`Cluster`](super::super::state::Cluster) it stands for), `raft/hard` (term,
//! vote, commit), and `raft/e/` followed by the big-endian index for each entry after the
//! snapshot. Nothing here syncs: the caller syncs once per batch, before anything that depends
//! on the batch is sent.

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{Error as RaftError, GetEntriesContext, RaftState, StorageError};

use crate::storage::{Store, StoreError, Table};

const HARD: &[u8] = b"raft/hard";
const SNAP: &[u8] = b"raft/snap";
const ENTRY: &[u8] = b"raft/e/";

fn entry_key(index: u64) -> Vec<u8> {
    let mut k = ENTRY.to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Why the saved log cannot be read.
fn unreadable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("the coordinator's saved {what} is unreadable: {e}"))
}

/// The log as raft sees it.
#[derive(Default)]
pub struct LogStore {
    hard: HardState,
    snapshot: Snapshot,
    /// Entries after the snapshot, in order: `entries[0].index == snapshot index + 1`.
    entries: Vec<Entry>,
}

impl LogStore {
    /// The saved log, or `None` if this store has never held one.
    pub fn load(store: &dyn Store) -> Result<Option<LogStore>, StoreError> {
        let Some(bytes) = store.get(Table::Meta, SNAP)? else {
            return Ok(None);
        };
        let snapshot = Snapshot::parse_from_bytes(&bytes).map_err(|e| unreadable("snapshot", e))?;
        let hard = match store.get(Table::Meta, HARD)? {
            Some(b) => HardState::parse_from_bytes(&b).map_err(|e| unreadable("vote", e))?,
            None => HardState::default(),
        };
        let mut log = LogStore {
            hard,
            snapshot,
            entries: Vec::new(),
        };
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store.scan_from(Table::Meta, ENTRY, after.as_deref(), 256)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (_, bytes) in &page {
                let e = Entry::parse_from_bytes(bytes).map_err(|e| unreadable("entry", e))?;
                // Only the run that follows the snapshot without a gap is the log.
                if e.index == log.last() + 1 {
                    log.entries.push(e);
                }
            }
        }
        Ok(Some(log))
    }

    /// A log that starts with `snapshot` (a new cluster's first state), saved to `store`.
    pub fn starting_at(store: &mut dyn Store, snapshot: Snapshot) -> LogStore {
        let mut log = LogStore::default();
        log.install(store, snapshot);
        log
    }

    pub fn snapshot_ref(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn first(&self) -> u64 {
        self.snapshot.get_metadata().index + 1
    }

    pub fn last(&self) -> u64 {
        self.snapshot.get_metadata().index + self.entries.len() as u64
    }

    /// Appends entries from the leader, replacing any of ours from the first one's index on.
    pub fn append(&mut self, store: &mut dyn Store, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        let old_last = self.last();
        let keep = first.index.saturating_sub(self.first()) as usize;
        self.entries.truncate(keep);
        for e in ents {
            store.put(Table::Meta, &entry_key(e.index), e.write_to_bytes().ok());
            self.entries.push(e.clone());
        }
        for stale in self.last() + 1..=old_last {
            store.put(Table::Meta, &entry_key(stale), None);
        }
    }

    pub fn set_hard_state(&mut self, store: &mut dyn Store, hs: HardState) {
        store.put(Table::Meta, HARD, hs.write_to_bytes().ok());
        self.hard = hs;
    }

    pub fn set_commit(&mut self, store: &mut dyn Store, commit: u64) {
        let mut hs = self.hard.clone();
        hs.commit = commit;
        self.set_hard_state(store, hs);
    }

    /// Replaces the whole log with a snapshot (sent by the leader, or a new cluster's first).
    pub fn install(&mut self, store: &mut dyn Store, snapshot: Snapshot) {
        let meta = snapshot.get_metadata();
        let mut hs = self.hard.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        store.delete_prefix(Table::Meta, ENTRY);
        self.entries.clear();
        store.put(Table::Meta, SNAP, snapshot.write_to_bytes().ok());
        self.snapshot = snapshot;
        self.set_hard_state(store, hs);
    }

    /// Takes a snapshot of our own applied state (at an index we hold) and drops the entries
    /// it covers.
    pub fn compact(&mut self, store: &mut dyn Store, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        if index <= self.snapshot.get_metadata().index || index > self.last() {
            return;
        }
        let drop = (index - self.snapshot.get_metadata().index) as usize;
        for e in self.entries.drain(..drop) {
            store.put(Table::Meta, &entry_key(e.index), None);
        }
        store.put(Table::Meta, SNAP, snapshot.write_to_bytes().ok());
        self.snapshot = snapshot;
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let conf: ConfState = self.snapshot.get_metadata().get_conf_state().clone();
        Ok(RaftState::new(self.hard.clone(), conf))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(RaftError::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(RaftError::Store(StorageError::Unavailable));
        }
        let first = self.first();
        let mut ents = self.entries[(low - first) as usize..(high - first) as usize].to_vec();
        raft::util::limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let meta = self.snapshot.get_metadata();
        if idx == meta.index {
            return Ok(meta.term);
        }
        if idx < self.first() {
            return Err(RaftError::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(RaftError::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot.get_metadata().index < request_index {
            return Err(RaftError::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStore;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8].into(),
            ..Entry::default()
        }
    }

    fn snapshot(index: u64, term: u64, voters: Vec<u64>) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s.mut_metadata().mut_conf_state().voters = voters;
        s.data = b"state".to_vec().into();
        s
    }

    #[test]
    fn the_log_reloads_as_written_with_replaced_entries_gone() {
        let mut disk = MemStore::new();
        let mut log = LogStore::starting_at(&mut disk, snapshot(1, 1, vec![5]));
        log.append(&mut disk, &[entry(2, 1), entry(3, 1), entry(4, 1)]);
        // A new leader's entries replace ours from index 3 on.
        log.append(&mut disk, &[entry(3, 2)]);
        let hs = HardState {
            term: 2,
            vote: 5,
            commit: 3,
            ..HardState::default()
        };
        log.set_hard_state(&mut disk, hs.clone());

        let back = LogStore::load(&disk).expect("load").expect("a log");
        assert_eq!((back.first(), back.last()), (2, 3));
        assert_eq!(back.term(3).expect("term"), 2);
        assert_eq!(back.initial_state().expect("state").hard_state, hs);
        assert_eq!(
            back.initial_state().expect("state").conf_state.voters,
            vec![5]
        );
        assert!(disk.get(Table::Meta, &entry_key(4)).expect("get").is_none());
    }

    #[test]
    fn compaction_keeps_the_entries_after_the_snapshot() {
        let mut disk = MemStore::new();
        let mut log = LogStore::starting_at(&mut disk, snapshot(1, 1, vec![5]));
        log.append(&mut disk, &[entry(2, 1), entry(3, 1), entry(4, 1)]);
        log.compact(&mut disk, snapshot(3, 1, vec![5, 6]));
        assert_eq!((log.first(), log.last()), (4, 4));
        assert_eq!(log.term(3).expect("term of the snapshot"), 1);
        assert!(matches!(
            log.entries(2, 4, None, GetEntriesContext::empty(false)),
            Err(RaftError::Store(StorageError::Compacted))
        ));
        let back = LogStore::load(&disk).expect("load").expect("a log");
        assert_eq!((back.first(), back.last()), (4, 4));
        assert_eq!(
            back.initial_state().expect("state").conf_state.voters,
            vec![5, 6]
        );
    }

    #[test]
    fn an_installed_snapshot_replaces_the_whole_log() {
        let mut disk = MemStore::new();
        let mut log = LogStore::starting_at(&mut disk, snapshot(1, 1, vec![5]));
        log.append(&mut disk, &[entry(2, 1), entry(3, 1)]);
        log.install(&mut disk, snapshot(10, 3, vec![5, 6, 7]));
        assert_eq!((log.first(), log.last()), (11, 10));
        let back = LogStore::load(&disk).expect("load").expect("a log");
        assert_eq!((back.first(), back.last()), (11, 10));
        assert_eq!(back.initial_state().expect("state").hard_state.commit, 10);
    }
}
