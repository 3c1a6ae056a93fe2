//! The daemon's listener: accepts connections from clients and peers and turns their frames
//! into inputs for the actor.
//!
//! A connection's reader waits while the actor's queue is full, which pushes back on the peer
//! over TCP. Messages a daemon does not handle (those meant for the coordinator) are answered
//! with GARBAGE and change nothing. Connection limits and accept errors are `net`'s.

use std::sync::Arc;

use hyperdex_model::ReturnCode;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::bugs::{planted, Bug};
use crate::config::ServerId;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::net::{accept_loop, serve, Limits, ReplyTx};
use crate::protocol::auth::{Peer, Role, Secret};
use crate::protocol::{ClientRequest, ClientResponse, Envelope, Message};
use crate::rt;
use crate::tls::TlsServer;

use super::read_cache::ReadCache;
use super::replica::Input;
use super::{Event, Stop, Waiter};

/// Accepts connections until a task of the daemon stops it (`stop`).
pub async fn run(
    listener: rt::TcpListener,
    (events, cache): (mpsc::Sender<Event>, Arc<ReadCache>),
    limits: Limits,
    (secret, tls): (Option<Secret>, Option<TlsServer>),
    stop: Arc<Stop>,
    metrics: Arc<Metrics>,
) -> Result<(), Error> {
    let stopped = || stop.why().is_some();
    let secret = secret.map(Arc::new);
    accept_loop(listener, limits, tls, stopped, move |stream, peer| {
        let events = events.clone();
        let cache = cache.clone();
        let metrics = metrics.clone();
        let secret = secret.clone();
        let open = metrics.connections.clone();
        async move {
            open.inc();
            let why = serve(
                stream,
                limits,
                secret.as_deref(),
                |env: Envelope, tx: &ReplyTx, who: Peer| {
                    let input = match cached(&cache, env, tx, &metrics) {
                        Some(env) => input_of(env, tx, &who),
                        None => None,
                    };
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

/// Answers a read from the read cache when its rule allows (see `read_cache`); otherwise
/// gives the frame back for the actor.
fn cached(cache: &ReadCache, env: Envelope, tx: &ReplyTx, metrics: &Metrics) -> Option<Envelope> {
    let Message::ToDaemon(ClientRequest::Op(req)) = &env.msg else {
        return Some(env);
    };
    let received = rt::now();
    let Some(answer) = cache.answer(req, received) else {
        return Some(env);
    };
    let code = match &answer {
        ClientResponse::Reply(r) => r.code().symbol(),
        ClientResponse::Page { .. } => "HYPERDEX_CLIENT_SUCCESS",
    };
    let took = rt::now().saturating_duration_since(received);
    metrics.request(crate::metrics::kind(&req.op), code, took.as_secs_f64());
    tx.send(Envelope {
        id: env.id,
        msg: Message::FromDaemon(answer),
    });
    None
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
