//! The daemon's listener: accepts connections from clients and peers and turns their frames
//! into inputs for the actor.
//!
//! A connection's reader waits while the actor's queue is full, which pushes back on the peer
//! over TCP. Messages a daemon does not handle (those meant for the coordinator) are answered
//! with GARBAGE and change nothing. An accept error (out of file descriptors, say) is logged
//! and retried after a pause; it never stops the daemon.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyperdex_model::ReturnCode;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::error::Error;
use crate::net::{serve, ReplyTx};
use crate::protocol::{ClientRequest, Envelope, Message};
use crate::rt;

use super::replica::Input;
use super::Event;

/// Accepts connections until the actor stops (`fatal`).
pub async fn accept_loop(
    listener: rt::TcpListener,
    events: mpsc::Sender<Event>,
    max_frame: usize,
    fatal: Arc<AtomicBool>,
) -> Result<(), Error> {
    loop {
        if fatal.load(Ordering::SeqCst) {
            return Err(Error::Config(
                "the daemon stopped after a storage failure".into(),
            ));
        }
        let accepted = match rt::timeout(Duration::from_millis(500), listener.accept()).await {
            Some(r) => r,
            None => continue,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!("cannot accept a connection: {e}; trying again shortly");
                rt::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let events = events.clone();
        rt::spawn(async move {
            let why = serve(stream, max_frame, |env: Envelope, tx: &ReplyTx| {
                let input = input_of(env, tx);
                let events = events.clone();
                async move {
                    if let Some(input) = input {
                        let _ = events.send(input).await;
                    }
                }
            })
            .await;
            debug!(%peer, "connection ended: {why}");
        });
    }
}

/// The actor's input for a frame, or `None` (after answering GARBAGE) for a message a daemon
/// does not handle.
fn input_of(env: Envelope, tx: &ReplyTx) -> Option<Event> {
    let waiter = (tx.clone(), env.id);
    match env.msg {
        Message::ToDaemon(ClientRequest::Op(req)) => Some(Input::Op { waiter, req }),
        Message::ToDaemon(ClientRequest::Search(req)) => Some(Input::Search { waiter, req }),
        Message::Chain(msg) => Some(Input::Chain(msg)),
        other => {
            tx.send(Envelope {
                id: env.id,
                msg: Message::Error {
                    code: ReturnCode::Garbage,
                    message: format!("a daemon does not handle {}", other.name()),
                },
            });
            None
        }
    }
}
