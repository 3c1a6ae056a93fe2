//! The daemon's listener: accepts connections from clients and peers and turns their frames
//! into inputs for the actor.
//!
//! A connection's reader waits while the actor's queue is full, which pushes back on the peer
//! over TCP. Messages a daemon does not handle (those meant for the coordinator) are answered
//! with GARBAGE and change nothing. Connection limits and accept errors are `net`'s.

use std::sync::Arc;

use hyperdex_model::ReturnCode;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::bugs::{planted, Bug};
use crate::config::ServerId;
use crate::error::Error;
use crate::net::{accept_loop, serve, Limits, ReplyTx};
use crate::protocol::auth::{Peer, Role, Secret};
use crate::protocol::{ClientRequest, Envelope, Message};
use crate::rt;
use crate::tls::TlsServer;

use super::replica::Input;
use super::{Event, Stop, Waiter};

/// Accepts connections until a task of the daemon stops it (`stop`).
pub async fn run(
    listener: rt::TcpListener,
    events: mpsc::Sender<Event>,
    limits: Limits,
    (secret, tls): (Option<Secret>, Option<TlsServer>),
    stop: Arc<Stop>,
    connections: Gauge,
) -> Result<(), Error> {
    let stopped = || stop.why().is_some();
    let secret = secret.map(Arc::new);
    accept_loop(listener, limits, tls, stopped, move |stream, peer| {
        let events = events.clone();
        let secret = secret.clone();
        let open = connections.clone();
        async move {
            open.inc();
            let why = serve(
                stream,
                limits,
                secret.as_deref(),
                |env: Envelope, tx: &ReplyTx, who: Peer| {
                    let input = input_of(env, tx, &who);
                    let events = events.clone();
                    async move {
                        if let Some(input) = input {
                            let _ = events.send(input).await;
                        }
                        who
                    }
                },
            )
            .await;
            open.dec();
            debug!(%peer, "connection ended: {why}");
        }
    })
    .await;
    Err(Error::Config(format!(
        "the daemon stopped: {}",
        stop.why().unwrap_or("no reason given")
    )))
}

/// The actor's input for a frame, or `None` (after answering GARBAGE) for a message a daemon
/// does not handle. Chain messages are taken only from daemons that introduced themselves
/// with their id (and proved the cluster secret, if there is one); whether the sender is the
/// member the configuration names for that message is the replica's to check.
fn input_of(env: Envelope, tx: &ReplyTx, who: &Peer) -> Option<Event> {
    let waiter = |kind| Waiter {
        tx: tx.clone(),
        id: env.id,
        kind,
        received: rt::now(),
    };
    match env.msg {
        Message::ToDaemon(ClientRequest::Op(req)) => Some(Input::Op {
            waiter: waiter(crate::metrics::kind(&req.op)),
            req,
            unix: rt::unix_now(),
        }),
        Message::ToDaemon(ClientRequest::Search(req)) => Some(Input::Search {
            waiter: waiter(if req.count_only { "count" } else { "search" }),
            req,
        }),
        Message::Chain(msg) => match (who.role, who.server) {
            (Role::Server, Some(from)) => Some(Input::Chain { from, msg }),
            _ if planted(Bug::TrustAnyPeer) => Some(Input::Chain {
                from: who.server.unwrap_or(ServerId(0)),
                msg,
            }),
            _ => {
                crate::probe!("daemon.chain_from_stranger_dropped");
                warn!(
                    ?who,
                    "a {} from a connection that is not a daemon's: dropped",
                    msg.name()
                );
                None
            }
        },
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
