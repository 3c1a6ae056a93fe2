//! Sending the log's messages to the other coordinators.
//!
//! One task and one connection per peer, fed by a bounded queue: a message that finds the
//! queue full, or its peer unreachable, is dropped. Raft expects messages to be lost (it
//! resends what matters on its next heartbeat), and a slow or dead peer must never hold up
//! the coordinator's actor.

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

struct Peer {
    addr: String,
    tx: mpsc::Sender<Vec<u8>>,
}

/// The other coordinators, by their id in the log.
pub struct Peers {
    who: Credentials,
    max_frame: usize,
    peers: BTreeMap<u64, Peer>,
}

impl Peers {
    pub fn new(who: Credentials, max_frame: usize) -> Peers {
        Peers {
            who,
            max_frame,
            peers: BTreeMap::new(),
        }
    }

    /// Queues `bytes` (an encoded raft message) for the coordinator `to` at `addr`.
    pub fn send(&mut self, to: u64, addr: &str, bytes: Vec<u8>) {
        let stale = self.peers.get(&to).is_some_and(|p| p.addr != addr);
        if stale || !self.peers.contains_key(&to) {
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            rt::spawn(deliver(
                addr.to_string(),
                self.who.clone(),
                self.max_frame,
                rx,
            ));
            let addr = addr.to_string();
            self.peers.insert(to, Peer { addr, tx });
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
            if !matches!(
                c.send(Message::ToCoordinator(CoordRequest::Raft(bytes)))
                    .await,
                Ok(true)
            ) {
                conn = None;
            }
        }
    }
}
