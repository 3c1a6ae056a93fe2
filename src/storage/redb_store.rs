//! [`Store`](super::Store) on redb: one database file, `hyperdex.redb`, and one write-ahead log,
//! `hyperdex.wal`, in the node's data directory (see [`Logged`] for how they work together).
//!
//! A sync appends one record to the log and `fdatasync`s it; the writes reach redb in a
//! checkpoint, one write transaction with immediate durability for every
//! [`CHECKPOINT_BYTES`] of log.

#![allow(clippy::disallowed_methods)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition};

use super::logged::{Backend, Logged};
use super::overlay::{prefix_end, Overlay};
use super::{KeyValues, LogWriter, StoreError, Table};

const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");
const INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("index");
/// The log's bookkeeping: the last record the tree holds.
const WAL: TableDefinition<&str, u64> = TableDefinition::new("wal");
const CHECKPOINTED: &str = "checkpointed";

fn def(t: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    match t {
        Table::Objects => OBJECTS,
        Table::Meta => META,
        Table::Index => INDEX,
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

/// redb and the log file.
pub struct RedbBackend {
    db: Database,
    log: File,
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
            for t in [Table::Objects, Table::Meta, Table::Index] {
                tx.open_table(def(t)).map_err(|e| open_err(e.to_string()))?;
            }
            tx.open_table(WAL).map_err(|e| open_err(e.to_string()))?;
        }
        tx.commit().map_err(|e| open_err(e.to_string()))?;
        let wal = dir.join("hyperdex.wal");
        let log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&wal)
            .map_err(|e| open_err(format!("{}: {e}", wal.display())))?;
        // The log's directory entry must be durable before anything in the log counts as such.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| open_err(format!("syncing the directory: {e}")))?;
        Logged::recover(RedbBackend { db, log }, CHECKPOINT_BYTES)
            .map_err(|e| open_err(format!("replaying {}: {e}", wal.display())))
    }
}

impl Backend for RedbBackend {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(def(table)).map_err(io)?;
        Ok(t.get(key).map_err(io)?.map(|v| v.value().to_vec()))
    }

    fn scan_from(
        &self,
        table: Table,
        (prefix, after): (&[u8], Option<&[u8]>),
        over: &Overlay,
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        use std::ops::Bound;
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(def(table)).map_err(io)?;
        let lower: Bound<&[u8]> = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let range = t.range::<&[u8]>((lower, Bound::Unbounded)).map_err(io)?;
        let mut failure = None;
        let durable = range
            .map_while(|item| match item {
                Ok((k, v)) => Some((k.value().to_vec(), v.value().to_vec())),
                Err(e) => {
                    failure = Some(io(e));
                    None
                }
            })
            .take_while(|(k, _)| k.starts_with(prefix));
        let out = over.scan(table, (prefix, after), durable, limit);
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn checkpoint(&mut self, changes: &Overlay, seq: u64) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(io)?;
        {
            let mut objects = tx.open_table(OBJECTS).map_err(io)?;
            let mut meta = tx.open_table(META).map_err(io)?;
            let mut index = tx.open_table(INDEX).map_err(io)?;
            for (t, p) in &changes.cleared {
                let table = match t {
                    Table::Objects => &mut objects,
                    Table::Meta => &mut meta,
                    Table::Index => &mut index,
                };
                let under = |k: &[u8], _: &[u8]| !k.starts_with(p);
                match prefix_end(p) {
                    Some(end) => table.retain_in::<&[u8], _>(p.as_slice()..end.as_slice(), under),
                    None => table.retain_in::<&[u8], _>(p.as_slice().., under),
                }
                .map_err(io)?;
            }
            for ((t, k), v) in &changes.staged {
                let table = match t {
                    Table::Objects => &mut objects,
                    Table::Meta => &mut meta,
                    Table::Index => &mut index,
                };
                match v {
                    Some(v) => {
                        table.insert(k.as_slice(), v.as_slice()).map_err(io)?;
                    }
                    None => {
                        table.remove(k.as_slice()).map_err(io)?;
                    }
                }
            }
            let mut wal = tx.open_table(WAL).map_err(io)?;
            wal.insert(CHECKPOINTED, seq).map_err(io)?;
        }
        tx.commit().map_err(io)
    }

    fn checkpointed(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(WAL).map_err(io)?;
        Ok(t.get(CHECKPOINTED).map_err(io)?.map_or(0, |v| v.value()))
    }

    fn append(&mut self, record: &[u8]) -> Result<(), StoreError> {
        self.log.write_all(record).map_err(io)?;
        self.log.sync_data().map_err(io)
    }

    fn read_log(&mut self) -> Result<Vec<u8>, StoreError> {
        use std::io::Seek;
        let mut bytes = Vec::new();
        self.log.rewind().map_err(io)?;
        self.log.read_to_end(&mut bytes).map_err(io)?;
        Ok(bytes)
    }

    fn truncate_log(&mut self, len: u64) -> Result<(), StoreError> {
        self.log.set_len(len).map_err(io)?;
        self.log.sync_all().map_err(io)
    }

    fn log_writer(&self) -> Option<Box<dyn LogWriter>> {
        match self.log.try_clone() {
            Ok(file) => Some(Box::new(FileWriter(file))),
            Err(e) => {
                tracing::warn!("cannot share the log file ({e}): syncing on the actor's thread");
                None
            }
        }
    }
}

/// The log file (opened for appending), written from the daemon's sync thread.
struct FileWriter(File);

impl LogWriter for FileWriter {
    fn append(&mut self, record: &[u8]) -> Result<(), StoreError> {
        self.0.write_all(record).map_err(io)?;
        self.0.sync_data().map_err(io)
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
        let log = dir.join("hyperdex.wal");
        let mut file = OpenOptions::new().append(true).open(&log).unwrap();
        file.write_all(&torn[..torn.len() - 3]).unwrap();
        drop(file);
        let mut s = RedbStore::open(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(&log).unwrap().len(),
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
    fn a_file_in_place_of_the_directory_is_a_clear_error() {
        let dir = tempdir("file");
        std::fs::write(&*dir, b"not a directory").unwrap();
        let err = RedbStore::open(&dir).err().expect("must fail");
        assert!(err.to_string().contains("is not a directory"), "{err}");
        let _ = std::fs::remove_file(&*dir);
    }
}
