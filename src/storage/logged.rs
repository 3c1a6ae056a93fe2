//! A [`Store`] made of a write-ahead log in front of a slower durable tree.
//!
//! A sync appends the writes staged since the last one to the log as one record and syncs
//! that (one `fdatasync` of a few bytes per batch: the daemon's group commit). The writes stay
//! in memory ([`Overlay`], read before the tree) until a *checkpoint* writes them all to the
//! tree in one durable transaction: so the tree's expensive commit happens once per
//! [`Logged::checkpoint_bytes`] of writes instead of once per batch, and memory holds only
//! what is not yet checkpointed.
//!
//! There are two log files, one *active*. A checkpoint happens in the background: the
//! writes so far are frozen (still read, below newer ones), the other, empty log becomes the
//! active one, and the backend writes the frozen writes to the tree and then empties the
//! inactive log, while new writes go on being logged and synced. The next checkpoint waits
//! for that one (and the store waits for it once the active log is four checkpoints long).
//!
//! Opening replays both logs over the tree: every whole record after the tree's last
//! checkpoint, in sequence order (a crash between a checkpoint and emptying its log replays
//! nothing twice: records carry sequence numbers and the tree the last one it holds), cutting
//! off a torn tail; then it checkpoints at once and empties both.

use std::sync::Arc;

use super::overlay::{Overlay, Unsynced};
use super::wal::{self, Op};
use super::{KeyValues, LogWriter, Store, StoreError, Table};
use crate::bugs::{planted, Bug};

/// What a [`Logged`] store needs below it: a tree and two logs.
pub trait Backend: Send {
    /// The tree's value under `key` (checkpointed writes only).
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// [`Store::scan_from`] over the tree with `overs` applied on top, the first lowest
    /// (`Overlay::over`).
    fn scan_from(
        &self,
        table: Table,
        range: (&[u8], Option<&[u8]>),
        overs: &[&Overlay],
        limit: usize,
    ) -> Result<KeyValues, StoreError>;
    /// Writes `changes` to the tree durably, with `seq`, the last log record they include,
    /// and waits for it (when opening).
    fn checkpoint(&mut self, changes: &Overlay, seq: u64) -> Result<(), StoreError>;
    /// The last log record the tree includes (0: none).
    fn checkpointed(&self) -> Result<u64, StoreError>;
    /// Appends `record` to the active log and makes it durable.
    fn append(&mut self, record: &[u8]) -> Result<(), StoreError>;
    /// Both logs as they are on disk (when opening, before any switch).
    fn read_logs(&mut self) -> Result<[Vec<u8>; 2], StoreError>;
    /// Cuts log `which` (numbered as [`read_logs`](Backend::read_logs) returns them) to its
    /// first `len` bytes, durably.
    fn cut_log(&mut self, which: usize, len: u64) -> Result<(), StoreError>;
    /// Makes the inactive log, which is empty, the active one: later appends go there.
    fn switch_log(&mut self) -> Result<(), StoreError>;
    /// Starts writing `changes` to the tree durably with `seq`, then emptying the inactive
    /// log, in the background.
    fn start_checkpoint(&mut self, changes: Arc<Overlay>, seq: u64) -> Result<(), StoreError>;
    /// Whether the checkpoint begun last has finished (`wait`: once it has), and how; `None`
    /// while it runs.
    fn checkpoint_finished(&mut self, wait: bool) -> Option<Result<(), StoreError>>;
    /// A writer that appends to the active log from another thread (`None`: appends happen
    /// in [`Store::sync`] only).
    fn log_writer(&self) -> Option<Box<dyn LogWriter>> {
        None
    }
}

/// A log in front of a tree; see the module documentation.
pub struct Logged<B> {
    pub(super) backend: B,
    /// Every write not yet in the tree, synced or not (but those of a checkpoint running).
    pending: Overlay,
    /// The writes a checkpoint running in the background is putting in the tree; read below
    /// `pending`.
    frozen: Option<Arc<Overlay>>,
    /// The writes staged since the last sync, encoded for the log.
    unlogged: Vec<u8>,
    /// How many writes `unlogged` holds.
    pub(super) unlogged_ops: usize,
    /// The tables `unlogged` writes to, one bit each (`Table as usize`).
    unlogged_tables: u8,
    /// The last record's sequence number.
    pub(super) seq: u64,
    /// Bytes in the log since the last checkpoint.
    log_bytes: u64,
    /// A checkpoint is taken once the log holds this many bytes.
    pub checkpoint_bytes: u64,
    /// Checkpoints taken since opening (for tests and statistics).
    pub checkpoints: u64,
    /// Why the store stopped taking writes (an append or a checkpoint failed).
    failed: Option<String>,
    /// Keys with a write in a record not yet durable (or not yet begun), and that record's
    /// sequence number; prefixes deleted likewise. Bounded by the records in flight.
    unsynced: Unsynced,
    unsynced_prefixes: Vec<(Table, Vec<u8>, u64)>,
    /// The last record known durable.
    durable: u64,
}

impl<B: Backend> Logged<B> {
    /// Opens the store on `backend`, replaying its logs.
    pub fn recover(mut backend: B, checkpoint_bytes: u64) -> Result<Logged<B>, StoreError> {
        let checkpointed = backend.checkpointed()?;
        let logs = backend.read_logs()?;
        let mut records = Vec::new();
        let mut any = false;
        for (which, log) in logs.iter().enumerate() {
            let (read, whole) = wal::read(log);
            if whole < log.len() {
                // Zeros are room the log was grown by (`log_file`), anything else a torn record.
                if log[whole..].iter().any(|b| *b != 0) {
                    crate::probe!("storage.torn_tail_dropped");
                    tracing::warn!(
                        bytes = log.len() - whole,
                        "the write-ahead log ends in a torn record (a crash while it was \
                         written); it was never acknowledged and is dropped"
                    );
                }
                backend.cut_log(which, whole as u64)?;
            }
            any |= whole > 0;
            records.extend(read);
        }
        records.sort_by_key(|r| r.seq);
        if records.first().is_some_and(|r| r.seq <= checkpointed) {
            // A crash after a checkpoint reached the tree and before its log was emptied.
            crate::probe!("storage.checkpointed_records_skipped");
        }
        let mut store = Logged {
            backend,
            pending: Overlay::default(),
            frozen: None,
            unlogged: Vec::new(),
            unlogged_ops: 0,
            unlogged_tables: 0,
            seq: checkpointed,
            log_bytes: 0,
            checkpoint_bytes,
            checkpoints: 0,
            failed: None,
            unsynced: Unsynced::default(),
            unsynced_prefixes: Vec::new(),
            durable: checkpointed,
        };
        let replayed = records
            .into_iter()
            .filter(|r| r.seq > checkpointed && !planted(Bug::LogNotReplayed));
        for record in replayed {
            for op in record.ops {
                match op {
                    Op::Put { table, key, value } => store.pending.put(table, &key, value),
                    Op::Clear { table, prefix } => store.pending.clear_prefix(table, &prefix),
                }
            }
            store.seq = store.seq.max(record.seq);
        }
        store.durable = store.seq;
        if any {
            crate::probe!("storage.log_replayed");
            if !store.pending.is_empty() {
                let seq = store.seq;
                store.backend.checkpoint(&store.pending, seq)?;
                store.pending = Overlay::default();
            }
            store.backend.cut_log(0, 0)?;
            store.backend.cut_log(1, 0)?;
        }
        Ok(store)
    }

    /// Starts a checkpoint of everything synced (in the background; see the module
    /// documentation), after waiting for the one before to finish. Does nothing while any
    /// write is not yet durable (staged, or in a record still being written): the tree must
    /// never hold what the log may lose.
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.usable()?;
        if !self.unlogged.is_empty() || self.durable < self.seq {
            return Ok(());
        }
        self.finish_checkpoint(true)?;
        if self.pending.is_empty() && self.log_bytes == 0 {
            return Ok(());
        }
        self.backend.switch_log().map_err(|e| self.fail(e))?;
        let frozen = Arc::new(std::mem::take(&mut self.pending));
        // Read from where they are even if the checkpoint cannot start (the store then fails).
        self.frozen = Some(frozen.clone());
        self.log_bytes = 0;
        let started = self.backend.start_checkpoint(frozen, self.seq);
        started.map_err(|e| self.fail(e))
    }

    /// Takes note of the background checkpoint's end, if it has ended (`wait`: once it has).
    fn finish_checkpoint(&mut self, wait: bool) -> Result<(), StoreError> {
        if self.frozen.is_none() {
            return Ok(());
        }
        match self.backend.checkpoint_finished(wait) {
            None => Ok(()),
            Some(Ok(())) => {
                self.frozen = None;
                self.checkpoints += 1;
                Ok(())
            }
            Some(Err(e)) => Err(self.fail(e)),
        }
    }

    /// The writes staged since the last sync, as the record a sync would append.
    pub(super) fn unsynced_record(&self) -> Option<Vec<u8>> {
        (!self.unlogged.is_empty()).then(|| wal::frame(self.seq + 1, &self.unlogged))
    }

    /// An error once an append or a checkpoint has failed: what the store holds in memory
    /// and what its log holds may then differ, so it takes nothing more.
    fn usable(&self) -> Result<(), StoreError> {
        match &self.failed {
            Some(e) => Err(StoreError::Io(format!("the store failed earlier: {e}"))),
            None => Ok(()),
        }
    }

    /// Records `e` as the store's failure and returns it.
    fn fail(&mut self, e: StoreError) -> StoreError {
        self.failed = Some(e.to_string());
        e
    }

    /// Record `seq` (and every one before it) is durable.
    pub(super) fn durable_through(&mut self, seq: u64) {
        self.durable = seq;
        self.unsynced.durable_through(seq);
        self.unsynced_prefixes.retain(|(_, _, s)| *s > seq);
    }

    /// The writes staged since the last sync as the log's next record, counted as logged.
    pub(super) fn take_record(&mut self) -> Option<Vec<u8>> {
        let record = self.unsynced_record()?;
        self.seq += 1;
        self.unlogged.clear();
        self.unlogged_ops = 0;
        self.unlogged_tables = 0;
        self.log_bytes += record.len() as u64;
        Some(record)
    }
}

impl<B: Backend> Store for Logged<B> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let frozen = || self.frozen.as_ref().and_then(|f| f.get(table, key));
        match self.pending.get(table, key).or_else(frozen) {
            Some(v) => Ok(v),
            None => self.backend.get(table, key),
        }
    }

    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        // The frozen writes (if a checkpoint runs) below the pending ones.
        let overs: Vec<&Overlay> = self
            .frozen
            .as_deref()
            .into_iter()
            .chain([&self.pending])
            .collect();
        self.backend
            .scan_from(table, (prefix, after), &overs, limit)
    }

    fn put(&mut self, table: Table, key: &[u8], value: Option<Vec<u8>>) {
        self.unsynced.insert(table, key, self.seq + 1);
        wal::encode_put(&mut self.unlogged, table, key, value.as_deref());
        self.unlogged_ops += 1;
        self.unlogged_tables |= 1 << table as usize;
        self.pending.put(table, key, value);
    }

    fn delete_prefix(&mut self, table: Table, prefix: &[u8]) {
        self.unsynced_prefixes
            .push((table, prefix.to_vec(), self.seq + 1));
        wal::encode_clear(&mut self.unlogged, table, prefix);
        self.unlogged_ops += 1;
        self.unlogged_tables |= 1 << table as usize;
        self.pending.clear_prefix(table, prefix);
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.usable()?;
        self.finish_checkpoint(false)?;
        if let Some(record) = self.take_record() {
            self.backend.append(&record).map_err(|e| self.fail(e))?;
            self.durable_through(self.seq);
        }
        if self.checkpoint_due() {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn begin_sync(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        self.usable()?;
        self.finish_checkpoint(false)?;
        Ok(self.take_record())
    }

    fn log_writer(&self) -> Option<Box<dyn LogWriter>> {
        self.backend.log_writer()
    }

    fn staged_in(&self, table: Table) -> bool {
        self.unlogged_tables & (1 << table as usize) != 0
    }

    fn record_durable(&mut self) {
        if self.durable < self.seq {
            self.durable_through(self.durable + 1);
        }
    }

    fn unsynced(&self, table: Table, key: &[u8]) -> bool {
        self.unsynced.get(table, key).is_some()
            || self
                .unsynced_prefixes
                .iter()
                .any(|(t, p, _)| *t == table && key.starts_with(p))
    }

    fn checkpoint_due(&self) -> bool {
        // While one runs, the next starts (waiting for it) only once the log is long.
        let running = if self.frozen.is_some() { 4 } else { 1 };
        self.log_bytes >= running * self.checkpoint_bytes
    }

    fn checkpoint(&mut self) -> Result<(), StoreError> {
        Logged::checkpoint(self)
    }
}
