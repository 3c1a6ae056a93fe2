//! The sync thread: appends the actor's log records and makes them durable while the actor
//! goes on with the next batches (group commit).
//!
//! The actor hands over each batch's record with [`Syncer::begin`] and keeps the batch's
//! replies and acknowledgements until [`Syncer::finished`] says the record is durable; records
//! complete in the order they were begun. While one sync runs, the records begun meanwhile
//! wait, and the next sync appends them all with one `fdatasync`. At most
//! [`SYNCS_IN_FLIGHT`] records are outstanding: the actor waits for the oldest before
//! beginning another, so the outputs it holds are bounded.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::rt;
use crate::storage::{LogWriter, StoreError};

/// Records outstanding at once: one sync running, the records of the next one waiting.
pub const SYNCS_IN_FLIGHT: usize = 4;

/// The actor's end: records begun and what waits for each.
pub struct Syncer<T> {
    jobs: mpsc::Sender<Option<Vec<u8>>>,
    done: mpsc::Receiver<Result<(), StoreError>>,
    waiting: VecDeque<T>,
}

impl<T> Syncer<T> {
    /// Starts the sync thread appending with `writer`.
    pub fn start(writer: Box<dyn LogWriter>, metrics: Arc<Metrics>) -> Syncer<T> {
        let (jobs, jobs_rx) = mpsc::channel(SYNCS_IN_FLIGHT);
        let (done_tx, done) = mpsc::channel(SYNCS_IN_FLIGHT);
        rt::spawn_dedicated("hyperdex-sync", write(writer, jobs_rx, done_tx, metrics));
        Syncer {
            jobs,
            done,
            waiting: VecDeque::new(),
        }
    }

    /// Whether a record is still being written.
    pub fn busy(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Hands over `record` (`None`: nothing to write, but `then` must still wait for the
    /// records before it); `then` is returned by [`finished`](Self::finished) once it is
    /// durable. Waits first if [`SYNCS_IN_FLIGHT`] records are outstanding, returning what
    /// waited for the oldest.
    pub async fn begin(&mut self, record: Option<Vec<u8>>, then: T) -> Result<Vec<T>, StoreError> {
        let mut ready = Vec::new();
        while self.waiting.len() >= SYNCS_IN_FLIGHT {
            ready.push(self.finished().await?);
        }
        if self.jobs.send(record).await.is_err() {
            return Err(StoreError::Io("the sync thread stopped".into()));
        }
        self.waiting.push_back(then);
        Ok(ready)
    }

    /// What waited for the oldest outstanding record, if it is durable already.
    pub fn try_finished(&mut self) -> Result<Option<T>, StoreError> {
        match self.done.try_recv() {
            Ok(Ok(())) => Ok(self.waiting.pop_front()),
            Ok(Err(e)) => Err(e),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => {
                Err(StoreError::Io("the sync thread stopped".into()))
            }
        }
    }

    /// Waits for the oldest outstanding record to be durable and returns what waited for it
    /// (never resolves when none is outstanding).
    pub async fn finished(&mut self) -> Result<T, StoreError> {
        if self.waiting.is_empty() {
            std::future::pending::<()>().await;
        }
        match self.done.recv().await {
            Some(Ok(())) => match self.waiting.pop_front() {
                Some(t) => Ok(t),
                None => Err(StoreError::Io(
                    "a sync finished that was never begun".into(),
                )),
            },
            Some(Err(e)) => Err(e),
            None => Err(StoreError::Io("the sync thread stopped".into())),
        }
    }
}

async fn write(
    mut writer: Box<dyn LogWriter>,
    mut jobs: mpsc::Receiver<Option<Vec<u8>>>,
    done: mpsc::Sender<Result<(), StoreError>>,
    metrics: Arc<Metrics>,
) {
    while let Some(first) = jobs.recv().await {
        // Everything begun while the last sync ran goes in this one.
        let mut batch = vec![first];
        while let Ok(more) = jobs.try_recv() {
            batch.push(more);
        }
        let records: Vec<&[u8]> = batch.iter().flatten().map(Vec::as_slice).collect();
        if records.len() > 1 {
            crate::probe!("syncer.records_coalesced");
        }
        let mut result = Ok(());
        if !records.is_empty() {
            // Begun, not yet durable: a crash here leaves the records torn.
            rt::disk_pause().await;
            let started = rt::now();
            result = writer.append(&records);
            let took = rt::now().saturating_duration_since(started);
            metrics.sync_seconds.observe(took.as_secs_f64());
            // Durable, not yet acknowledged: a crash here loses only the replies.
            rt::disk_pause().await;
        }
        if let Err(e) = result {
            let _ = done.send(Err(e)).await;
            return;
        }
        for _ in &batch {
            if done.send(Ok(())).await.is_err() {
                return;
            }
        }
    }
}
