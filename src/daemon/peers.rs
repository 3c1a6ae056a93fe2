//! Outgoing connections to other daemons: one link task per peer, each with a bounded queue.
//!
//! The actor hands every chain message to [`Peers::send`], which never waits: a message to a
//! peer whose queue is full ([`PEER_QUEUE`]) is dropped, and so are the messages queued while
//! a link is down. That is safe because the replica resends what matters (pending writes,
//! the current transfer window) on every tick and whenever a link comes up again
//! ([`Input::PeerUp`]), and receivers ignore what they already have.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::config::ServerId;
use crate::limits::PEER_QUEUE;
use crate::net::{Credentials, RpcConn};
use crate::protocol::{ChainMessage, Message};
use crate::rt;
use crate::rt::knobs::LinkFault;

use super::replica::Input;
use super::{Event, RPC_TIMEOUT};

/// The links to every peer this daemon has sent to.
pub struct Peers {
    links: BTreeMap<ServerId, (String, mpsc::Sender<ChainMessage>)>,
    events: mpsc::Sender<Event>,
    max_frame: usize,
    who: Credentials,
    spawner: rt::Spawner,
}

impl Peers {
    /// Links will run on the runtime `spawner` belongs to and report `PeerUp` to `events`.
    pub fn new(
        events: mpsc::Sender<Event>,
        max_frame: usize,
        who: Credentials,
        spawner: rt::Spawner,
    ) -> Peers {
        Peers {
            links: BTreeMap::new(),
            events,
            max_frame,
            who,
            spawner,
        }
    }

    /// Queues `msg` for peer `to` at `addr` (starting a link if there is none, or if the peer
    /// moved); drops it if the queue is full.
    pub fn send(&mut self, to: ServerId, addr: &str, msg: ChainMessage) {
        let stale = self
            .links
            .get(&to)
            .is_none_or(|(a, tx)| a != addr || tx.is_closed());
        if stale {
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            let link = peer_link(
                to,
                addr.to_string(),
                rx,
                self.events.clone(),
                (self.max_frame, self.who.clone()),
            );
            self.spawner.spawn(link);
            self.links.insert(to, (addr.to_string(), tx));
        }
        if let Some((_, tx)) = self.links.get(&to) {
            if tx.try_send(msg).is_err() {
                debug!(
                    peer = to.0,
                    "peer queue full: message dropped (resent on the next tick)"
                );
            }
        }
    }
}

/// Keeps a connection to one peer, forwarding queued messages; reconnects on failure and
/// tells the replica each time a connection is up.
async fn peer_link(
    to: ServerId,
    addr: String,
    mut rx: mpsc::Receiver<ChainMessage>,
    events: mpsc::Sender<Event>,
    (max_frame, who): (usize, Credentials),
) {
    loop {
        match RpcConn::connect_as(&addr, max_frame, RPC_TIMEOUT, &who).await {
            Ok(conn) => {
                if events.send(Input::PeerUp(to)).await.is_err() {
                    return;
                }
                while let Some(msg) = rx.recv().await {
                    match rt::knobs::link_fault() {
                        Some(LinkFault::Drop) => continue,
                        Some(LinkFault::Reset) => break,
                        None => {}
                    }
                    match conn.send(Message::Chain(msg)).await {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => warn!(peer = to.0, "a chain message was not sent: {e}"),
                    }
                }
                if rx.is_closed() {
                    return;
                }
            }
            Err(e) => debug!(peer = to.0, "cannot reach peer: {e}"),
        }
        // Messages queued while disconnected are dropped: the replica resends what matters
        // when the link is up again.
        while rx.try_recv().is_ok() {}
        rt::sleep(Duration::from_millis(50)).await;
    }
}
