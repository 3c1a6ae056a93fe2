//! Connections: a multiplexed request/reply client ([`RpcConn`]) and the server side of a
//! connection ([`serve`]), both speaking `protocol`'s frames over `rt`'s TCP.
//!
//! Each connection has one writer task fed by a bounded queue ([`CONNECTION_QUEUE`] frames),
//! so any number of tasks can send on it without locking, and one reader. A connection whose
//! peer sends garbage, an oversized frame or a bad handshake is closed; so is a server's
//! connection whose peer does not read its replies until the queue is full, stays silent
//! longer than the idle timeout, or starts a frame and does not finish it in time. A writer
//! whose peer does not take a slice of what it writes
//! ([`WRITE_SLICE`](crate::protocol::frame::WRITE_SLICE) bytes) within the frame timeout
//! gives up (a server's connection then stops reading at its next frame); a
//! connection whose owner drops it ends its writing side, so the peer closes too. A server
//! keeps at most [`Limits::max_connections`] connections and goes on after accept errors
//! ([`accept_loop`]). Nothing else is affected by one bad connection.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::config::ServerId;
use crate::limits::{
    CONNECTION_QUEUE, FRAME_TIMEOUT, HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS,
};
use crate::protocol::auth::{self, Acceptor, AuthMessage, Peer, Role, Secret};
use crate::protocol::frame::encode_frame;
use crate::protocol::frame::{handshake, FrameError, FramedReader, FramedWriter};
use crate::protocol::DEFAULT_MAX_FRAME;
use crate::protocol::{Envelope, Message};
use crate::rt;
use crate::tls::{Stream, TlsClient, TlsServer};

/// Why a call got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("connection to {0} failed: {1}")]
    Connect(String, String),
    #[error("connection to {0} closed")]
    Closed(String),
    #[error("no reply from {0} within {1:?}")]
    Timeout(String, Duration),
    #[error("the request cannot be sent: {0}")]
    Refused(String),
}

type Waiters = Arc<Mutex<BTreeMap<u64, oneshot::Sender<Message>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A client connection on which requests are matched to replies by id.
pub struct RpcConn {
    addr: String,
    max_frame: usize,
    tx: mpsc::Sender<Vec<u8>>,
    waiters: Waiters,
    next_id: AtomicU64,
    alive: Arc<AtomicBool>,
}

/// How a connection's opener introduces itself: its role, its server id (a daemon that has
/// one) and the cluster secret, if it knows it.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub role: Role,
    pub server: Option<ServerId>,
    pub secret: Option<Secret>,
    /// The authority to check the server's certificate against, when servers speak TLS.
    pub tls: Option<TlsClient>,
}

impl Credentials {
    /// An anonymous client, over TLS when `tls` is given.
    pub fn client(tls: Option<TlsClient>) -> Credentials {
        Credentials {
            role: Role::Client,
            server: None,
            secret: None,
            tls,
        }
    }
}

impl RpcConn {
    /// Connects, then introduces itself as `who` (see `protocol::auth`); a client's
    /// connection needs no introduction.
    pub async fn connect_as(
        addr: &str,
        max_frame: usize,
        timeout: Duration,
        who: &Credentials,
    ) -> Result<RpcConn, RpcError> {
        let conn = RpcConn::open(addr, max_frame, timeout, who.tls.as_ref()).await?;
        if who.role != Role::Client {
            conn.introduce(who, timeout).await?;
        }
        Ok(conn)
    }

    async fn introduce(&self, who: &Credentials, timeout: Duration) -> Result<(), RpcError> {
        let refused = |why: String| RpcError::Connect(self.addr.clone(), why);
        let nonce = auth::nonce();
        let hello = AuthMessage::Hello {
            role: who.role,
            server: who.server,
            nonce,
        };
        let (theirs, their_proof) = match self.call(Message::Auth(hello), timeout).await? {
            Message::Auth(AuthMessage::Challenge { nonce, proof }) => (nonce, proof),
            Message::Error { message, .. } => return Err(refused(message)),
            other => return Err(refused(format!("unexpected {}", other.name()))),
        };
        let claim = (who.role, who.server);
        let proof = auth::answer(
            who.secret.as_ref(),
            claim,
            &nonce,
            (&theirs, their_proof.as_ref()),
        )
        .map_err(refused)?;
        match self
            .call(Message::Auth(AuthMessage::Prove { proof }), timeout)
            .await?
        {
            Message::Auth(AuthMessage::Welcome) => Ok(()),
            Message::Error { message, .. } => Err(refused(message)),
            other => Err(refused(format!("unexpected {}", other.name()))),
        }
    }

    /// Connects without TLS and handshakes within `timeout`, as an anonymous client.
    pub async fn connect(
        addr: &str,
        max_frame: usize,
        timeout: Duration,
    ) -> Result<RpcConn, RpcError> {
        RpcConn::open(addr, max_frame, timeout, None).await
    }

    async fn open(
        addr: &str,
        max_frame: usize,
        timeout: Duration,
        tls: Option<&TlsClient>,
    ) -> Result<RpcConn, RpcError> {
        let fail = |e: String| RpcError::Connect(addr.to_string(), e);
        let tcp = rt::connect(addr, timeout)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut stream: Stream = match tls {
            None => Box::new(tcp),
            Some(t) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                rt::timeout(timeout, t.connect(host, tcp))
                    .await
                    .ok_or_else(|| fail("the TLS handshake timed out".into()))?
                    .map_err(|e| fail(format!("TLS: {e}")))?
            }
        };
        rt::timeout(timeout, handshake(&mut stream))
            .await
            .ok_or_else(|| fail("handshake timed out".into()))?
            .map_err(|e| fail(e.to_string()))?;
        let (r, w) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CONNECTION_QUEUE);
        let waiters: Waiters = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let alive_w = alive.clone();
        rt::spawn(async move {
            let _ = write_loop(w, &mut rx, Some, FRAME_TIMEOUT).await;
            alive_w.store(false, Ordering::SeqCst);
        });
        let (waiters_r, alive_r) = (waiters.clone(), alive.clone());
        rt::spawn(async move {
            let mut reader = FramedReader::new(r, max_frame);
            while let Ok(env) = reader.read().await {
                if let Some(w) = lock(&waiters_r).remove(&env.id) {
                    let _ = w.send(env.msg);
                }
            }
            alive_r.store(false, Ordering::SeqCst);
            // Dropping the senders wakes every caller with "closed".
            lock(&waiters_r).clear();
        });
        Ok(RpcConn {
            addr: addr.to_string(),
            max_frame,
            tx,
            waiters,
            next_id: AtomicU64::new(1),
            alive,
        })
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Sends `msg` and waits up to `timeout` for the reply.
    pub async fn call(&self, msg: Message, timeout: Duration) -> Result<Message, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).insert(id, tx);
        let attempt = async {
            if !self.send_envelope(Envelope { id, msg }).await? {
                return Err(RpcError::Closed(self.addr.clone()));
            }
            rx.await.map_err(|_| RpcError::Closed(self.addr.clone()))
        };
        match rt::timeout(timeout, attempt).await {
            Some(Ok(m)) => Ok(m),
            Some(Err(e)) => {
                lock(&self.waiters).remove(&id);
                Err(e)
            }
            None => {
                lock(&self.waiters).remove(&id);
                Err(RpcError::Timeout(self.addr.clone(), timeout))
            }
        }
    }

    /// Sends a one-way message (id 0), waiting while the connection's queue is full; whether
    /// the connection took it (`Err` when the message cannot be encoded).
    pub async fn send(&self, msg: Message) -> Result<bool, RpcError> {
        self.send_envelope(Envelope { id: 0, msg }).await
    }

    /// Encodes in the caller's task, so an oversized or malformed request is the caller's
    /// error, never the connection's.
    async fn send_envelope(&self, env: Envelope) -> Result<bool, RpcError> {
        let frame =
            encode_frame(&env, self.max_frame).map_err(|e| RpcError::Refused(e.to_string()))?;
        Ok(self.send_frame(frame).await)
    }

    /// Sends a frame already encoded (by [`encode_frame`], for this connection's frame cap),
    /// waiting while the connection's queue is full; whether the connection took it.
    pub async fn send_frame(&self, frame: Vec<u8>) -> bool {
        self.is_alive() && self.tx.send(frame).await.is_ok()
    }
}

/// The most frames a writer keeps room for between batches.
const BATCH_KEPT: usize = 64;

/// Writes what arrives on `rx`, everything queued at once in one flush, until the channel
/// closes (then it ends the writing side: `Ok`), the connection fails, or the peer does not
/// take a slice of [`WRITE_SLICE`](crate::protocol::frame::WRITE_SLICE) bytes within
/// `patience` (`Err`, `TimedOut` for the latter); `encode` turns an item into its frame.
async fn write_loop<W, T>(
    w: W,
    rx: &mut mpsc::Receiver<T>,
    encode: impl Fn(T) -> Option<Vec<u8>>,
    patience: Duration,
) -> std::io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut writer = FramedWriter::new(w);
    let mut batch: Vec<Vec<u8>> = Vec::new();
    while let Some(item) = rx.recv().await {
        batch.extend(encode(item));
        while let Ok(more) = rx.try_recv() {
            batch.extend(encode(more));
        }
        writer.write_all(&batch, patience).await?;
        batch.clear();
        // An idle connection keeps little: not the room a burst of replies took.
        if batch.capacity() > BATCH_KEPT {
            batch = Vec::new();
        }
    }
    // Nothing will be sent any more (the connection's owner dropped it): the peer is told, so
    // that it closes its side and the reading half here sees the end too, rather than both
    // ends holding the connection open until an idle timeout.
    let _ = writer.shutdown(patience).await;
    Ok(())
}

/// A server's reply as a frame; a reply that cannot be encoded (too large for a frame, say)
/// becomes an error the client can read.
fn reply_frame(env: Envelope, max: usize) -> Option<Vec<u8>> {
    let id = env.id;
    encode_frame(&env, max)
        .or_else(|e| {
            let msg = Message::Error {
                code: hyperdex_model::ReturnCode::Internal,
                message: format!("the server cannot send its reply: {e}"),
            };
            encode_frame(&Envelope { id, msg }, max)
        })
        .ok()
}

/// What a server allows one connection, and how many connections it keeps.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_frame: usize,
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub frame_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: DEFAULT_MAX_FRAME,
            max_connections: MAX_CONNECTIONS,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            frame_timeout: FRAME_TIMEOUT,
        }
    }
}

/// Accepts connections on `listener` until `stop()` says so, running `handle` for each on a
/// task of its own (after the TLS handshake, when `tls` is given): at most
/// `limits.max_connections` at once (one more is closed at once), and an accept error (out
/// of file descriptors, say) is logged and retried after a pause, never the end of the
/// server.
pub async fn accept_loop<H, F>(
    listener: rt::TcpListener,
    limits: Limits,
    tls: Option<TlsServer>,
    stop: impl Fn() -> bool,
    handle: H,
) where
    H: Fn(Stream, std::net::SocketAddr) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let handle = Arc::new(handle);
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut refused = 0u64;
    while !stop() {
        let accepted = match rt::timeout(Duration::from_millis(500), listener.accept()).await {
            Some(r) => r,
            None => continue,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("cannot accept a connection: {e}; trying again shortly");
                rt::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    %peer, refused,
                    "{} connections are open: closing new ones",
                    limits.max_connections
                );
            }
            drop(stream);
            continue;
        };
        let (handle, tls) = (handle.clone(), tls.clone());
        rt::spawn(async move {
            let _ = stream.set_nodelay(true);
            let stream: Stream = match tls {
                None => Box::new(stream),
                Some(t) => match rt::timeout(limits.handshake_timeout, t.accept(stream)).await {
                    Some(Ok(s)) => s,
                    Some(Err(e)) => return tracing::debug!(%peer, "TLS handshake failed: {e}"),
                    None => return tracing::debug!(%peer, "TLS handshake timed out"),
                },
            };
            handle(stream, peer).await;
            drop(permit);
        });
    }
}

/// Where a server writes replies for one connection. Never waits: when the peer has not read
/// [`CONNECTION_QUEUE`] replies, or the writer task gave up on it, the connection is marked
/// overflowed and closed. Replies are encoded by the connection's writer task, not by the
/// sender.
#[derive(Clone, Debug)]
pub struct ReplyTx {
    tx: mpsc::Sender<Envelope>,
    overflow: Arc<AtomicBool>,
}

impl ReplyTx {
    /// Queues a reply; `false` when the connection is gone or overflowed.
    pub fn send(&self, env: Envelope) -> bool {
        match self.tx.try_send(env) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.store(true, Ordering::SeqCst);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn overflowed(&self) -> bool {
        self.overflow.load(Ordering::SeqCst)
    }
}

/// Serves one accepted connection: handshake, the opener's introduction if it sends one
/// (checked against `secret`, see `protocol::auth`), then `handle(envelope, reply_tx, peer)`
/// for every frame until the peer closes it or misbehaves (see [`Limits`]). The next frame is
/// read only once `handle` has returned, so a handler that waits pushes back on the peer.
/// The handler gets the peer and gives it back (a daemon that registers has the connection
/// bound to its id). Returns why it ended.
pub async fn serve<H, F>(
    stream: Stream,
    limits: Limits,
    secret: Option<&Secret>,
    mut handle: H,
) -> FrameError
where
    H: FnMut(Envelope, &ReplyTx, Peer) -> F,
    F: std::future::Future<Output = Peer>,
{
    let mut stream = stream;
    match rt::timeout(limits.handshake_timeout, handshake(&mut stream)).await {
        Some(Ok(())) => {}
        Some(Err(e)) => return e,
        None => return FrameError::Idle(limits.handshake_timeout),
    }
    let (r, w) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Envelope>(CONNECTION_QUEUE);
    let max = limits.max_frame;
    let patience = limits.frame_timeout;
    let overflow = Arc::new(AtomicBool::new(false));
    let stalled = overflow.clone();
    rt::spawn(async move {
        let ended = write_loop(w, &mut rx, |env| reply_frame(env, max), patience).await;
        if ended.is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut) {
            // The peer does not read: the reading side stops at its next frame (the writing
            // half is dropped here; the connection closes once both are).
            stalled.store(true, Ordering::SeqCst);
        }
    });
    let replies = ReplyTx { tx, overflow };
    let mut reader = FramedReader::new(r, limits.max_frame);
    let mut peer = Peer::ANONYMOUS;
    let mut first = true;
    loop {
        if replies.overflowed() {
            return FrameError::Overflow;
        }
        let env = match next_frame(&mut reader, &limits).await {
            Ok(env) => env,
            Err(e) => return e,
        };
        // The writer may have given up on the peer while this waited for the frame.
        if replies.overflowed() {
            return FrameError::Overflow;
        }
        match (first, env.msg) {
            (
                true,
                Message::Auth(AuthMessage::Hello {
                    role,
                    server,
                    nonce,
                }),
            ) => {
                let hello = (role, server, nonce);
                match accept_introduction(&mut reader, &limits, &replies, secret, env.id, hello)
                    .await
                {
                    Ok(p) => peer = p,
                    Err(e) => return e,
                }
            }
            (_, Message::Auth(m)) => {
                refuse(
                    &replies,
                    env.id,
                    format!("unexpected {} after the start", m.name()),
                );
                return FrameError::Decode("a handshake message out of place".into());
            }
            (_, msg) => peer = handle(Envelope { id: env.id, msg }, &replies, peer).await,
        }
        first = false;
    }
}

/// The next frame, within the idle and frame timeouts.
async fn next_frame<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut FramedReader<R>,
    limits: &Limits,
) -> Result<Envelope, FrameError> {
    let len = match rt::timeout(limits.idle_timeout, reader.read_len()).await {
        Some(r) => r?,
        None => return Err(FrameError::Idle(limits.idle_timeout)),
    };
    match rt::timeout(limits.frame_timeout, reader.read_body(len)).await {
        Some(r) => r,
        None => Err(FrameError::Stalled(limits.frame_timeout)),
    }
}

fn refuse(replies: &ReplyTx, id: u64, message: String) {
    replies.send(Envelope {
        id,
        msg: Message::Error {
            code: hyperdex_model::ReturnCode::Unauthorized,
            message,
        },
    });
}

/// The acceptor's side of an introduction: challenge, check the proof, welcome.
async fn accept_introduction<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut FramedReader<R>,
    limits: &Limits,
    replies: &ReplyTx,
    secret: Option<&Secret>,
    id: u64,
    (role, server, nonce): (Role, Option<ServerId>, auth::Nonce),
) -> Result<Peer, FrameError> {
    let (acceptor, challenge) = Acceptor::start(secret, role, server, nonce, auth::nonce());
    replies.send(Envelope {
        id,
        msg: Message::Auth(challenge),
    });
    let env = next_frame(reader, limits).await?;
    let Message::Auth(AuthMessage::Prove { proof }) = env.msg else {
        refuse(
            replies,
            env.id,
            "expected the proof of the cluster secret".into(),
        );
        return Err(FrameError::Decode("no proof after a challenge".into()));
    };
    match acceptor.finish(proof) {
        Ok(peer) => {
            replies.send(Envelope {
                id: env.id,
                msg: Message::Auth(AuthMessage::Welcome),
            });
            Ok(peer)
        }
        Err(why) => {
            tracing::warn!(?role, ?server, "refused a connection: {why}");
            refuse(replies, env.id, why);
            Err(FrameError::Decode("the introduction was refused".into()))
        }
    }
}
