//! Sending the log's messages to the other coordinators.
//!
//! One task and one connection per peer, fed by a bounded queue: a message that finds the
//! queue full, or its peer unreachable, is dropped. Raft expects messages to be lost (it
//! resends what matters on its next heartbeat), and a slow or dead peer must never hold up
//! the coordinator's actor.
//!
//! A connection can die without an error (a partition that drops everything, a peer that
//! restarted behind a NAT): a send that takes longer than [`SEND_TIMEOUT`] drops it, and so
//! does hearing nothing from a peer for [`SILENCE`] while sending to it: the link starts over
//! on a new connection.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::net::{Credentials, RpcConn};
use crate::protocol::{CoordRequest, Message};
use crate::rt;

/// Messages waiting for one peer.
const PEER_QUEUE: usize = 256;
/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one message may take to be taken by the connection.
const SEND_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a peer that is sent to may stay silent before its link starts over.
const SILENCE: Duration = Duration::from_secs(1);

struct Peer {
    addr: String,
    tx: mpsc::Sender<Vec<u8>>,
    /// When the link was (re)started.
    since: rt::Instant,
}

/// The other coordinators, by their id in the log.
pub struct Peers {
    who: Credentials,
    max_frame: usize,
    peers: BTreeMap<u64, Peer>,
    /// When each peer was last heard from.
    heard: BTreeMap<u64, rt::Instant>,
}

impl Peers {
    pub fn new(who: Credentials, max_frame: usize) -> Peers {
        Peers {
            who,
            max_frame,
            peers: BTreeMap::new(),
            heard: BTreeMap::new(),
        }
    }

    /// A message from `from` arrived.
    pub fn heard(&mut self, from: u64) {
        self.heard.insert(from, rt::now());
    }

    /// Queues `bytes` (an encoded raft message) for the coordinator `to` at `addr`.
    pub fn send(&mut self, to: u64, addr: &str, bytes: Vec<u8>) {
        let now = rt::now();
        let silent = |since: rt::Instant| {
            let last = self.heard.get(&to).copied().unwrap_or(since).max(since);
            now.duration_since(last) > SILENCE
        };
        let restart = match self.peers.get(&to) {
            None => true,
            Some(p) => p.addr != addr || silent(p.since),
        };
        if restart {
            if self.peers.contains_key(&to) {
                tracing::debug!(
                    peer = to,
                    "nothing heard from a coordinator: connecting again"
                );
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            rt::spawn(deliver(
                addr.to_string(),
                self.who.clone(),
                self.max_frame,
                rx,
            ));
            let addr = addr.to_string();
            self.peers.insert(
                to,
                Peer {
                    addr,
                    tx,
                    since: now,
                },
            );
        }
        if let Some(p) = self.peers.get(&to) {
            if p.tx.try_send(bytes).is_err() {
                tracing::debug!(
                    peer = to,
                    "dropped a message for a coordinator that is behind"
                );
            }
        }
    }

    /// Stops sending to coordinators no longer in the log.
    pub fn retain(&mut self, members: impl Fn(u64) -> bool) {
        self.peers.retain(|id, _| members(*id));
    }
}

/// Sends what arrives on `rx` to `addr`, connecting again as needed, until the queue closes.
async fn deliver(
    addr: String,
    who: Credentials,
    max_frame: usize,
    mut rx: mpsc::Receiver<Vec<u8>>,
) {
    let mut conn: Option<RpcConn> = None;
    while let Some(bytes) = rx.recv().await {
        if conn.as_ref().is_none_or(|c| !c.is_alive()) {
            conn = match RpcConn::connect_as(&addr, max_frame, CONNECT_TIMEOUT, &who).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::debug!("cannot reach coordinator {addr}: {e}");
                    // What queued while connecting is out of date: raft sends afresh.
                    while rx.try_recv().is_ok() {}
                    continue;
                }
            };
        }
        if let Some(c) = &conn {
            let message = Message::ToCoordinator(CoordRequest::Raft(bytes));
            let sent = rt::timeout(SEND_TIMEOUT, c.send(message)).await;
            if !matches!(sent, Some(Ok(true))) {
                conn = None;
            }
        }
    }
}
