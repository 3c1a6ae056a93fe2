//! Asynchronous operations: [`Client::start`] returns a [`Deferred`] at once; the call runs
//! in a task of its own, and its reply waits in the client until [`Client::wait`] takes it,
//! or [`Client::loop_next`] returns whichever finished first. Finished replies are held in
//! the order they finished, one per started operation, until taken.

use std::time::Duration;

use hyperdex_model::{Operation, Reply, ReturnCode};
use tokio::sync::mpsc;

use super::{lock, Client};
use crate::rt;

/// A handle on an operation started with [`Client::start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Deferred(pub u64);

pub(super) struct Outstanding {
    pub(super) tx: mpsc::UnboundedSender<(u64, Reply)>,
    pub(super) rx: Option<mpsc::UnboundedReceiver<(u64, Reply)>>,
    /// Finished operations in the order they finished.
    pub(super) finished: Vec<(u64, Reply)>,
    pub(super) running: std::collections::BTreeSet<u64>,
    pub(super) next: u64,
}

impl Client {
    /// Starts an operation and returns at once.
    pub fn start(&self, op: Operation) -> Deferred {
        let (id, tx) = {
            let mut o = lock(&self.inner.outstanding);
            let id = o.next;
            o.next += 1;
            o.running.insert(id);
            (id, o.tx.clone())
        };
        let this = self.clone();
        rt::spawn(async move {
            let reply = this.call(op).await;
            let _ = tx.send((id, reply));
        });
        Deferred(id)
    }

    /// Moves finished operations from the channel into `finished`, waiting for at least one
    /// unless `want` is already there.
    async fn collect(&self, want: Option<u64>) -> bool {
        let mut rx = {
            let mut o = lock(&self.inner.outstanding);
            let have = match want {
                Some(w) => o.finished.iter().any(|(id, _)| *id == w),
                None => !o.finished.is_empty(),
            };
            if have {
                return true;
            }
            if o.running.is_empty() {
                return false;
            }
            match o.rx.take() {
                Some(rx) => rx,
                None => return false, // another task is collecting
            }
        };
        let got = rx.recv().await;
        let mut o = lock(&self.inner.outstanding);
        o.rx = Some(rx);
        if let Some((id, reply)) = got {
            o.running.remove(&id);
            o.finished.push((id, reply));
        }
        true
    }

    /// Waits for a started operation; NONEPENDING if `d` is unknown or already waited for.
    pub async fn wait(&self, d: Deferred) -> Reply {
        loop {
            {
                let mut o = lock(&self.inner.outstanding);
                if let Some(i) = o.finished.iter().position(|(id, _)| *id == d.0) {
                    return o.finished.remove(i).1;
                }
                if !o.running.contains(&d.0) {
                    return Reply::Error(
                        ReturnCode::NonePending,
                        format!("operation {} is not outstanding", d.0),
                    );
                }
            }
            if !self.collect(Some(d.0)).await {
                rt::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// Waits for whichever outstanding operation finishes next; `None` when none is.
    pub async fn loop_next(&self) -> Option<(Deferred, Reply)> {
        loop {
            {
                let mut o = lock(&self.inner.outstanding);
                if !o.finished.is_empty() {
                    let (id, r) = o.finished.remove(0);
                    return Some((Deferred(id), r));
                }
                if o.running.is_empty() {
                    return None;
                }
            }
            if !self.collect(None).await {
                rt::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}
