//! The asynchronous Rust client.
//!
//! [`Client::connect`] fetches the configuration from the coordinator and caches it. Each
//! operation is validated against the space's schema before anything is sent (UNKNOWNATTR,
//! WRONGTYPE, DONTUSEKEY come back at once), then sent to the head of its key's region.
//!
//! ## The retry contract
//! Every write carries this client's random id and a sequence number. When a request meets a
//! changed configuration (RECONFIGURE), an unavailable server (OFFLINE), a broken connection
//! or no reply within [`ClientOptions::attempt_timeout`], the client fetches the current
//! configuration and resends *the same* request (same id and sequence number) to the current
//! head, until [`ClientOptions::timeout`] has passed since the call began. The head answers a
//! retried write from the record it keeps with the object, or joins it to the same write
//! still in flight, so a write is applied at most once, and an answered write exactly once.
//! Only when the deadline passes does a call return TIMEOUT: then the write may or may not
//! have been applied.
//!
//! Searches go to the head of every region of the space (grouped per server) and are merged
//! in key order. `count`, `sorted_search`, `group_del` and the `group_*` calls build on search;
//! a group call applies its change to each matching object through that object's chain, as
//! a conditional write with the same checks, so objects that stopped matching are left alone.
//!
//! Asynchronous use: [`Client::start`] returns a [`Deferred`] at once; [`Client::wait`] waits
//! for one, and [`Client::loop_next`] for whichever outstanding operation finishes first.
//!
//! Files: `validate` (checks against the schema), `retry` (the retry contract as a state
//! machine), `search` (scatter-gather search, count, sorted search, group calls),
//! `deferred` (asynchronous operations).

mod deferred;
mod describe;
pub mod retry;
mod search;
mod validate;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyperdex_model::{Check, Object, Operation, Reply, ReturnCode, Value};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::coordinators::Coordinators;
use crate::net::{Credentials, RpcConn, RpcError};
use crate::protocol::auth::Secret;
use crate::protocol::{
    ClientRequest, ClientResponse, CoordRequest, CoordResponse, Message, DEFAULT_MAX_FRAME,
};
use crate::rt;
use crate::tls::TlsClient;
pub use deferred::Deferred;
use deferred::Outstanding;
use retry::{Attempts, Next};
pub use search::{SearchPage, SearchStream};
use validate::validate;

#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long a call may take in all, retries included, before it returns TIMEOUT.
    pub timeout: Duration,
    /// How long to wait for one attempt's reply before retrying.
    pub attempt_timeout: Duration,
    pub max_frame: usize,
    /// The cluster secret, for admin connections to a cluster that has one (data operations
    /// never need it).
    pub secret: Option<Secret>,
    /// The authority to check servers' certificates against, for a cluster that speaks TLS.
    pub tls: Option<TlsClient>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(2),
            max_frame: DEFAULT_MAX_FRAME,
            secret: None,
            tls: None,
        }
    }
}

/// A failed call: a HyperDex return code and a message for users.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} [{code}]")]
pub struct ClientError {
    pub code: ReturnCode,
    pub message: String,
}

impl ClientError {
    pub fn new(code: ReturnCode, message: impl Into<String>) -> ClientError {
        ClientError {
            code,
            message: message.into(),
        }
    }
}

pub type ClientResult<T> = Result<T, ClientError>;

fn unexpected(r: Reply) -> ClientError {
    match r {
        Reply::Error(code, message) => ClientError { code, message },
        other => ClientError::new(ReturnCode::Internal, format!("unexpected reply {other:?}")),
    }
}

struct Inner {
    coordinators: Coordinators,
    opts: ClientOptions,
    id: u64,
    seq: AtomicU64,
    config: Mutex<Arc<Config>>,
    conns: tokio::sync::Mutex<BTreeMap<String, Arc<RpcConn>>>,
    outstanding: Mutex<deferred::Outstanding>,
    /// Sequence numbers of single-key operations still waiting for an answer; the lowest
    /// tells daemons which dedupe records this client no longer needs.
    in_flight: Mutex<std::collections::BTreeSet<u64>>,
}

/// A connection to a cluster. Cheap to clone; clones share connections and configuration.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// Macaroons sent with every single-key operation (see [`Client::with_auth`]).
    auth: Arc<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn coordfail(e: RpcError) -> ClientError {
    ClientError::new(
        ReturnCode::CoordFail,
        format!("cannot reach the coordinator: {e}"),
    )
}

/// The coordinators at `addrs` (`host:port`, or several separated by commas), as a client.
fn coordinators(addrs: &str, opts: &ClientOptions) -> Coordinators {
    let who = Credentials::client(opts.tls.clone());
    Coordinators::new(addrs, who, opts.max_frame, opts.attempt_timeout)
}

/// Fetches the configuration from the coordinators at `addrs` (`host:port[,host:port...]`).
pub async fn fetch_config(addrs: &str, opts: &ClientOptions) -> ClientResult<Config> {
    config_over(&coordinators(addrs, opts), opts).await
}

/// Asks the coordinators' leader for the configuration.
async fn config_over(conn: &Coordinators, opts: &ClientOptions) -> ClientResult<Config> {
    match conn
        .call(
            Message::ToCoordinator(CoordRequest::GetConfig),
            opts.attempt_timeout,
        )
        .await
        .map_err(coordfail)?
    {
        Message::FromCoordinator(CoordResponse::Config(c)) => {
            crate::probe::config_seen(&c);
            Ok(c)
        }
        other => Err(ClientError::new(
            ReturnCode::CoordFail,
            format!("the coordinator answered {}", other.name()),
        )),
    }
}

impl Client {
    /// Connects to the coordinator at `host:port` (and learns the others from it); `host` may
    /// name several, `HOST[:PORT],HOST[:PORT]...`.
    pub async fn connect(host: &str, port: u16) -> ClientResult<Client> {
        let addrs = crate::coordinators::with_port(host, port);
        Client::connect_with(&addrs, ClientOptions::default()).await
    }

    /// Connects to the coordinators at `coordinator` (`host:port`, or several separated by
    /// commas).
    pub async fn connect_with(coordinator: &str, opts: ClientOptions) -> ClientResult<Client> {
        let coordinators = coordinators(coordinator, &opts);
        let config = config_over(&coordinators, &opts).await?;
        coordinators.learn(&config);
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Client {
            inner: Arc::new(Inner {
                coordinators,
                opts,
                id: rt::random_u64(),
                seq: AtomicU64::new(1),
                config: Mutex::new(Arc::new(config)),
                conns: tokio::sync::Mutex::new(BTreeMap::new()),
                in_flight: Mutex::new(Default::default()),
                outstanding: Mutex::new(Outstanding {
                    tx,
                    rx: Some(rx),
                    finished: Vec::new(),
                    running: Default::default(),
                    next: 1,
                }),
            }),
            auth: Arc::default(),
        })
    }

    /// A handle on the same connections that sends `tokens` (serialized macaroons: the one
    /// that grants access, then the discharges of its third-party caveats) with every
    /// operation, for spaces `with authorization`.
    pub fn with_auth(&self, tokens: Vec<String>) -> Client {
        Client {
            inner: self.inner.clone(),
            auth: Arc::new(tokens),
        }
    }

    /// The configuration this client currently uses.
    pub fn config(&self) -> Arc<Config> {
        lock(&self.inner.config).clone()
    }

    /// Fetches the configuration again (after RECONFIGURE or a failure).
    pub async fn refresh(&self) -> ClientResult<Arc<Config>> {
        let c = config_over(&self.inner.coordinators, &self.inner.opts).await?;
        self.inner.coordinators.learn(&c);
        let mut g = lock(&self.inner.config);
        if c.version >= g.version {
            *g = Arc::new(c);
        }
        Ok(g.clone())
    }

    /// [`refresh`](Self::refresh), retried for up to `patience`.
    async fn refresh_within(&self, patience: Duration) -> ClientResult<Arc<Config>> {
        let deadline = rt::now() + patience;
        loop {
            match self.refresh().await {
                Ok(c) => return Ok(c),
                Err(e) if rt::now() >= deadline => return Err(e),
                Err(_) => rt::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn conn(&self, addr: &str) -> Result<Arc<RpcConn>, RpcError> {
        if let Some(c) = self.inner.conns.lock().await.get(addr) {
            if c.is_alive() {
                return Ok(c.clone());
            }
        }
        // Connect without holding the lock: a server that does not answer must not hold up
        // calls to the others.
        let c = Arc::new(
            RpcConn::connect_as(
                addr,
                self.inner.opts.max_frame,
                self.inner.opts.attempt_timeout,
                &Credentials::client(self.inner.opts.tls.clone()),
            )
            .await?,
        );
        let mut conns = self.inner.conns.lock().await;
        match conns.get(addr) {
            // Another call connected meanwhile: use that one.
            Some(other) if other.is_alive() => Ok(other.clone()),
            _ => {
                conns.insert(addr.to_string(), c.clone());
                Ok(c)
            }
        }
    }

    /// Runs any operation and returns the cluster's reply (never panics, never hangs past
    /// the timeout).
    pub async fn call(&self, op: Operation) -> Reply {
        let mut config = self.config();
        let name = op.space().unwrap_or_default();
        if config.space(name).is_none() && !name.is_empty() {
            // The space may be new: look again before saying it is unknown, and say so only
            // once the coordinator has answered.
            match self.refresh_within(self.inner.opts.timeout).await {
                Ok(c) => config = c,
                Err(e) => {
                    crate::probe!("client.coordinator_unreachable");
                    return Reply::Error(
                        ReturnCode::CoordFail,
                        format!("cannot look up space \"{name}\": {e}"),
                    );
                }
            }
        }
        if let Err(r) = validate(&config, &op) {
            return r;
        }
        match op {
            Operation::Get { .. } | Operation::GetPartial { .. } | Operation::Write { .. } => {
                self.key_op(op).await
            }
            Operation::AddSpace(_) | Operation::RmSpace(_) => unreachable!("rejected by validate"),
            op => self.search_call(&config, op).await,
        }
    }

    /// A single-key operation, with the retry contract of [`retry`].
    async fn key_op(&self, op: Operation) -> Reply {
        let seq = {
            let mut in_flight = lock(&self.inner.in_flight);
            let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
            in_flight.insert(seq);
            seq
        };
        let mut attempts =
            Attempts::new(self.inner.id, seq, op, rt::now(), self.inner.opts.timeout)
                .with_auth(self.auth.to_vec());
        let reply = loop {
            let config = self.config();
            let result = self.attempt(&config, &mut attempts).await;
            match attempts.outcome(rt::now(), result) {
                Next::Done(reply) => break reply,
                Next::Retry(pause) => {
                    rt::sleep(pause).await;
                    let _ = self.refresh().await;
                }
            }
        };
        lock(&self.inner.in_flight).remove(&seq);
        reply
    }

    /// Sends the call's request once to the head of its key's region.
    async fn attempt(&self, config: &Config, attempts: &mut Attempts) -> Result<Reply, String> {
        let op = attempts.op();
        let name = op.space().unwrap_or_default();
        let Some(space) = config.space(name) else {
            // Removed since the call began (the configuration was refreshed): a definite answer.
            crate::probe!("client.space_removed_mid_call");
            return Ok(Reply::Error(
                ReturnCode::UnknownSpace,
                format!("space \"{name}\" was removed"),
            ));
        };
        let key = op.key().ok_or_else(|| "not a key operation".to_string())?;
        let region = space.region_of(key).ok_or_else(|| "bad key".to_string())?;
        let head = *config
            .chain(region)
            .first()
            .ok_or_else(|| format!("region {region} has no servers"))?;
        let addr = &config
            .server(head)
            .ok_or_else(|| format!("unknown server {head}"))?
            .addr;
        let conn = self.conn(addr).await.map_err(|e| e.to_string())?;
        let low_seq = lock(&self.inner.in_flight)
            .first()
            .copied()
            .unwrap_or(u64::MAX);
        let request = attempts.request(config.version, low_seq);
        let msg = Message::ToDaemon(ClientRequest::Op(request));
        match conn.call(msg, self.inner.opts.attempt_timeout).await {
            Ok(Message::FromDaemon(ClientResponse::Reply(r))) => Ok(r),
            Ok(Message::Error { code, message }) => Ok(Reply::Error(code, message)),
            Ok(other) => Err(format!("unexpected reply {}", other.name())),
            // A request that cannot be encoded would fail every time: no retry.
            Err(RpcError::Refused(why)) => Ok(Reply::Error(ReturnCode::Internal, why)),
            Err(e) => Err(e.to_string()),
        }
    }

    // Typed conveniences.

    /// `get`: the object, or `None` when there is none.
    pub async fn get(&self, space: &str, key: impl Into<Value>) -> ClientResult<Option<Object>> {
        match self.call(Operation::get(space, key)).await {
            Reply::Found(o) => Ok(Some(o)),
            Reply::NotFound => Ok(None),
            r => Err(unexpected(r)),
        }
    }

    /// `put`: creates or updates the named attributes.
    pub async fn put(
        &self,
        space: &str,
        key: impl Into<Value>,
        attrs: Vec<(&str, Value)>,
    ) -> ClientResult<()> {
        match self.call(Operation::put(space, key, attrs)).await {
            Reply::Success => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    /// Any write: `Ok(true)` on SUCCESS, `Ok(false)` on CMPFAIL or NOTFOUND.
    pub async fn write(&self, op: Operation) -> ClientResult<bool> {
        match self.call(op).await {
            Reply::Success => Ok(true),
            Reply::CmpFail(_) | Reply::NotFound => Ok(false),
            r => Err(unexpected(r)),
        }
    }

    /// `search`: matching objects with their keys, in key order.
    pub async fn search(&self, space: &str, checks: Vec<Check>) -> ClientResult<Vec<Object>> {
        match self.call(Operation::search(space, checks)).await {
            Reply::Objects(o) => Ok(o),
            r => Err(unexpected(r)),
        }
    }

    /// `count`: how many objects match.
    pub async fn count(&self, space: &str, checks: Vec<Check>) -> ClientResult<u64> {
        match self.call(Operation::count(space, checks)).await {
            Reply::Count(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }
}
