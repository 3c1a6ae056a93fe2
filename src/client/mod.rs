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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyperdex_model::apply::{normalize_write, validate_checks, validate_get_partial};
use hyperdex_model::db::sort_results;
use hyperdex_model::value::coerce;
use hyperdex_model::{
    Check, Existence, Funcall, KeyWrite, Object, Operation, Predicate, Reply, ReturnCode, Value,
};
use tokio::sync::mpsc;

use crate::config::{Config, RegionId, ServerId, SpaceConfig};
use crate::net::{RpcConn, RpcError};
use crate::protocol::{
    ClientRequest, ClientResponse, CoordRequest, CoordResponse, Message, OpRequest, SearchRequest,
    DEFAULT_MAX_FRAME,
};
use crate::rt;

#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long a call may take in all, retries included, before it returns TIMEOUT.
    pub timeout: Duration,
    /// How long to wait for one attempt's reply before retrying.
    pub attempt_timeout: Duration,
    pub max_frame: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(2),
            max_frame: DEFAULT_MAX_FRAME,
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

/// A handle on an operation started with [`Client::start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Deferred(pub u64);

struct Outstanding {
    tx: mpsc::UnboundedSender<(u64, Reply)>,
    rx: Option<mpsc::UnboundedReceiver<(u64, Reply)>>,
    /// Finished operations in the order they finished.
    finished: Vec<(u64, Reply)>,
    running: std::collections::BTreeSet<u64>,
    next: u64,
}

struct Inner {
    coordinator: String,
    opts: ClientOptions,
    id: u64,
    seq: AtomicU64,
    config: Mutex<Arc<Config>>,
    conns: tokio::sync::Mutex<BTreeMap<String, Arc<RpcConn>>>,
    outstanding: Mutex<Outstanding>,
    /// Sequence numbers of single-key operations still waiting for an answer; the lowest
    /// tells daemons which dedupe records this client no longer needs.
    in_flight: Mutex<std::collections::BTreeSet<u64>>,
}

/// A connection to a cluster. Cheap to clone; clones share connections and configuration.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fetches the configuration from the coordinator at `addr`.
pub async fn fetch_config(addr: &str, opts: &ClientOptions) -> ClientResult<Config> {
    let coordfail = |e: RpcError| {
        ClientError::new(
            ReturnCode::CoordFail,
            format!("cannot reach the coordinator: {e}"),
        )
    };
    let conn = RpcConn::connect(addr, opts.max_frame, opts.attempt_timeout)
        .await
        .map_err(coordfail)?;
    match conn
        .call(
            Message::ToCoordinator(CoordRequest::GetConfig),
            opts.attempt_timeout,
        )
        .await
        .map_err(coordfail)?
    {
        Message::FromCoordinator(CoordResponse::Config(c)) => Ok(c),
        other => Err(ClientError::new(
            ReturnCode::CoordFail,
            format!("the coordinator answered {}", other.name()),
        )),
    }
}

impl Client {
    /// Connects to the coordinator at `host:port`.
    pub async fn connect(host: &str, port: u16) -> ClientResult<Client> {
        Client::connect_with(&format!("{host}:{port}"), ClientOptions::default()).await
    }

    pub async fn connect_with(coordinator: &str, opts: ClientOptions) -> ClientResult<Client> {
        let config = fetch_config(coordinator, &opts).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Client {
            inner: Arc::new(Inner {
                coordinator: coordinator.to_string(),
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
        })
    }

    /// The configuration this client currently uses.
    pub fn config(&self) -> Arc<Config> {
        lock(&self.inner.config).clone()
    }

    /// Fetches the configuration again (after RECONFIGURE or a failure).
    pub async fn refresh(&self) -> ClientResult<Arc<Config>> {
        let c = fetch_config(&self.inner.coordinator, &self.inner.opts).await?;
        let mut g = lock(&self.inner.config);
        if c.version >= g.version {
            *g = Arc::new(c);
        }
        Ok(g.clone())
    }

    async fn conn(&self, addr: &str) -> Result<Arc<RpcConn>, RpcError> {
        let mut conns = self.inner.conns.lock().await;
        if let Some(c) = conns.get(addr) {
            if c.is_alive() {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(
            RpcConn::connect(
                addr,
                self.inner.opts.max_frame,
                self.inner.opts.attempt_timeout,
            )
            .await?,
        );
        conns.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Checks an operation against the schema before sending it.
    fn validate(config: &Config, op: &Operation) -> Result<(), Reply> {
        let Some(space_name) = op.space() else {
            return Ok(());
        };
        let Some(space) = config.space(space_name) else {
            return Err(Reply::Error(
                ReturnCode::UnknownSpace,
                format!("unknown space \"{space_name}\""),
            ));
        };
        let schema = &space.schema;
        let key_ok = |k: &Value| {
            coerce(k.clone(), schema.key.datatype)
                .map(|_| ())
                .map_err(|e| {
                    Reply::Error(
                        ReturnCode::WrongType,
                        format!("key \"{}\": {e}", schema.key.name),
                    )
                })
        };
        match op {
            Operation::Get { key, .. } => key_ok(key),
            Operation::GetPartial { key, attrs, .. } => {
                key_ok(key)?;
                validate_get_partial(schema, attrs).map_err(|f| f.into_reply())
            }
            Operation::Write { write, .. } => normalize_write(schema, write)
                .map(|_| ())
                .map_err(|f| f.into_reply()),
            Operation::Search { checks, .. }
            | Operation::Count { checks, .. }
            | Operation::GroupDel { checks, .. }
            | Operation::SortedSearch { checks, .. } => validate_checks(schema, checks)
                .map(|_| ())
                .map_err(|f| f.into_reply()),
            Operation::GroupWrite { checks, funcs, .. } => {
                validate_checks(schema, checks).map_err(|f| f.into_reply())?;
                let w = KeyWrite {
                    key: schema.key.datatype.default_value(),
                    checks: Vec::new(),
                    funcs: funcs.clone(),
                    existence: Existence::MustExist,
                    erase: false,
                };
                normalize_write(schema, &w)
                    .map(|_| ())
                    .map_err(|f| f.into_reply())
            }
            Operation::AddSpace(_) | Operation::RmSpace(_) => Err(Reply::Error(
                ReturnCode::Internal,
                "spaces are added and removed through the admin client".into(),
            )),
        }
    }

    /// Runs any operation and returns the cluster's reply (never panics, never hangs past
    /// the timeout).
    pub async fn call(&self, op: Operation) -> Reply {
        let mut config = self.config();
        if config.space(op.space().unwrap_or_default()).is_none() {
            // The space may be new: look again before saying it is unknown.
            if let Ok(c) = self.refresh().await {
                config = c;
            }
        }
        if let Err(r) = Self::validate(&config, &op) {
            return r;
        }
        match &op {
            Operation::Get { .. } | Operation::GetPartial { .. } | Operation::Write { .. } => {
                self.key_op(op).await
            }
            Operation::Search { space, checks } => match self.search_all(space, checks).await {
                Ok(objs) => Reply::Objects(objs),
                Err(e) => Reply::Error(e.code, e.message),
            },
            Operation::Count { space, checks } => match self.search_all(space, checks).await {
                Ok(objs) => Reply::Count(objs.len() as u64),
                Err(e) => Reply::Error(e.code, e.message),
            },
            Operation::SortedSearch {
                space,
                checks,
                sort_by,
                limit,
                maximize,
            } => match self.search_all(space, checks).await {
                Ok(mut objs) => {
                    let key_name = config
                        .space(space)
                        .map(|s| s.schema.key.name.clone())
                        .unwrap_or_default();
                    let Some(attr) = config
                        .space(space)
                        .and_then(|s| s.schema.any_attribute(sort_by))
                    else {
                        return Reply::Error(
                            ReturnCode::UnknownAttr,
                            format!("cannot sort by unknown attribute \"{sort_by}\" in space \"{space}\""),
                        );
                    };
                    if !attr.datatype.is_comparable() {
                        return Reply::Error(
                            ReturnCode::WrongType,
                            format!("cannot sort by \"{sort_by}\" of type {}", attr.datatype),
                        );
                    }
                    sort_results(&mut objs, sort_by, &key_name, *maximize, *limit);
                    Reply::Objects(objs)
                }
                Err(e) => Reply::Error(e.code, e.message),
            },
            Operation::GroupDel { space, checks } => self.group(space, checks, None).await,
            Operation::GroupWrite {
                space,
                checks,
                funcs,
            } => self.group(space, checks, Some(funcs)).await,
            Operation::AddSpace(_) | Operation::RmSpace(_) => unreachable!("rejected by validate"),
        }
    }

    /// A single-key operation, with the retry contract of the module docs.
    async fn key_op(&self, op: Operation) -> Reply {
        let seq = {
            let mut in_flight = lock(&self.inner.in_flight);
            let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
            in_flight.insert(seq);
            seq
        };
        let reply = self.key_op_with(seq, op).await;
        lock(&self.inner.in_flight).remove(&seq);
        reply
    }

    async fn key_op_with(&self, seq: u64, op: Operation) -> Reply {
        let deadline = rt::now() + self.inner.opts.timeout;
        let mut backoff = Duration::from_millis(5);
        loop {
            let config = self.config();
            let last = match self.attempt(&config, seq, &op).await {
                Ok(Reply::Error(ReturnCode::Reconfigure | ReturnCode::Offline, why)) => why,
                Ok(reply) => return reply,
                Err(why) => why,
            };
            if rt::now() + backoff >= deadline {
                return Reply::Error(
                    ReturnCode::Timeout,
                    format!(
                        "no answer within {:?} (last problem: {last})",
                        self.inner.opts.timeout
                    ),
                );
            }
            rt::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
            let _ = self.refresh().await;
        }
    }

    async fn attempt(&self, config: &Config, seq: u64, op: &Operation) -> Result<Reply, String> {
        let space = op
            .space()
            .and_then(|s| config.space(s))
            .ok_or_else(|| "space vanished".to_string())?;
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
        let low_seq = lock(&self.inner.in_flight).first().copied().unwrap_or(seq);
        let msg = Message::ToDaemon(ClientRequest::Op(OpRequest {
            config_version: config.version,
            client: self.inner.id,
            seq,
            low_seq,
            op: op.clone(),
        }));
        match conn.call(msg, self.inner.opts.attempt_timeout).await {
            Ok(Message::FromDaemon(ClientResponse::Reply(r))) => Ok(r),
            Ok(Message::Error { code, message }) => Ok(Reply::Error(code, message)),
            Ok(other) => Err(format!("unexpected reply {}", other.name())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Every object of `space` passing `checks`, in key order.
    pub async fn search_all(&self, space: &str, checks: &[Check]) -> ClientResult<Vec<Object>> {
        let deadline = rt::now() + self.inner.opts.timeout;
        loop {
            let config = self.config();
            let last = match self.search_once(&config, space, checks).await {
                Ok(result) => return result,
                Err(why) => why,
            };
            if rt::now() >= deadline {
                return Err(ClientError::new(
                    ReturnCode::Timeout,
                    format!("search did not complete: {last}"),
                ));
            }
            rt::sleep(Duration::from_millis(20)).await;
            let _ = self.refresh().await;
        }
    }

    /// One scatter-gather round: `Err` to retry, `Ok(Err)` for a final error.
    async fn search_once(
        &self,
        config: &Config,
        space: &str,
        checks: &[Check],
    ) -> Result<ClientResult<Vec<Object>>, String> {
        let Some(sc) = config.space(space) else {
            return Ok(Err(ClientError::new(
                ReturnCode::UnknownSpace,
                format!("unknown space \"{space}\""),
            )));
        };
        let mut by_head: BTreeMap<ServerId, Vec<RegionId>> = BTreeMap::new();
        for r in search_regions(sc, checks) {
            let head = *config
                .chain(r)
                .first()
                .ok_or_else(|| format!("region {r} has no servers"))?;
            by_head.entry(head).or_default().push(r);
        }
        let mut calls = Vec::new();
        for (head, regions) in by_head {
            let addr = config
                .server(head)
                .ok_or_else(|| format!("unknown server {head}"))?
                .addr
                .clone();
            let msg = Message::ToDaemon(ClientRequest::Search(SearchRequest {
                config_version: config.version,
                space: space.to_string(),
                regions,
                checks: checks.to_vec(),
            }));
            let this = self.clone();
            calls.push(rt::spawn(async move {
                let conn = this.conn(&addr).await.map_err(|e| e.to_string())?;
                conn.call(msg, this.inner.opts.attempt_timeout)
                    .await
                    .map_err(|e| e.to_string())
            }));
        }
        let key_name = &sc.schema.key.name;
        let mut all: BTreeMap<Option<Value>, Object> = BTreeMap::new();
        for c in calls {
            match c.await.map_err(|e| e.to_string())? {
                Ok(Message::FromDaemon(ClientResponse::Objects(objs))) => {
                    for o in objs {
                        all.insert(o.get(key_name).cloned(), o);
                    }
                }
                Ok(Message::FromDaemon(ClientResponse::Reply(Reply::Error(
                    ReturnCode::Reconfigure | ReturnCode::Offline,
                    why,
                )))) => return Err(why),
                Ok(Message::FromDaemon(ClientResponse::Reply(r))) => return Ok(Err(unexpected(r))),
                Ok(other) => return Err(format!("unexpected reply {}", other.name())),
                Err(e) => return Err(e),
            }
        }
        Ok(Ok(all.into_values().collect()))
    }

    async fn group(&self, space: &str, checks: &[Check], funcs: Option<&Vec<Funcall>>) -> Reply {
        let objs = match self.search_all(space, checks).await {
            Ok(o) => o,
            Err(e) => return Reply::Error(e.code, e.message),
        };
        let config = self.config();
        let Some(key_name) = config.space(space).map(|s| s.schema.key.name.clone()) else {
            return Reply::Error(
                ReturnCode::UnknownSpace,
                format!("unknown space \"{space}\""),
            );
        };
        let mut count = 0;
        for o in objs {
            let Some(key) = o.get(&key_name).cloned() else {
                continue;
            };
            let op = match funcs {
                None => Operation::cond_del(space, key, checks.to_vec()),
                Some(f) => Operation::funcs(space, key, f.clone()).with_checks(checks.to_vec()),
            };
            match self.key_op(op).await {
                Reply::Success => count += 1,
                Reply::CmpFail(_) | Reply::NotFound => {}
                Reply::Error(code, msg) => return Reply::Error(code, msg),
                _ => {}
            }
        }
        Reply::Count(count)
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

    // Asynchronous operations.

    /// Starts an operation and returns at once.
    pub fn start(&self, op: Operation) -> Deferred {
        let (id, tx) = {
            let mut o = lock(&self.inner.outstanding);
            let id = o.next;
            o.next += 1;
            o.running.insert(id);
            (id, o.tx.clone())
        };
        let this = self.clone();
        rt::spawn(async move {
            let reply = this.call(op).await;
            let _ = tx.send((id, reply));
        });
        Deferred(id)
    }

    /// Moves finished operations from the channel into `finished`, waiting for at least one
    /// unless `want` is already there.
    async fn collect(&self, want: Option<u64>) -> bool {
        let mut rx = {
            let mut o = lock(&self.inner.outstanding);
            let have = match want {
                Some(w) => o.finished.iter().any(|(id, _)| *id == w),
                None => !o.finished.is_empty(),
            };
            if have {
                return true;
            }
            if o.running.is_empty() {
                return false;
            }
            match o.rx.take() {
                Some(rx) => rx,
                None => return false, // another task is collecting
            }
        };
        let got = rx.recv().await;
        let mut o = lock(&self.inner.outstanding);
        o.rx = Some(rx);
        if let Some((id, reply)) = got {
            o.running.remove(&id);
            o.finished.push((id, reply));
        }
        true
    }

    /// Waits for a started operation; NONEPENDING if `d` is unknown or already waited for.
    pub async fn wait(&self, d: Deferred) -> Reply {
        loop {
            {
                let mut o = lock(&self.inner.outstanding);
                if let Some(i) = o.finished.iter().position(|(id, _)| *id == d.0) {
                    return o.finished.remove(i).1;
                }
                if !o.running.contains(&d.0) {
                    return Reply::Error(
                        ReturnCode::NonePending,
                        format!("operation {} is not outstanding", d.0),
                    );
                }
            }
            if !self.collect(Some(d.0)).await {
                rt::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// Waits for whichever outstanding operation finishes next; `None` when none is.
    pub async fn loop_next(&self) -> Option<(Deferred, Reply)> {
        loop {
            {
                let mut o = lock(&self.inner.outstanding);
                if !o.finished.is_empty() {
                    let (id, r) = o.finished.remove(0);
                    return Some((Deferred(id), r));
                }
                if o.running.is_empty() {
                    return None;
                }
            }
            if !self.collect(None).await {
                rt::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// The regions a search must visit: the one region that can hold the object when a check
/// pins the key with `Equals` (the daemon still validates every check), otherwise all.
fn search_regions(sc: &SpaceConfig, checks: &[Check]) -> Vec<RegionId> {
    let pinned = checks.iter().find_map(|c| match &c.predicate {
        Predicate::Equals(v) if c.attr == sc.schema.key.name => sc.region_of(v),
        _ => None,
    });
    match pinned {
        Some(r) => vec![r],
        None => (0..sc.chains.len())
            .map(|index| RegionId {
                space: sc.id,
                index: index as u32,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::state::{Cluster, Command};

    fn space() -> SpaceConfig {
        let mut cluster = Cluster::new(1);
        for port in 0..3 {
            cluster
                .apply(&Command::Register {
                    id: None,
                    addr: format!("127.0.0.1:{}", 2012 + port),
                })
                .expect("register");
        }
        cluster
            .apply(&Command::AddSpace(
                "space people key name attributes int age".into(),
            ))
            .expect("add space");
        cluster.config.space("people").expect("space").clone()
    }

    #[test]
    fn a_search_pinning_the_key_visits_one_region() {
        let sc = space();
        assert_eq!(sc.chains.len(), 64);
        let all = search_regions(&sc, &[Check::new("age", Predicate::Equals(Value::Int(3)))]);
        assert_eq!(all.len(), 64);
        let key = Value::String(b"jane".to_vec());
        let one = search_regions(
            &sc,
            &[
                Check::new("age", Predicate::GreaterEqual(Value::Int(3))),
                Check::new("name", Predicate::Equals(key.clone())),
            ],
        );
        assert_eq!(one, vec![sc.region_of(&key).expect("a key")]);
        // Other predicates on the key, and values that cannot be a key, still visit everything
        // (so the daemons report the type error).
        let range = search_regions(&sc, &[Check::new("name", Predicate::Regex("j.*".into()))]);
        assert_eq!(range.len(), 64);
        let wrong = search_regions(&sc, &[Check::new("name", Predicate::Equals(Value::Int(1)))]);
        assert_eq!(wrong.len(), 64);
    }
}
