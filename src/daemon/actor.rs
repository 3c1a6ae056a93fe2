//! The actor: the one task that owns a daemon's replica and store.
//!
//! It repeats: take a batch of inputs (the newest configuration and lease first, then up to
//! [`ACTOR_BATCH`] queued events), step the replica through each, **sync the store once**, and
//! only then deliver the outputs: replies to clients, chain messages to peers, reports to the
//! coordinator link. So every reply and acknowledgement leaves after the state it vouches for
//! is durable, and one fsync covers many writes (group commit). It ticks the replica every
//! `tick` so that lost messages are resent.
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
use crate::protocol::coordinator::JoinProgress;
use crate::protocol::{Envelope, Message};
use crate::rt;
use crate::storage::{Store, StoreError};

use super::peers::Peers;
use super::replica::{Input, Lease, Output, Replica};
use super::{Event, Waiter};

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
}

impl Actor {
    /// Runs until every event sender is gone, the daemon is asked to stop, or the store fails.
    pub async fn run(mut self) -> Result<(), StoreError> {
        let mut batches = 0u64;
        let mut next_tick = rt::now() + self.tick;
        loop {
            let Some(mut batch) = self.next_batch(next_tick).await else {
                return Ok(());
            };
            if rt::now() >= next_tick {
                batch.push(Input::Tick);
                next_tick = rt::now() + self.tick;
            }
            let mut outs = Vec::new();
            for input in batch {
                outs.extend(self.replica.step(self.store.as_mut(), rt::now(), input)?);
            }
            let joining = self.replica.joining();
            self.joining.send_if_modified(|j| {
                let changed = *j != joining;
                *j = joining;
                changed
            });
            batches += 1;
            // The planted bug syncs only every 50th batch, acknowledging staged writes.
            let skip_sync = planted(Bug::AckBeforeSync) && !batches.is_multiple_of(50);
            if planted(Bug::ReplyBeforeSync) {
                self.deliver(outs);
                rt::disk_pause().await;
                self.store.sync()?;
                continue;
            }
            // Staged, not yet durable: a crash here loses the batch, and nothing was sent.
            rt::disk_pause().await;
            if !skip_sync {
                self.store.sync()?;
            }
            // Durable, not yet sent: a crash here loses only the replies.
            rt::disk_pause().await;
            self.deliver(outs);
        }
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

    /// Waits for something to do (or the next tick) and takes a batch; `None` when every
    /// event sender is gone.
    async fn next_batch(&mut self, next_tick: rt::Instant) -> Option<Vec<Event>> {
        if self.shutdown.as_ref().is_some_and(|s| *s.borrow()) {
            return None;
        }
        let mut batch = self.control_inputs();
        if batch.is_empty() && self.events.is_empty() {
            let wait = next_tick.saturating_duration_since(rt::now());
            tokio::select! {
                biased;
                _ = self.config.changed() => {}
                _ = self.lease.changed() => {}
                e = self.events.recv() => match e {
                    Some(e) => batch.push(e),
                    None => return None,
                },
                _ = rt::sleep(wait) => {}
                _ = asked_to_stop(self.shutdown.as_mut()) => return None,
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
        Some(batch)
    }

    fn deliver(&mut self, outs: Vec<Output<Waiter>>) {
        for o in outs {
            match o {
                Output::Reply((tx, id), answer) => {
                    tx.send(Envelope {
                        id,
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
            }
        }
    }
}

/// Runs `actor` where it may block on its disk (its own thread in production); stops the
/// daemon when it ends: on a storage failure, or asked to (its store closed by then).
pub fn spawn(actor: Actor, stop: Arc<super::Stop>) {
    rt::spawn_dedicated("hyperdex-actor", async move {
        match actor.run().await {
            Ok(()) => {
                tracing::info!("data directory closed");
                stop.now("asked to stop".into());
            }
            Err(e) => {
                error!("storage failed, stopping: {e}");
                stop.now(format!("a storage failure: {e}"));
            }
        }
    });
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
