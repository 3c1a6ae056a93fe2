//! Connections: a multiplexed request/reply client ([`RpcConn`]) and the server side of a
//! connection ([`serve`]), both speaking `protocol`'s frames over `rt`'s TCP.
//!
//! Each connection has one writer task fed by a channel, so any number of tasks can send on it
//! without locking, and one reader. A connection whose peer sends garbage, an oversized frame
//! or a bad handshake is closed; nothing else is affected.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

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
    tx: mpsc::UnboundedSender<Envelope>,
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
        let (tx, mut rx) = mpsc::unbounded_channel::<Envelope>();
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
        if !self.is_alive() || self.tx.send(Envelope { id, msg }).is_err() {
            lock(&self.waiters).remove(&id);
            return Err(RpcError::Closed(self.addr.clone()));
        }
        match rt::timeout(timeout, rx).await {
            Some(Ok(m)) => Ok(m),
            Some(Err(_)) => Err(RpcError::Closed(self.addr.clone())),
            None => {
                lock(&self.waiters).remove(&id);
                Err(RpcError::Timeout(self.addr.clone(), timeout))
            }
        }
    }

    /// Sends a one-way message (id 0).
    pub fn send(&self, msg: Message) -> bool {
        self.is_alive() && self.tx.send(Envelope { id: 0, msg }).is_ok()
    }
}

/// Writes what arrives on `rx`, everything queued at once in one flush, until the channel
/// closes or the connection fails.
async fn write_loop<W: tokio::io::AsyncWrite + Unpin>(
    w: W,
    rx: &mut mpsc::UnboundedReceiver<Envelope>,
) {
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

/// Where a server writes replies for one connection.
pub type ReplyTx = mpsc::UnboundedSender<Envelope>;

/// Serves one accepted connection: handshake, then `handle(envelope, reply_tx)` for every
/// frame until the peer closes it or misbehaves. Returns why it ended.
pub async fn serve<H>(stream: rt::TcpStream, max_frame: usize, mut handle: H) -> FrameError
where
    H: FnMut(Envelope, &ReplyTx),
{
    let mut stream = stream;
    let _ = stream.set_nodelay(true);
    match rt::timeout(Duration::from_secs(10), handshake(&mut stream)).await {
        Some(Ok(())) => {}
        Some(Err(e)) => return e,
        None => return FrameError::Closed,
    }
    let (r, w) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<Envelope>();
    rt::spawn(async move { write_loop(w, &mut rx).await });
    let mut reader = FramedReader::new(r, max_frame);
    loop {
        match reader.read().await {
            Ok(env) => handle(env, &tx),
            Err(e) => return e,
        }
    }
}
