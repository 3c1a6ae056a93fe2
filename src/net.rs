//! Connections: a multiplexed request/reply client ([`RpcConn`]) and the server side of a
//! connection ([`serve`]), both speaking `protocol`'s frames over `rt`'s TCP.
//!
//! Each connection has one writer task fed by a bounded queue ([`CONNECTION_QUEUE`] frames),
//! so any number of tasks can send on it without locking, and one reader. A connection whose
//! peer sends garbage, an oversized frame or a bad handshake is closed; so is a server's
//! connection whose peer does not read its replies until the queue is full. Nothing else is
//! affected.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::limits::CONNECTION_QUEUE;
use crate::protocol::frame::{handshake, FrameError, FramedReader, FramedWriter};
use crate::protocol::{Envelope, Message};
use crate::rt;

/// Why a call got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("connection to {0} failed: {1}")]
    Connect(String, String),
    #[error("connection to {0} closed")]
    Closed(String),
    #[error("no reply from {0} within {1:?}")]
    Timeout(String, Duration),
}

type Waiters = Arc<Mutex<BTreeMap<u64, oneshot::Sender<Message>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A client connection on which requests are matched to replies by id.
pub struct RpcConn {
    addr: String,
    tx: mpsc::Sender<Envelope>,
    waiters: Waiters,
    next_id: AtomicU64,
    alive: Arc<AtomicBool>,
}

impl RpcConn {
    /// Connects and handshakes within `timeout`.
    pub async fn connect(
        addr: &str,
        max_frame: usize,
        timeout: Duration,
    ) -> Result<RpcConn, RpcError> {
        let fail = |e: String| RpcError::Connect(addr.to_string(), e);
        let mut stream = rt::connect(addr, timeout)
            .await
            .map_err(|e| fail(e.to_string()))?;
        rt::timeout(timeout, handshake(&mut stream))
            .await
            .ok_or_else(|| fail("handshake timed out".into()))?
            .map_err(|e| fail(e.to_string()))?;
        let (r, w) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::channel::<Envelope>(CONNECTION_QUEUE);
        let waiters: Waiters = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let alive_w = alive.clone();
        rt::spawn(async move {
            write_loop(w, &mut rx).await;
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
            if !self.send_envelope(Envelope { id, msg }).await {
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
    /// the connection took it.
    pub async fn send(&self, msg: Message) -> bool {
        self.send_envelope(Envelope { id: 0, msg }).await
    }

    async fn send_envelope(&self, env: Envelope) -> bool {
        self.is_alive() && self.tx.send(env).await.is_ok()
    }
}

/// Writes what arrives on `rx`, everything queued at once in one flush, until the channel
/// closes or the connection fails.
async fn write_loop<W: tokio::io::AsyncWrite + Unpin>(w: W, rx: &mut mpsc::Receiver<Envelope>) {
    let mut writer = FramedWriter::new(w);
    while let Some(env) = rx.recv().await {
        let mut batch = vec![env];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        if writer.write_all(&batch).await.is_err() {
            return;
        }
    }
}

/// Where a server writes replies for one connection. Never waits: when the peer has not read
/// [`CONNECTION_QUEUE`] replies, the connection is marked overflowed and closed.
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

/// Serves one accepted connection: handshake, then `handle(envelope, reply_tx)` for every
/// frame until the peer closes it or misbehaves. The next frame is read only once `handle`
/// has returned, so a handler that waits pushes back on the peer. Returns why it ended.
pub async fn serve<H, F>(stream: rt::TcpStream, max_frame: usize, mut handle: H) -> FrameError
where
    H: FnMut(Envelope, &ReplyTx) -> F,
    F: std::future::Future<Output = ()>,
{
    let mut stream = stream;
    let _ = stream.set_nodelay(true);
    match rt::timeout(Duration::from_secs(10), handshake(&mut stream)).await {
        Some(Ok(())) => {}
        Some(Err(e)) => return e,
        None => return FrameError::Closed,
    }
    let (r, w) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Envelope>(CONNECTION_QUEUE);
    rt::spawn(async move { write_loop(w, &mut rx).await });
    let replies = ReplyTx {
        tx,
        overflow: Arc::default(),
    };
    let mut reader = FramedReader::new(r, max_frame);
    loop {
        if replies.overflowed() {
            return FrameError::Overflow;
        }
        match reader.read().await {
            Ok(env) => handle(env, &replies).await,
            Err(e) => return e,
        }
    }
}
