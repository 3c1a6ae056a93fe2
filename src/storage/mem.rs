//! [`MemStore`]: the store on a simulated disk, for the simulation and unit tests.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::logged::{Backend, Logged};
use super::overlay::Overlay;
use super::{KeyValues, LogWriter, Store, StoreError, Table};

/// The simulated disk under a [`MemStore`]: a tree (a map) and two logs (bytes).
#[derive(Debug, Default)]
pub struct MemDisk {
    tree: BTreeMap<(Table, Vec<u8>), Vec<u8>>,
    checkpointed: u64,
    logs: [Vec<u8>; 2],
    /// Which log appends go to.
    active: usize,
    /// The background checkpoint: its writes, its sequence number, and how far it has got.
    /// It advances each time it is asked about, writing the tree after [`JOB_POLLS`] and
    /// emptying the inactive log after as many again, so crashes meet it before the tree
    /// holds the writes and between that and the log's emptying.
    job: Option<(Arc<Overlay>, u64, u32)>,
    /// Records begun ([`Store::begin_sync`]) and not yet appended, oldest first.
    in_flight: VecDeque<Vec<u8>>,
    syncs: u64,
}

impl MemDisk {
    fn commit(&mut self, changes: &Overlay, seq: u64) {
        for (t, p) in &changes.cleared {
            let doomed: Vec<_> = self
                .tree
                .range((*t, p.clone())..)
                .take_while(|((table, k), _)| table == t && k.starts_with(p))
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                self.tree.remove(&k);
            }
        }
        for (t, k, v) in changes.staged.iter() {
            match v {
                Some(v) => self.tree.insert((t, k.to_vec()), v.clone()),
                None => self.tree.remove(&(t, k.to_vec())),
            };
        }
        self.checkpointed = seq;
    }
}

impl Backend for MemDisk {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(&(table, key.to_vec())).cloned())
    }

    fn scan_from(
        &self,
        table: Table,
        (prefix, after): (&[u8], Option<&[u8]>),
        overs: &[&Overlay],
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        use std::ops::Bound;
        let lower = match after {
            Some(a) if a >= prefix => Bound::Excluded((table, a.to_vec())),
            _ => Bound::Included((table, prefix.to_vec())),
        };
        let durable = self
            .tree
            .range((lower, Bound::Unbounded))
            .take_while(|((t, k), _)| *t == table && k.starts_with(prefix))
            .map(|((_, k), v)| (k.clone(), v.clone()));
        Ok(
            super::overlay::stack(table, (prefix, after), overs, Box::new(durable))
                .take(limit)
                .collect(),
        )
    }

    fn checkpoint(&mut self, changes: &Overlay, seq: u64) -> Result<(), StoreError> {
        self.commit(changes, seq);
        Ok(())
    }

    fn checkpointed(&self) -> Result<u64, StoreError> {
        Ok(self.checkpointed)
    }

    fn append(&mut self, record: &[u8]) -> Result<(), StoreError> {
        self.logs[self.active].extend_from_slice(record);
        self.syncs += 1;
        Ok(())
    }

    fn read_logs(&mut self) -> Result<[Vec<u8>; 2], StoreError> {
        Ok(self.logs.clone())
    }

    fn cut_log(&mut self, which: usize, len: u64) -> Result<(), StoreError> {
        self.logs[which].truncate(len as usize);
        Ok(())
    }

    fn switch_log(&mut self) -> Result<(), StoreError> {
        let other = 1 - self.active;
        if !self.logs[other].is_empty() || self.job.is_some() {
            return Err(StoreError::Io("the inactive log is in use".into()));
        }
        self.active = other;
        Ok(())
    }

    fn start_checkpoint(&mut self, changes: Arc<Overlay>, seq: u64) -> Result<(), StoreError> {
        self.job = Some((changes, seq, 0));
        Ok(())
    }

    fn checkpoint_finished(&mut self, wait: bool) -> Option<Result<(), StoreError>> {
        loop {
            let Some((changes, seq, polls)) = self.job.take() else {
                return Some(Ok(()));
            };
            let polls = polls + 1;
            // The tree first, then the log: swapping the two (the planted bug) loses the
            // frozen writes to a crash in between.
            let swap = crate::bugs::planted(crate::bugs::Bug::LogEmptiedFirst);
            if polls == JOB_POLLS {
                match swap {
                    true => self.logs[1 - self.active].clear(),
                    false => self.commit(&changes, seq),
                }
            }
            if polls == 2 * JOB_POLLS {
                match swap {
                    true => self.commit(&changes, seq),
                    false => self.logs[1 - self.active].clear(),
                }
                return Some(Ok(()));
            }
            self.job = Some((changes, seq, polls));
            if !wait {
                return None;
            }
        }
    }
}

/// How many times a simulated background checkpoint is asked about before each of its two
/// steps (a daemon asks once per batch; a real tree commit takes many batches' time). The
/// 200 CI seeds then crash daemons between the tree commit and the log's emptying
/// (`storage.checkpointed_records_skipped`) as well as before the commit.
const JOB_POLLS: u32 = 16;

/// Log bytes between a [`MemStore`]'s checkpoints: small, so that the simulation's crashes
/// meet logs of every length, checkpoints included.
const MEM_CHECKPOINT_BYTES: u64 = 16 << 10;

/// A store on an in-memory disk with a sync boundary; clones share the same disk *and* the
/// same store, as a process's memory survives nothing but its own restart is not modelled:
/// a killed node keeps its staged writes (as the operating system keeps a killed process's
/// unsynced writes), a [`crash`](MemStore::crash) loses them.
#[derive(Clone)]
pub struct MemStore {
    store: Arc<Mutex<Logged<MemDisk>>>,
}

impl Default for MemStore {
    fn default() -> MemStore {
        MemStore::new()
    }
}

fn fresh() -> Logged<MemDisk> {
    match Logged::recover(MemDisk::default(), MEM_CHECKPOINT_BYTES) {
        Ok(s) => s,
        Err(e) => unreachable!("an empty in-memory disk cannot fail: {e}"),
    }
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore {
            store: Arc::new(Mutex::new(fresh())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Logged<MemDisk>> {
        // A panic while holding this lock would already have failed the run; recover the data.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A power failure: every write not yet synced is lost, the first record that was
    /// being written is left torn on the disk (half of it), and the store is opened again
    /// from what the disk holds. Returns how many writes were lost (staged, not yet begun
    /// syncing) and how many records (begun syncing, not yet synced).
    pub fn crash(&self) -> usize {
        let mut s = self.lock();
        let mut lost = s.unlogged_ops;
        let mut disk = std::mem::take(&mut s.backend);
        // The background checkpoint stops where it was.
        if let Some((_, _, polls)) = disk.job.take() {
            match polls < JOB_POLLS {
                true => crate::probe!("storage.crash_before_checkpoint_commit"),
                false => crate::probe!("storage.crash_before_old_log_emptied"),
            }
        }
        let in_flight = std::mem::take(&mut disk.in_flight);
        lost += in_flight.len();
        let torn = in_flight
            .into_iter()
            .next()
            .or_else(|| s.unsynced_record())
            .unwrap_or_default();
        let active = disk.active;
        disk.logs[active].extend_from_slice(&torn[..torn.len() / 2]);
        *s = match Logged::recover(disk, MEM_CHECKPOINT_BYTES) {
            Ok(reopened) => reopened,
            Err(e) => unreachable!("an in-memory disk cannot fail: {e}"),
        };
        lost
    }

    /// The store a node restarted after a kill (not a power failure) finds: records its
    /// previous life had handed to the disk are there (the operating system writes them
    /// out), and so are its staged writes (a simplification: a restarted process would have
    /// lost them, but it acknowledged none of them on their own: what a staged commit
    /// stores, its durable pending record holds too).
    pub fn restarted(&self) -> MemStore {
        let mut s = self.lock();
        while let Some(record) = s.backend.in_flight.pop_front() {
            let active = s.backend.active;
            s.backend.logs[active].extend_from_slice(&record);
        }
        let logged = s.seq;
        s.durable_through(logged);
        drop(s);
        self.clone()
    }

    /// The disk replaced by an empty one (a server rebuilt from scratch).
    pub fn wipe(&self) {
        *self.lock() = fresh();
    }

    /// How many syncs have happened (for tests and simulation statistics).
    pub fn syncs(&self) -> u64 {
        self.lock().backend.syncs
    }

    /// How many checkpoints the store took since it was last opened.
    pub fn checkpoints(&self) -> u64 {
        self.lock().checkpoints
    }
}

impl Store for MemStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.lock().get(table, key)
    }

    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        self.lock().scan_from(table, prefix, after, limit)
    }

    fn put(&mut self, table: Table, key: &[u8], value: Option<Vec<u8>>) {
        self.lock().put(table, key, value);
    }

    fn delete_prefix(&mut self, table: Table, prefix: &[u8]) {
        self.lock().delete_prefix(table, prefix);
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.lock().sync()
    }

    fn begin_sync(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        let mut s = self.lock();
        // As the production store does: a failed store takes nothing more, and a background
        // checkpoint advances.
        let record = Store::begin_sync(&mut *s)?;
        if let Some(r) = &record {
            s.backend.in_flight.push_back(r.clone());
        }
        Ok(record)
    }

    fn log_writer(&self) -> Option<Box<dyn LogWriter>> {
        Some(Box::new(MemLogWriter(self.clone())))
    }

    fn staged_in(&self, table: Table) -> bool {
        self.lock().staged_in(table)
    }

    fn record_durable(&mut self) {
        self.lock().record_durable();
    }

    fn unsynced(&self, table: Table, key: &[u8]) -> bool {
        self.lock().unsynced(table, key)
    }

    fn checkpoint_due(&self) -> bool {
        self.lock().checkpoint_due()
    }

    fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.lock().checkpoint()
    }
}

/// Appends a [`MemStore`]'s records begun syncing.
struct MemLogWriter(MemStore);

impl LogWriter for MemLogWriter {
    fn append(&mut self, records: &[&[u8]]) -> Result<(), StoreError> {
        let mut s = self.0.lock();
        for &record in records {
            // After a crash the records in flight are gone (torn): nothing is appended.
            if s.backend.in_flight.front().map(Vec::as_slice) == Some(record) {
                s.backend.in_flight.pop_front();
                s.backend.append(record)?;
            }
        }
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

    #[test]
    fn a_store_says_which_tables_its_unbegun_writes_are_in() {
        let mut s = MemStore::new();
        assert!(!s.staged_in(Table::Pending), "nothing staged");
        s.put(Table::Objects, b"a", Some(b"x".to_vec()));
        assert!(s.staged_in(Table::Objects));
        assert!(!s.staged_in(Table::Pending));
        s.delete_prefix(Table::Pending, b"r");
        assert!(s.staged_in(Table::Pending), "a prefix deleted counts");
        let record = s.begin_sync().unwrap().expect("a record");
        assert!(!s.staged_in(Table::Pending), "in a record now");
        assert!(!s.staged_in(Table::Objects));
        s.log_writer().unwrap().append(&[&record]).unwrap();
        s.record_durable();
        assert!(!s.unsynced(Table::Objects, b"a"), "durable");
        s.put(Table::Pending, b"r1", None);
        assert!(s.staged_in(Table::Pending), "a deletion counts");
        s.sync().unwrap();
        assert!(!s.staged_in(Table::Pending));
    }

    #[derive(Clone, Debug)]
    enum Step {
        Put(u8, Option<u8>),
        Clear(u8),
        Sync,
        Crash,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (0..40u8, proptest::option::of(any::<u8>())).prop_map(|(k, v)| Step::Put(k, v)),
            1 => (0..4u8).prop_map(Step::Clear),
            3 => Just(Step::Sync),
            1 => Just(Step::Crash),
        ]
    }

    proptest::proptest! {
        /// Whatever the mix of writes, syncs, checkpoints (in the background, each advancing
        /// a step at every sync) and crashes (each leaving a torn record), the store holds
        /// exactly what a map of synced writes holds, by scan and by key.
        #[test]
        fn a_store_keeps_exactly_what_was_synced(steps in proptest::collection::vec(step(), 1..300)) {
            let mut s = MemStore::new();
            s.lock().checkpoint_bytes = 300;
            let key = |k: u8| vec![k / 10, k];
            let mut durable = BTreeMap::new();
            let mut staged = durable.clone();
            for st in steps {
                match st {
                    Step::Put(k, v) => {
                        let v = v.map(|v| vec![v; 20]);
                        s.put(Table::Objects, &key(k), v.clone());
                        match v {
                            Some(v) => staged.insert(key(k), v),
                            None => staged.remove(&key(k)),
                        };
                    }
                    Step::Clear(p) => {
                        s.delete_prefix(Table::Objects, &[p]);
                        staged.retain(|k: &Vec<u8>, _| k[0] != p);
                    }
                    Step::Sync => {
                        s.sync().unwrap();
                        durable = staged.clone();
                    }
                    Step::Crash => {
                        s.crash();
                        s.lock().checkpoint_bytes = 300;
                        staged = durable.clone();
                    }
                }
                let all: BTreeMap<_, _> = s.scan_prefix(Table::Objects, b"").unwrap().into_iter().collect();
                proptest::prop_assert_eq!(&all, &staged);
                for k in 0..40 {
                    let got = s.get(Table::Objects, &key(k)).unwrap();
                    proptest::prop_assert_eq!(got.as_ref(), staged.get(&key(k)), "key {}", k);
                }
            }
        }
    }
}
