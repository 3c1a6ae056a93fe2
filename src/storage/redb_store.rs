//! [`Store`](super::Store) on redb: one database file, `hyperdex.redb`, and two write-ahead
//! logs, `hyperdex.wal` and `hyperdex.wal.1`, in the node's data directory (see [`Logged`] for
//! how they work together).
//!
//! A sync writes one record after the last in the active log and `fdatasync`s it (the logs
//! grow ahead of their records, in zeros: a sync that does not change a file's size is
//! cheaper); the writes reach redb in a checkpoint, one write transaction with immediate
//! durability for every [`CHECKPOINT_BYTES`] of log, on a thread of its own while the daemon
//! goes on.

#![allow(clippy::disallowed_methods)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use redb::{Database, ReadOnlyTable, ReadableDatabase, TableDefinition};

use super::log_file::LogFile;
use super::logged::{Backend, Logged};
use super::overlay::{prefix_end, stack, Overlay};
use super::{KeyValues, LogWriter, StoreError, Table};

const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");
const INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("index");
const PENDING: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pending");
const SUBSPACE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("subspace");
const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
/// The log's bookkeeping: the last record the tree holds.
const WAL: TableDefinition<&str, u64> = TableDefinition::new("wal");
const CHECKPOINTED: &str = "checkpointed";

fn def(t: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    match t {
        Table::Objects => OBJECTS,
        Table::Meta => META,
        Table::Index => INDEX,
        Table::Pending => PENDING,
        Table::Subspace => SUBSPACE,
        Table::Records => RECORDS,
    }
}

/// redb's own page cache. The operating system caches the file too; a fixed cache keeps a
/// server's memory independent of how much data it holds (redb's default is 1 GiB, which a
/// daemon with a few hundred MB of data grows into during a state transfer).
pub const CACHE_BYTES: usize = 64 << 20;

/// Log bytes between checkpoints. The writes they hold are also kept in memory until the
/// checkpoint (about twice this), and replayed when a server restarts.
pub const CHECKPOINT_BYTES: u64 = 16 << 20;

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

/// A table as the last checkpoint left it.
type Snapshot = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// Every table as the last checkpoint left it, in [`Table::ALL`]'s order. Opening a read
/// transaction and a table costs more than the read itself, so reads share one set of open
/// tables until the next checkpoint commits (which is also when the pages they pin can go).
fn snapshot(db: &Database) -> Result<Vec<Snapshot>, StoreError> {
    let tx = db.begin_read().map_err(io)?;
    Table::ALL
        .iter()
        .map(|t| tx.open_table(def(*t)).map_err(io))
        .collect()
}

/// redb and the log files.
pub struct RedbBackend {
    /// What reads see of the tree: [`snapshot`] after the last checkpoint. Declared before
    /// the database, so that its read transaction ends first.
    tables: Vec<Snapshot>,
    db: Arc<Database>,
    /// The active log, shared with the sync thread's writer.
    active: Arc<Mutex<LogFile>>,
    /// The inactive log (`None` while a background checkpoint empties it).
    other: Option<LogFile>,
    /// The background checkpoint's outcome, and the inactive log back.
    job: Option<mpsc::Receiver<(Result<(), StoreError>, LogFile)>>,
}

impl RedbBackend {
    fn active(&self) -> std::sync::MutexGuard<'_, LogFile> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on log `which`: 0 the active one, 1 the other.
    fn with_log<R>(
        &mut self,
        which: usize,
        f: impl FnOnce(&mut LogFile) -> std::io::Result<R>,
    ) -> Result<R, StoreError> {
        match which {
            0 => f(&mut self.active()).map_err(io),
            _ => match self.other.as_mut() {
                Some(log) => f(log).map_err(io),
                None => Err(StoreError::Io("the inactive log is in use".into())),
            },
        }
    }
}

impl Drop for RedbBackend {
    /// Waits for a background checkpoint, which holds the database open.
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            let _ = job.recv();
        }
    }
}

/// Writes `changes` to the tree in one durable transaction, with `seq`.
fn commit(db: &Database, changes: &Overlay, seq: u64) -> Result<(), StoreError> {
    let tx = db.begin_write().map_err(io)?;
    {
        // In `Table::ALL`'s order, which is the declaration order: `tables[t as usize]`.
        let mut tables = Vec::with_capacity(Table::ALL.len());
        for t in Table::ALL {
            tables.push(tx.open_table(def(t)).map_err(io)?);
        }
        for (t, p) in &changes.cleared {
            let under = |k: &[u8], _: &[u8]| !k.starts_with(p);
            let table = &mut tables[*t as usize];
            match prefix_end(p) {
                Some(end) => table.retain_in::<&[u8], _>(p.as_slice()..end.as_slice(), under),
                None => table.retain_in::<&[u8], _>(p.as_slice().., under),
            }
            .map_err(io)?;
        }
        for (t, k, v) in changes.staged.iter() {
            let table = &mut tables[t as usize];
            match v {
                Some(v) => {
                    table.insert(k, v.as_slice()).map_err(io)?;
                }
                None => {
                    table.remove(k).map_err(io)?;
                }
            }
        }
        let mut wal = tx.open_table(WAL).map_err(io)?;
        wal.insert(CHECKPOINTED, seq).map_err(io)?;
    }
    tx.commit().map_err(io)
}

/// Empties a log durably.
fn empty(log: &mut LogFile) -> Result<(), StoreError> {
    log.cut(0).map_err(io)
}

/// The production store.
pub type RedbStore = Logged<RedbBackend>;

impl Logged<RedbBackend> {
    /// Opens (creating if needed) the store in directory `dir`, which is created if missing,
    /// and replays its log.
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: dir.display().to_string(),
            reason,
        };
        if dir.exists() && !dir.is_dir() {
            return Err(open_err("it exists and is not a directory".into()));
        }
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let file: PathBuf = dir.join("hyperdex.redb");
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&file)
            .map_err(|e| open_err(format!("{}: {e}", file.display())))?;
        // Create the tables up front so reads never meet a missing table.
        let tx = db.begin_write().map_err(|e| open_err(e.to_string()))?;
        {
            for t in Table::ALL {
                tx.open_table(def(t)).map_err(|e| open_err(e.to_string()))?;
            }
            tx.open_table(WAL).map_err(|e| open_err(e.to_string()))?;
        }
        tx.commit().map_err(|e| open_err(e.to_string()))?;
        let wal = dir.join("hyperdex.wal");
        let open_log = |path: &Path| {
            LogFile::open(path).map_err(|e| open_err(format!("{}: {e}", path.display())))
        };
        let (first, second) = (open_log(&wal)?, open_log(&dir.join("hyperdex.wal.1"))?);
        // The logs' directory entries must be durable before anything in them counts as such.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| open_err(format!("syncing the directory: {e}")))?;
        let tables = snapshot(&db).map_err(|e| open_err(e.to_string()))?;
        let backend = RedbBackend {
            tables,
            db: Arc::new(db),
            active: Arc::new(Mutex::new(first)),
            other: Some(second),
            job: None,
        };
        Logged::recover(backend, CHECKPOINT_BYTES)
            .map_err(|e| open_err(format!("replaying {}: {e}", wal.display())))
    }
}

impl Backend for RedbBackend {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let t = &self.tables[table as usize];
        Ok(t.get(key).map_err(io)?.map(|v| v.value().to_vec()))
    }

    fn scan_from(
        &self,
        table: Table,
        (prefix, after): (&[u8], Option<&[u8]>),
        overs: &[&Overlay],
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        use std::ops::Bound;
        let t = &self.tables[table as usize];
        let lower: Bound<&[u8]> = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let range = t.range::<&[u8]>((lower, Bound::Unbounded)).map_err(io)?;
        let failure = std::cell::RefCell::new(None);
        let durable = range
            .map_while(|item| match item {
                Ok((k, v)) => Some((k.value().to_vec(), v.value().to_vec())),
                Err(e) => {
                    *failure.borrow_mut() = Some(io(e));
                    None
                }
            })
            .take_while(|(k, _)| k.starts_with(prefix));
        let out = stack(table, (prefix, after), overs, Box::new(durable))
            .take(limit)
            .collect();
        match failure.into_inner() {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn checkpoint(&mut self, changes: &Overlay, seq: u64) -> Result<(), StoreError> {
        commit(&self.db, changes, seq)?;
        self.tables = snapshot(&self.db)?;
        Ok(())
    }

    fn checkpointed(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(WAL).map_err(io)?;
        Ok(t.get(CHECKPOINTED).map_err(io)?.map_or(0, |v| v.value()))
    }

    fn append(&mut self, record: &[u8]) -> Result<(), StoreError> {
        self.active().append(&[record]).map_err(io)
    }

    fn read_logs(&mut self) -> Result<[Vec<u8>; 2], StoreError> {
        Ok([
            self.with_log(0, LogFile::read_all)?,
            self.with_log(1, LogFile::read_all)?,
        ])
    }

    fn cut_log(&mut self, which: usize, len: u64) -> Result<(), StoreError> {
        self.with_log(which, |log| log.cut(len))
    }

    fn switch_log(&mut self) -> Result<(), StoreError> {
        let other = self
            .other
            .take()
            .ok_or_else(|| StoreError::Io("the inactive log is in use".into()))?;
        let previous = std::mem::replace(&mut *self.active(), other);
        self.other = Some(previous);
        Ok(())
    }

    fn start_checkpoint(&mut self, changes: Arc<Overlay>, seq: u64) -> Result<(), StoreError> {
        let Some(mut old) = self.other.take() else {
            return Err(StoreError::Io("no inactive log to checkpoint from".into()));
        };
        let db = self.db.clone();
        let work = move || {
            let done = commit(&db, &changes, seq).and_then(|()| empty(&mut old));
            (done, old)
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("hyperdex-checkpoint".into())
            .spawn(move || {
                let _ = tx.send(work());
            });
        if let Err(e) = spawned {
            // The receiver then reports the checkpoint failed, and the store stops.
            tracing::error!("cannot start a checkpoint thread: {e}");
        }
        self.job = Some(rx);
        Ok(())
    }

    fn checkpoint_finished(&mut self, wait: bool) -> Option<Result<(), StoreError>> {
        let Some(job) = &self.job else {
            return Some(Ok(()));
        };
        let outcome = if wait {
            job.recv().map_err(|_| ())
        } else {
            match job.try_recv() {
                Ok(o) => Ok(o),
                Err(mpsc::TryRecvError::Empty) => return None,
                Err(mpsc::TryRecvError::Disconnected) => Err(()),
            }
        };
        self.job = None;
        match outcome {
            Ok((done, old)) => {
                self.other = Some(old);
                // The frozen writes are read from the tree from now on.
                Some(done.and_then(|()| {
                    self.tables = snapshot(&self.db)?;
                    Ok(())
                }))
            }
            Err(()) => Some(Err(StoreError::Io(
                "the checkpoint thread stopped without finishing".into(),
            ))),
        }
    }

    fn log_writer(&self) -> Option<Box<dyn LogWriter>> {
        Some(Box::new(FileWriter(self.active.clone())))
    }
}

/// The active log, written from the daemon's sync thread. The log is
/// switched only while no record is in flight, so no append straddles a switch.
struct FileWriter(Arc<Mutex<LogFile>>);

impl LogWriter for FileWriter {
    fn append(&mut self, records: &[&[u8]]) -> Result<(), StoreError> {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        log.append(records).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{wal, Store};

    /// A test's directory, removed when the test passes.
    struct TempDir(PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn tempdir(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("hyperdex-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        TempDir(d)
    }

    #[test]
    fn synced_writes_survive_reopening() {
        let dir = tempdir("reopen");
        {
            let mut s = RedbStore::open(&dir).unwrap();
            s.put(Table::Objects, b"k1", Some(b"v1".to_vec()));
            s.put(Table::Meta, b"id", Some(b"7".to_vec()));
            s.sync().unwrap();
            s.put(Table::Objects, b"k2", Some(b"unsynced".to_vec()));
            assert_eq!(s.scan_prefix(Table::Objects, b"k").unwrap().len(), 2);
        }
        let mut s = RedbStore::open(&dir).unwrap();
        assert_eq!(s.get(Table::Objects, b"k1").unwrap(), Some(b"v1".to_vec()));
        for i in 0..10u8 {
            s.put(Table::Objects, &[b'r', i], Some(vec![i]));
        }
        s.sync().unwrap();
        s.put(Table::Objects, &[b'r', 3], None);
        s.put(Table::Objects, &[b'r', 20], Some(vec![20]));
        let window = s
            .scan_from(Table::Objects, b"r", Some(&[b'r', 1]), 3)
            .unwrap();
        let keys: Vec<u8> = window.iter().map(|(k, _)| k[1]).collect();
        assert_eq!(keys, vec![2, 4, 5]);
        let rest = s
            .scan_from(Table::Objects, b"r", Some(&[b'r', 9]), 10)
            .unwrap();
        assert_eq!(rest, vec![(vec![b'r', 20], vec![20])]);
        assert_eq!(s.get(Table::Objects, b"k2").unwrap(), None);
        assert_eq!(s.get(Table::Meta, b"id").unwrap(), Some(b"7".to_vec()));
    }

    #[test]
    fn a_prefix_deleted_whole_is_gone_after_reopening() {
        let dir = tempdir("prefix");
        {
            let mut s = RedbStore::open(&dir).unwrap();
            for i in 0..=255u8 {
                s.put(Table::Objects, &[1, i], Some(vec![i]));
                s.put(Table::Objects, &[2, i], Some(vec![i]));
            }
            s.put(Table::Objects, &[0xff, 0xff, 1], Some(vec![9]));
            s.sync().unwrap();
            s.delete_prefix(Table::Objects, &[1]);
            s.put(Table::Objects, &[1, 7], Some(b"again".to_vec()));
            s.delete_prefix(Table::Objects, &[0xff, 0xff]);
            assert_eq!(s.scan_prefix(Table::Objects, &[1]).unwrap().len(), 1);
            s.sync().unwrap();
        }
        let s = RedbStore::open(&dir).unwrap();
        assert_eq!(
            s.scan_prefix(Table::Objects, &[1]).unwrap(),
            vec![(vec![1, 7], b"again".to_vec())]
        );
        assert_eq!(s.scan_prefix(Table::Objects, &[2]).unwrap().len(), 256);
        assert!(s.scan_prefix(Table::Objects, &[0xff]).unwrap().is_empty());
    }

    #[test]
    fn the_log_is_replayed_and_a_torn_tail_dropped() {
        let dir = tempdir("torn");
        {
            let mut s = RedbStore::open(&dir).unwrap();
            s.checkpoint_bytes = 200;
            for i in 0..20u8 {
                s.put(Table::Objects, &[i], Some(vec![i; 30]));
                s.sync().unwrap();
            }
            assert!(s.checkpoints > 0, "checkpoints were taken");
            s.put(Table::Objects, b"late", Some(b"synced".to_vec()));
            s.delete_prefix(Table::Objects, &[3]);
            s.sync().unwrap();
            s.put(Table::Objects, b"never", Some(b"synced".to_vec()));
        }
        // A record half written when the power failed.
        let mut torn = Vec::new();
        wal::encode_put(&mut torn, Table::Objects, b"torn", Some(b"x"));
        let torn = wal::frame(1_000, &torn);
        // Either log may be the active one (and have grown ahead of its records, in zeros):
        // both get it after their last record.
        let logs = [dir.join("hyperdex.wal"), dir.join("hyperdex.wal.1")];
        for log in &logs {
            let end = wal::read(&std::fs::read(log).unwrap()).1;
            let file = std::fs::OpenOptions::new().write(true).open(log).unwrap();
            std::os::unix::fs::FileExt::write_all_at(&file, &torn[..torn.len() - 3], end as u64)
                .unwrap();
        }
        let log = &logs[0];
        let mut s = RedbStore::open(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(log).unwrap().len(),
            0,
            "replayed, then checkpointed"
        );
        assert_eq!(
            s.get(Table::Objects, b"late").unwrap(),
            Some(b"synced".to_vec())
        );
        assert_eq!(s.get(Table::Objects, &[3]).unwrap(), None);
        assert_eq!(s.get(Table::Objects, &[19]).unwrap(), Some(vec![19; 30]));
        assert_eq!(s.get(Table::Objects, b"never").unwrap(), None);
        assert_eq!(s.get(Table::Objects, b"torn").unwrap(), None);
        assert_eq!(s.scan_prefix(Table::Objects, b"").unwrap().len(), 20);
        // Sequence numbers go on from the checkpoint: a new record is replayed.
        s.put(Table::Objects, b"after", Some(b"1".to_vec()));
        s.sync().unwrap();
        drop(s);
        let s = RedbStore::open(&dir).unwrap();
        assert_eq!(
            s.get(Table::Objects, b"after").unwrap(),
            Some(b"1".to_vec())
        );
    }

    #[test]
    fn reads_see_every_checkpoint_as_it_finishes() {
        let dir = tempdir("snapshots");
        let mut s = RedbStore::open(&dir).unwrap();
        s.checkpoint_bytes = 200;
        for i in 0..40u8 {
            s.put(Table::Objects, &[i], Some(vec![i; 30]));
            s.sync().unwrap();
            // Whether the background checkpoint has finished or not, every write reads back,
            // and so does one of the first, long checkpointed.
            for k in [0, i / 2, i] {
                let got = s.get(Table::Objects, &[k]).unwrap();
                assert_eq!(got, Some(vec![k; 30]), "key {k} after write {i}");
            }
            assert_eq!(
                s.scan_prefix(Table::Objects, b"").unwrap().len(),
                i as usize + 1
            );
        }
        assert!(s.checkpoints > 5, "{} checkpoints", s.checkpoints);
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_a_clear_error() {
        let dir = tempdir("file");
        std::fs::write(&*dir, b"not a directory").unwrap();
        let err = RedbStore::open(&dir).err().expect("must fail");
        assert!(err.to_string().contains("is not a directory"), "{err}");
        let _ = std::fs::remove_file(&*dir);
    }
}
