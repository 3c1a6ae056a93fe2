//! Outgoing connections to other daemons: one link task per peer, each with a bounded queue.
//!
//! The actor hands every chain message to [`Peers::send`], which never waits: a message to a
//! peer whose queue is full ([`PEER_QUEUE`] messages or [`PEER_QUEUE_BYTES`] bytes) is
//! dropped, and so are the messages queued while a link is down. That is safe because the
//! replica resends what matters (pending writes on ticks, less often the longer they wait; a
//! transfer window left unacknowledged for a few ticks) and whenever a link comes up again
//! ([`Input::PeerUp`]), and receivers ignore what they already have.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::config::ServerId;
use crate::limits::{PEER_QUEUE, PEER_QUEUE_BYTES};
use crate::net::{Credentials, RpcConn};
use crate::protocol::frame::encode_frame;
use crate::protocol::{ChainMessage, Envelope, Message};
use crate::rt;
use crate::rt::knobs::LinkFault;

use super::replica::Input;
use super::{Event, RPC_TIMEOUT};

/// A message queued for a peer: its frame, encoded once, by the sender.
type Queued = Vec<u8>;

/// The sending end of a link: where it goes, its queue, and the bytes queued.
struct Link {
    addr: String,
    tx: mpsc::Sender<Queued>,
    bytes: Arc<AtomicUsize>,
}

/// The links to every peer this daemon has sent to.
pub struct Peers {
    links: BTreeMap<ServerId, Link>,
    events: mpsc::Sender<Event>,
    max_frame: usize,
    who: Credentials,
}

impl Peers {
    /// Links will run as tasks of the caller's runtime and report `PeerUp` to `events`.
    pub fn new(events: mpsc::Sender<Event>, max_frame: usize, who: Credentials) -> Peers {
        Peers {
            links: BTreeMap::new(),
            events,
            max_frame,
            who,
        }
    }

    /// Queues `msg` for peer `to` at `addr` (starting a link if there is none, or if the peer
    /// moved); drops it if the queue is full.
    pub fn send(&mut self, to: ServerId, addr: &str, msg: ChainMessage) {
        let stale = self
            .links
            .get(&to)
            .is_none_or(|l| l.addr != addr || l.tx.is_closed());
        if stale {
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            let bytes = Arc::new(AtomicUsize::new(0));
            let link = peer_link(
                to,
                addr.to_string(),
                (rx, bytes.clone()),
                self.events.clone(),
                (self.max_frame, self.who.clone()),
            );
            rt::spawn(link);
            let addr = addr.to_string();
            self.links.insert(to, Link { addr, tx, bytes });
        }
        let Some(link) = self.links.get(&to) else {
            return;
        };
        let name = msg.name();
        let env = Envelope {
            id: 0,
            msg: Message::Chain(msg),
        };
        let frame = match encode_frame(&env, self.max_frame) {
            Ok(frame) => frame,
            Err(e) => {
                warn!(peer = to.0, "a {name} was not sent: {e}");
                return;
            }
        };
        let size = frame.len();
        let queued = link.bytes.load(Ordering::Relaxed);
        if queued > 0 && queued + size > PEER_QUEUE_BYTES {
            debug!(
                peer = to.0,
                queued, size, "peer queue full (bytes): message dropped"
            );
            return;
        }
        link.bytes.fetch_add(size, Ordering::Relaxed);
        if link.tx.try_send(frame).is_err() {
            link.bytes.fetch_sub(size, Ordering::Relaxed);
            debug!(
                peer = to.0,
                "peer queue full: message dropped (resent on a later tick)"
            );
        }
    }
}

/// Keeps a connection to one peer, forwarding queued messages; reconnects on failure and
/// tells the replica each time a connection is up.
async fn peer_link(
    to: ServerId,
    addr: String,
    (mut rx, bytes): (mpsc::Receiver<Queued>, Arc<AtomicUsize>),
    events: mpsc::Sender<Event>,
    (max_frame, who): (usize, Credentials),
) {
    loop {
        match RpcConn::connect_as(&addr, max_frame, RPC_TIMEOUT, &who).await {
            Ok(conn) => {
                if events.send(Input::PeerUp(to)).await.is_err() {
                    return;
                }
                while let Some(frame) = rx.recv().await {
                    let size = frame.len();
                    let sent = match rt::knobs::link_fault() {
                        Some(LinkFault::Drop) => true,
                        Some(LinkFault::Reset) => false,
                        None => conn.send_frame(frame).await,
                    };
                    // Counted until the connection has taken it.
                    bytes.fetch_sub(size, Ordering::Relaxed);
                    if !sent {
                        break;
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
        while let Ok(frame) = rx.try_recv() {
            bytes.fetch_sub(frame.len(), Ordering::Relaxed);
        }
        rt::sleep(Duration::from_millis(50)).await;
    }
}
