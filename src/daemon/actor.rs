//! The actor: the one task that owns a daemon's replica and store (see [`spawn`] for where it
//! runs).
//!
//! It repeats: take a batch of inputs (the newest configuration and lease first, then up to
//! [`ACTOR_BATCH`] queued events), step the replica through each, forward the batch's chain
//! writes to their successors, **sync the store once**, and only then deliver the other
//! outputs: replies to clients, acknowledgements and transfers to peers, reports to the
//! coordinator link. So every reply and acknowledgement leaves after the state it vouches for
//! is durable, one fsync covers many writes (group commit), and the syncs of a chain's members
//! overlap (pipelining). A batch that nothing waits for and that kept no pending write (the
//! head committing writes whose pending records are durable) begins no record of its own: its
//! writes go into the record of the next batch that something waits for (a read of a key it
//! wrote, say), of the next tick at the latest, or before a checkpoint or the end. It ticks the
//! replica every `tick` so that lost messages are resent.
//!
//! The actor makes no decision of its own: whether a client may be answered (configuration
//! version, lease) is the replica's to say. The configuration and the lease reach it through
//! `watch` channels, which hold only the newest value, so they never queue behind client
//! traffic and never grow.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tracing::error;

use crate::bugs::{planted, Bug};
use crate::config::{Config, RegionId};
use crate::limits::ACTOR_BATCH;
use crate::metrics::Metrics;
use crate::protocol::coordinator::JoinProgress;
use crate::protocol::{ChainMessage, Envelope, Message};
use crate::rt;
use crate::storage::{Store, StoreError, Table};

use super::peers::Peers;
use super::read_cache::ReadCache;
use super::replica::{Input, Lease, Output, Replica};
use super::syncer::Syncer;
use super::{Event, Waiter};

/// What waits for a record to be durable: whether there was a record (`false`: a batch
/// that wrote nothing, ordered behind the records before it) and the batch's outputs.
type Waiting = (bool, Vec<Output<Waiter>>);

/// Everything the actor owns and the channels it talks through.
pub struct Actor {
    pub replica: Replica<Waiter>,
    pub store: Box<dyn Store>,
    pub events: mpsc::Receiver<Event>,
    pub config: watch::Receiver<Arc<Config>>,
    pub lease: watch::Receiver<Option<Lease>>,
    pub peers: Peers,
    /// Wakes the coordinator link to fetch a newer configuration.
    pub fetch: Arc<Notify>,
    pub reports: mpsc::Sender<(RegionId, u64)>,
    /// How far this server's joins are, for the coordinator link's heartbeats.
    pub joining: watch::Sender<Vec<JoinProgress>>,
    pub tick: Duration,
    /// The last lease passed to the replica.
    pub last_lease: Option<Lease>,
    /// `true` when the daemon is asked to stop (see `DaemonOptions::shutdown`).
    pub shutdown: Option<watch::Receiver<bool>>,
    pub metrics: Arc<Metrics>,
    /// Objects and the view that reads answered without the actor use; every write of
    /// `store` forgets the object of its key (`read_cache::Invalidating`).
    pub cache: Arc<ReadCache>,
}

impl Actor {
    /// Runs until every event sender is gone, the daemon is asked to stop, or the store fails.
    pub async fn run(&mut self) -> Result<(), StoreError> {
        let mut batches = 0u64;
        let mut last_batch = 0usize;
        let mut next_tick = rt::now() + self.tick;
        // Without a log to append elsewhere, each batch syncs in this task (`rt::blocking`).
        let mut syncer = self
            .store
            .log_writer()
            .map(|w| Syncer::start(w, self.metrics.clone()));
        loop {
            // A batch that only reads awaits nothing: under load (more events queued, or a
            // batch of several), let the tasks it woke (the replies' writers) and the
            // runtime's timers and sockets have the thread first, and the next batch fill.
            // A lone event's batch does not: waiting for the next event yields the thread
            // anyway, and a yield made the worker poll its sockets and wake another worker
            // to take them over, a wake-up and a context switch for every such batch.
            if last_batch > 1 || !self.events.is_empty() {
                rt::yield_now().await;
            }
            self.deliver_synced(syncer.as_mut())?;
            if self.store.checkpoint_due() {
                // Only what is durable goes to the tree: what is staged and the records in
                // flight first.
                self.begin_staged(syncer.as_mut()).await?;
                self.drain(syncer.as_mut()).await?;
                // It may wait for the checkpoint before it.
                rt::blocking(|| self.store.checkpoint())?;
            }
            let Some(batch) = self.next_batch(next_tick, syncer.as_mut()).await? else {
                self.begin_staged(syncer.as_mut()).await?;
                self.drain(syncer.as_mut()).await?;
                return Ok(());
            };
            let mut batch = batch;
            let ticked = rt::now() >= next_tick;
            if ticked {
                batch.push(Input::Tick);
                next_tick = rt::now() + self.tick;
            }
            last_batch = batch.len();
            if batch.is_empty() {
                continue;
            }
            // A batch that may change more than the keys it names empties the read cache,
            // and what its reads found is not cached.
            let clears = batch.iter().any(clears_cache);
            let outs = match batch.iter().all(light) {
                true => self.step_batch(batch)?,
                false => rt::blocking(|| self.step_batch(batch))?,
            };
            batches += 1;
            if clears {
                self.cache.clear();
            }
            // Before any output of the batch leaves: see `replica::cached`.
            self.cache.publish(self.replica.view());
            // Records that became durable while the batch was stepped are counted first, so
            // that outputs vouched for by them (and by nothing staged since) leave now.
            self.deliver_synced(syncer.as_mut())?;
            // Pipelining: writes go on down their chains now, so that the successors' syncs
            // overlap this one. A forwarded write promises nothing (a member acknowledges a
            // write only after its own sync and its successor's acknowledgement, and a server
            // that lost staged writes in a crash leaves every chain when it registers again);
            // every reply and acknowledgement waits for the sync.
            let store = self.store.as_ref();
            let (early, mut outs): (Vec<_>, Vec<_>) =
                outs.into_iter().partition(|o| before_sync(o, store));
            if !clears {
                for o in &early {
                    if let Output::Read(_, _, key, Some(read)) = o {
                        self.cache.insert(key.clone(), read.clone());
                    }
                }
            }
            self.deliver(early);
            if planted(Bug::ReplyBeforeSync) {
                self.deliver(std::mem::take(&mut outs));
            }
            // The planted bug syncs only every 50th batch, acknowledging staged writes.
            if planted(Bug::AckBeforeSync) && !batches.is_multiple_of(50) {
                self.deliver(outs);
                continue;
            }
            let Some(syncer) = syncer.as_mut() else {
                // Staged, not yet durable: a crash here loses the batch.
                rt::disk_pause().await;
                let started = rt::now();
                rt::blocking(|| self.store.sync())?;
                let took = rt::now().saturating_duration_since(started);
                self.metrics.sync_seconds.observe(took.as_secs_f64());
                // Durable, not yet sent: a crash here loses only the replies.
                rt::disk_pause().await;
                self.deliver(outs);
                continue;
            };
            if outs.is_empty() && !ticked && !self.store.staged_in(Table::Pending) {
                // Nothing waits for this batch and it kept no pending write (a commit at the
                // head, say, whose pending records are durable already): its writes go into
                // the next record, begun by a batch that something waits for, a tick, a
                // checkpoint or the end. Until then a crash loses them as it would during
                // their sync, and a read of what they wrote waits for that record.
                // Counted only when it staged something; the scan is the simulation's alone.
                if cfg!(madsim) && Table::ALL.iter().any(|&t| self.store.staged_in(t)) {
                    crate::probe!("actor.record_deferred");
                }
                continue;
            }
            let record = self.store.begin_sync()?;
            if record.is_none() && !syncer.busy() {
                // Nothing staged, and everything these outputs saw is durable.
                self.deliver(outs);
                continue;
            }
            if record.is_none() && outs.is_empty() {
                continue;
            }
            let had_record = record.is_some();
            for ready in syncer.begin(record, (had_record, outs)).await? {
                self.durable(ready);
            }
        }
    }

    /// Steps the replica through a batch and records the state after it.
    fn step_batch(&mut self, batch: Vec<Event>) -> Result<Vec<Output<Waiter>>, StoreError> {
        let mut outs = Vec::new();
        self.metrics.batch_inputs.observe(batch.len() as f64);
        for mut input in batch {
            if let Input::Op { unix, .. } = &mut input {
                // Read when the write is ordered (it may have queued behind fsyncs).
                *unix = rt::unix_now();
            }
            let span = span_of(&input);
            let _in = span.enter();
            tracing::debug!("step");
            outs.extend(self.replica.step(self.store.as_mut(), rt::now(), input)?);
        }
        let joining = self.replica.joining();
        self.record(&joining);
        self.joining.send_if_modified(|j| {
            let changed = *j != joining;
            *j = joining;
            changed
        });
        Ok(outs)
    }

    /// A record (or, `false`, a batch without one) is durable: what waited for it goes.
    fn durable(&mut self, (had_record, outs): Waiting) {
        if had_record {
            self.store.record_durable();
        }
        self.deliver(outs);
    }

    /// Delivers what waited for records that are durable by now.
    fn deliver_synced(&mut self, syncer: Option<&mut Syncer<Waiting>>) -> Result<(), StoreError> {
        if let Some(syncer) = syncer {
            while let Some(ready) = syncer.try_finished()? {
                self.durable(ready);
            }
        }
        Ok(())
    }

    /// Begins a record of the writes staged and not yet in one (see `run`), if there are any.
    async fn begin_staged(
        &mut self,
        syncer: Option<&mut Syncer<Waiting>>,
    ) -> Result<(), StoreError> {
        if let Some(syncer) = syncer {
            if let Some(record) = self.store.begin_sync()? {
                for ready in syncer.begin(Some(record), (true, Vec::new())).await? {
                    self.durable(ready);
                }
            }
        }
        Ok(())
    }

    /// Waits until every record in flight is durable, delivering what waited for each.
    async fn drain(&mut self, syncer: Option<&mut Syncer<Waiting>>) -> Result<(), StoreError> {
        if let Some(syncer) = syncer {
            while syncer.busy() {
                let ready = syncer.finished().await?;
                self.durable(ready);
            }
        }
        Ok(())
    }

    /// Records the state after a batch: writes in flight, configuration, lease, joins.
    fn record(&self, joining: &[JoinProgress]) {
        let m = &self.metrics;
        m.queue_depth.set(self.events.len() as i64);
        m.pending_writes.set(self.replica.pending_writes() as i64);
        m.config_version.set(self.replica.config().version as i64);
        m.lease_held.set(i64::from(self.replica.leased(rt::now())));
        m.joining_regions.set(joining.len() as i64);
        m.transfer_objects
            .set(joining.iter().map(|j| j.objects as i64).sum());
        m.transfer_bytes
            .set(joining.iter().map(|j| j.bytes as i64).sum());
    }

    /// The newest configuration and lease, if they changed since last taken.
    fn control_inputs(&mut self) -> Vec<Event> {
        let mut inputs = Vec::new();
        let config = self.config.borrow_and_update().clone();
        if config.version > self.replica.config().version {
            inputs.push(Input::Config(Config::clone(&config)));
        }
        // Compared with the last one taken, not with `has_changed`: waiting on `changed()`
        // has already marked the newest value as seen.
        let lease = *self.lease.borrow_and_update();
        if lease != self.last_lease {
            self.last_lease = lease;
            inputs.extend(lease.map(Input::Lease));
        }
        inputs
    }

    /// Waits for something to do (or the next tick) and takes a batch, delivering the
    /// outputs of records that become durable meanwhile; `None` when every event sender is
    /// gone.
    async fn next_batch(
        &mut self,
        next_tick: rt::Instant,
        syncer: Option<&mut Syncer<Waiting>>,
    ) -> Result<Option<Vec<Event>>, StoreError> {
        if self.shutdown.as_ref().is_some_and(|s| *s.borrow()) {
            return Ok(None);
        }
        let mut batch = self.control_inputs();
        if batch.is_empty() && self.events.is_empty() {
            let wait = next_tick.saturating_duration_since(rt::now());
            tokio::select! {
                biased;
                ready = synced(syncer) => self.durable(ready?),
                _ = self.config.changed() => {}
                _ = self.lease.changed() => {}
                e = self.events.recv() => match e {
                    Some(e) => batch.push(e),
                    None => return Ok(None),
                },
                _ = rt::sleep(wait) => {}
                _ = asked_to_stop(self.shutdown.as_mut()) => return Ok(None),
            }
            let mut control = self.control_inputs();
            control.append(&mut batch);
            batch = control;
        }
        while batch.len() < ACTOR_BATCH {
            match self.events.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        Ok(Some(batch))
    }

    fn deliver(&mut self, outs: Vec<Output<Waiter>>) {
        for o in outs {
            self.deliver_one(o);
        }
    }

    fn deliver_one(&mut self, o: Output<Waiter>) {
        match o {
            Output::Reply(w, answer) | Output::Read(w, answer, _, _) => {
                let code = match &answer {
                    crate::protocol::ClientResponse::Reply(r) => r.code().symbol(),
                    crate::protocol::ClientResponse::Page { .. } => "HYPERDEX_CLIENT_SUCCESS",
                };
                let took = rt::now().saturating_duration_since(w.received);
                self.metrics.request(w.kind, code, took.as_secs_f64());
                w.tx.send(Envelope {
                    id: w.id,
                    msg: Message::FromDaemon(answer),
                });
            }
            Output::Send(to, msg) => {
                if let Some(server) = self.replica.config().server(to) {
                    let addr = server.addr.clone();
                    self.peers.send(to, &addr, msg);
                }
            }
            Output::FetchConfig => self.fetch.notify_one(),
            Output::TransferDone(region, since) => {
                // A report that does not fit is made again on the next tick.
                let _ = self.reports.try_send((region, since));
            }
            Output::Durable(o, _) => self.deliver_one(*o),
        }
    }
}

/// The span an input is handled in, so that one write can be followed through the logs of
/// every daemon of its chain (`RUST_LOG=hyperdex=debug`): a client request by its client id
/// and sequence number, a chain write by the same two (they travel with it), its region and
/// version.
fn span_of(input: &Event) -> tracing::Span {
    match input {
        Input::Op { waiter, req, .. } => tracing::debug_span!(
            "request",
            kind = waiter.kind,
            client = req.client,
            seq = req.seq
        ),
        Input::Search { req, .. } => tracing::debug_span!("search", space = %req.space),
        Input::Chain {
            from,
            msg: ChainMessage::Write(w),
        } => {
            let (client, seq) = w.dedupe.as_ref().map_or((0, 0), |d| (d.client, d.seq));
            tracing::debug_span!(
                "chain_write",
                from = from.0,
                region = %w.region,
                version = w.version,
                client,
                seq
            )
        }
        Input::Chain { from, msg } => tracing::debug_span!(
            "chain",
            from = from.0,
            msg = msg.name(),
            region = %msg.region()
        ),
        _ => tracing::Span::none(),
    }
}

/// Why a daemon stops when its actor ended as asked (see `DaemonOptions::shutdown`).
pub const ASKED_TO_STOP: &str = "asked to stop";

/// Runs the actor as a task of the daemon's runtime: a message it answers or passes on goes
/// to a task of the same runtime, often on the same thread, with no wake-up of another thread
/// (which a thread of its own took: a put's latency at one client was a quarter higher). What
/// may block for long runs in [`rt::blocking`]; the syncs are the sync thread's. Stops the
/// daemon when the actor ends: on a storage failure, or asked to (its store closed by then).
pub fn spawn(mut actor: Actor, stop: Arc<super::Stop>) {
    rt::spawn(async move {
        let ran = actor.run().await;
        // Closing the store waits for a checkpoint still running.
        rt::blocking(|| drop(actor));
        match ran {
            Ok(()) => {
                tracing::info!("data directory closed");
                stop.now(ASKED_TO_STOP.into());
            }
            Err(e) => {
                error!("storage failed, stopping: {e}");
                stop.now(format!("a storage failure: {e}"));
            }
        }
    });
}

/// Whether stepping `input` reads or writes only the few keys it names: a single-key
/// operation, a chain write or acknowledgement. Anything else (a search, a transfer, a tick, a
/// new configuration) may read much of the store and is stepped in [`rt::blocking`].
fn light(input: &Event) -> bool {
    match input {
        Input::Op { .. } => true,
        Input::Chain { msg, .. } => matches!(msg, ChainMessage::Write(_) | ChainMessage::Ack(_)),
        _ => false,
    }
}

/// Whether stepping `input` may change what reads find other than by writing the keys it
/// names (which forgets their cached objects): a new configuration (promotions after a
/// restart, regions left), a peer that came back, or a state transfer's message (a joiner
/// takes the writes its source holds). Client requests, chain writes, acknowledgements and
/// subspace messages (which commit writes only by storing them), searches, leases and ticks
/// do not.
fn clears_cache(input: &Event) -> bool {
    match input {
        Input::Op { .. } | Input::Search { .. } | Input::Lease(_) | Input::Tick => false,
        Input::Chain { msg, .. } => matches!(
            msg,
            ChainMessage::TransferData(_)
                | ChainMessage::TransferAck(_)
                | ChainMessage::TransferQuery(_)
        ),
        Input::Config(_) | Input::PeerUp(_) => true,
    }
}

/// Whether an output may leave before the sync of the batch that produced it: a chain write
/// going on down its chain (pipelining; see `Actor::run`), a read of an object that no write
/// of this batch or of a record in flight touched (what it read is durable, and the sync adds
/// nothing to it), or an acknowledgement or reply that vouches for pending writes whose
/// records are durable (`replica::durable`). Everything else vouches for state the sync makes
/// durable.
fn before_sync<W>(o: &Output<W>, store: &dyn Store) -> bool {
    match o {
        Output::Send(_, ChainMessage::Write(_)) => true,
        Output::Read(_, _, key, _) => !store.unsynced(Table::Objects, key),
        Output::Durable(_, kept) => kept.iter().all(|k| !store.unsynced(Table::Pending, k)),
        _ => false,
    }
}

/// The outputs waiting for the oldest record in flight, once it is durable (never, without
/// a record in flight).
async fn synced(syncer: Option<&mut Syncer<Waiting>>) -> Result<Waiting, StoreError> {
    match syncer {
        Some(s) => s.finished().await,
        None => std::future::pending().await,
    }
}

/// Resolves once `shutdown` says to stop (never, without one).
async fn asked_to_stop(shutdown: Option<&mut watch::Receiver<bool>>) {
    if let Some(rx) = shutdown {
        if rx.wait_for(|stop| *stop).await.is_ok() {
            return;
        }
    }
    // No receiver, or its sender is gone: nobody will ask.
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ClientResponse;
    use crate::storage::MemStore;
    use hyperdex_model::Reply;

    fn read(key: &[u8]) -> Output<u32> {
        Output::Read(
            7,
            ClientResponse::Reply(Reply::NotFound),
            key.to_vec(),
            None,
        )
    }

    #[test]
    fn a_read_leaves_before_the_sync_only_when_what_it_read_is_durable() {
        let mut store = MemStore::new();
        assert!(before_sync(&read(b"k"), &store), "nothing written");
        store.put(Table::Objects, b"k", Some(b"v".to_vec()));
        assert!(!before_sync(&read(b"k"), &store), "staged");
        assert!(before_sync(&read(b"j"), &store), "another key");
        let record = store.begin_sync().unwrap();
        assert!(record.is_some());
        assert!(
            !before_sync(&read(b"k"), &store),
            "its record is being written"
        );
        store.put(Table::Objects, b"k", Some(b"w".to_vec()));
        let second = store.begin_sync().unwrap();
        assert!(second.is_some());
        store.record_durable();
        assert!(
            !before_sync(&read(b"k"), &store),
            "a later record has it too"
        );
        store.record_durable();
        assert!(before_sync(&read(b"k"), &store), "both records durable");
        store.delete_prefix(Table::Objects, b"");
        assert!(!before_sync(&read(b"j"), &store), "under a prefix deleted");
        store.sync().unwrap();
        assert!(before_sync(&read(b"j"), &store));
        let reply = Output::<u32>::Reply(7, ClientResponse::Reply(Reply::NotFound));
        assert!(!before_sync(&reply, &store), "a write's reply always waits");
    }
}
