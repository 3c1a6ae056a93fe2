//! `hyperdex._hyperdex`: the native half of the Python package.
//!
//! It wraps the Rust client ([`hyperdex::client::Client`]) and admin client, and converts
//! between Python objects and [`Value`]s. The Python half (`hyperdex/client.py`) builds each
//! operation as a plain tuple (see [`op_from`]) and maps results to HyperDex's Python API.
//! Every wait for the network releases the GIL, so other Python threads run meanwhile.

mod macaroons;

use std::sync::OnceLock;
use std::time::Duration;

use hyperdex::admin::Admin;
use hyperdex::client::{Client, ClientError, ClientOptions, Deferred, SearchStream};
use hyperdex_model::{
    parse_space, Check, Document, Existence, Func, Funcall, KeyWrite, NumOp, Object, Operation,
    Predicate, Reply, ReturnCode, Value,
};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFrozenSet, PyList, PySet, PyString, PyTuple};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the client runtime starts")
    })
}

/// Raises `hyperdex.client.HyperDexClientException(status, symbol, message)`.
fn client_error(py: Python<'_>, code: ReturnCode, message: &str) -> PyErr {
    let made = PyModule::import(py, "hyperdex.client")
        .and_then(|m| m.getattr("HyperDexClientException"))
        .and_then(|cls| cls.call1((code.number(), code.symbol(), message)));
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

fn from_client_error(py: Python<'_>, e: ClientError) -> PyErr {
    client_error(py, e.code, &e.message)
}

/// Converts a Python value (`what` names it in errors).
fn value_from(v: &Bound<'_, PyAny>, what: &str) -> PyResult<Value> {
    let py = v.py();
    if v.hasattr("_hyperdex_document")? {
        let doc = v.call_method0("doc")?;
        let text: String = PyModule::import(py, "json")?
            .call_method1("dumps", (doc,))?
            .extract()?;
        return Document::parse(text.as_bytes())
            .map(Value::Document)
            .map_err(|e| PyValueError::new_err(format!("{what}: {e}")));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Value::string(s.extract::<String>()?));
    }
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(Value::String(b.as_bytes().to_vec()));
    }
    if v.is_instance_of::<pyo3::types::PyBool>() {
        return Ok(Value::Int(i64::from(v.extract::<bool>()?)));
    }
    if v.is_instance_of::<pyo3::types::PyInt>() {
        return v.extract::<i64>().map(Value::Int).map_err(|_| {
            PyValueError::new_err(format!("{what}: integer does not fit in 64 bits"))
        });
    }
    if v.is_instance_of::<pyo3::types::PyFloat>() {
        return Ok(Value::Float(v.extract::<f64>()?));
    }
    if let Ok(l) = v.cast::<PyList>() {
        return l
            .iter()
            .map(|x| value_from(&x, what))
            .collect::<PyResult<_>>()
            .map(Value::List);
    }
    if let Ok(t) = v.cast::<PyTuple>() {
        return t
            .iter()
            .map(|x| value_from(&x, what))
            .collect::<PyResult<_>>()
            .map(Value::List);
    }
    if let Ok(s) = v.cast::<PySet>() {
        return s
            .iter()
            .map(|x| value_from(&x, what))
            .collect::<PyResult<_>>()
            .map(Value::Set);
    }
    if let Ok(s) = v.cast::<PyFrozenSet>() {
        return s
            .iter()
            .map(|x| value_from(&x, what))
            .collect::<PyResult<_>>()
            .map(Value::Set);
    }
    if let Ok(d) = v.cast::<PyDict>() {
        return d
            .iter()
            .map(|(k, x)| Ok((value_from(&k, what)?, value_from(&x, what)?)))
            .collect::<PyResult<_>>()
            .map(Value::Map);
    }
    let datetime = PyModule::import(py, "datetime")?.getattr("datetime")?;
    if v.is_instance(&datetime)? {
        let epoch = datetime.call1((1970, 1, 1))?;
        let delta = v.call_method1("__sub__", (epoch,))?;
        let days: i64 = delta.getattr("days")?.extract()?;
        let secs: i64 = delta.getattr("seconds")?.extract()?;
        let micros: i64 = delta.getattr("microseconds")?.extract()?;
        return Ok(Value::Timestamp(
            (days * 86_400 + secs) * 1_000_000 + micros,
        ));
    }
    Err(PyTypeError::new_err(format!(
        "{what}: cannot store a value of type {}",
        v.get_type().name()?
    )))
}

/// Converts a value to Python: valid UTF-8 strings become `str`, others `bytes`.
fn value_to(py: Python<'_>, v: &Value) -> PyResult<Py<PyAny>> {
    Ok(match v {
        Value::String(s) => match std::str::from_utf8(s) {
            Ok(text) => PyString::new(py, text).into_any().unbind(),
            Err(_) => PyBytes::new(py, s).into_any().unbind(),
        },
        Value::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        Value::Float(x) => x.into_pyobject(py)?.into_any().unbind(),
        Value::List(l) => {
            let items: Vec<Py<PyAny>> =
                l.iter().map(|x| value_to(py, x)).collect::<PyResult<_>>()?;
            PyList::new(py, items)?.into_any().unbind()
        }
        Value::Set(s) => {
            let items: Vec<Py<PyAny>> =
                s.iter().map(|x| value_to(py, x)).collect::<PyResult<_>>()?;
            PySet::new(py, items)?.into_any().unbind()
        }
        Value::Map(m) => {
            let d = PyDict::new(py);
            for (k, x) in m {
                d.set_item(value_to(py, k)?, value_to(py, x)?)?;
            }
            d.into_any().unbind()
        }
        Value::Document(doc) => {
            let parsed = PyModule::import(py, "json")?.call_method1("loads", (doc.text(),))?;
            PyModule::import(py, "hyperdex.client")?
                .getattr("Document")?
                .call1((parsed,))?
                .unbind()
        }
        Value::Timestamp(t) => {
            let dt = PyModule::import(py, "datetime")?;
            let epoch = dt.getattr("datetime")?.call1((1970, 1, 1))?;
            let delta = dt.getattr("timedelta")?.call1((0, 0, *t))?;
            epoch.call_method1("__add__", (delta,))?.unbind()
        }
    })
}

fn object_to(py: Python<'_>, o: &Object) -> PyResult<Py<PyAny>> {
    let d = PyDict::new(py);
    for (k, v) in o {
        d.set_item(k, value_to(py, v)?)?;
    }
    Ok(d.into_any().unbind())
}

/// What Python gets back: True / the dict / None / False / a number / a list of dicts, or
/// the exception for any other code.
fn reply_to(py: Python<'_>, r: Reply) -> PyResult<Py<PyAny>> {
    Ok(match r {
        Reply::Success => true.into_pyobject(py)?.to_owned().into_any().unbind(),
        Reply::Found(o) => object_to(py, &o)?,
        Reply::NotFound => py.None(),
        Reply::CmpFail(_) => false.into_pyobject(py)?.to_owned().into_any().unbind(),
        Reply::Count(n) => n.into_pyobject(py)?.into_any().unbind(),
        Reply::Objects(objs) => {
            let items: Vec<Py<PyAny>> = objs
                .iter()
                .map(|o| object_to(py, o))
                .collect::<PyResult<_>>()?;
            PyList::new(py, items)?.into_any().unbind()
        }
        Reply::Error(code, message) => return Err(client_error(py, code, &message)),
    })
}

fn predicate_from(name: &str, args: &Bound<'_, PyAny>, what: &str) -> PyResult<Predicate> {
    let arg = |i: usize| -> PyResult<Value> { value_from(&args.get_item(i)?, what) };
    let len = |i: usize| -> PyResult<u64> { args.get_item(i)?.extract::<u64>() };
    Ok(match name {
        "Equals" => Predicate::Equals(arg(0)?),
        "LessThan" => Predicate::LessThan(arg(0)?),
        "LessEqual" => Predicate::LessEqual(arg(0)?),
        "GreaterEqual" => Predicate::GreaterEqual(arg(0)?),
        "GreaterThan" => Predicate::GreaterThan(arg(0)?),
        "Range" => Predicate::Range(arg(0)?, arg(1)?),
        "Regex" => Predicate::Regex(args.get_item(0)?.extract::<String>()?),
        "LengthEquals" => Predicate::LengthEquals(len(0)?),
        "LengthLessEqual" => Predicate::LengthLessEqual(len(0)?),
        "LengthGreaterEqual" => Predicate::LengthGreaterEqual(len(0)?),
        "Contains" => Predicate::Contains(arg(0)?),
        other => return Err(PyValueError::new_err(format!("unknown predicate {other}"))),
    })
}

fn checks_from(checks: &Bound<'_, PyAny>) -> PyResult<Vec<Check>> {
    let mut out = Vec::new();
    for c in checks.try_iter()? {
        let c = c?;
        let attr: String = c.get_item(0)?.extract()?;
        let name: String = c.get_item(1)?.extract()?;
        let pred = predicate_from(&name, &c.get_item(2)?, &format!("attribute \"{attr}\""))?;
        out.push(Check::new(&attr, pred));
    }
    Ok(out)
}

fn func_from(name: &str, args: &Bound<'_, PyAny>, what: &str) -> PyResult<Func> {
    let arg = |i: usize| -> PyResult<Value> { value_from(&args.get_item(i)?, what) };
    if let Some(op) = name.strip_prefix("atomic_").and_then(NumOp::from_suffix) {
        return Ok(Func::Num(op, arg(0)?));
    }
    if let Some(op) = name
        .strip_prefix("map_atomic_")
        .and_then(NumOp::from_suffix)
    {
        return Ok(Func::MapNum(op, arg(0)?, arg(1)?));
    }
    Ok(match name {
        "put" => Func::Set(arg(0)?),
        "string_prepend" => Func::StringPrepend(arg(0)?),
        "string_append" => Func::StringAppend(arg(0)?),
        "string_ltrim" => Func::StringLtrim(args.get_item(0)?.extract()?),
        "string_rtrim" => Func::StringRtrim(args.get_item(0)?.extract()?),
        "list_lpush" => Func::ListLpush(arg(0)?),
        "list_rpush" => Func::ListRpush(arg(0)?),
        "set_add" => Func::SetAdd(arg(0)?),
        "set_remove" => Func::SetRemove(arg(0)?),
        "set_union" => Func::SetUnion(arg(0)?),
        "set_intersect" => Func::SetIntersect(arg(0)?),
        "map_add" => Func::MapAdd(arg(0)?, arg(1)?),
        "map_remove" => Func::MapRemove(arg(0)?),
        "map_string_prepend" => Func::MapStringPrepend(arg(0)?, arg(1)?),
        "map_string_append" => Func::MapStringAppend(arg(0)?, arg(1)?),
        "document_rename" => Func::DocumentRename(args.get_item(0)?.extract()?),
        "document_unset" => Func::DocumentUnset,
        other => return Err(PyValueError::new_err(format!("unknown function {other}"))),
    })
}

fn funcs_from(funcs: &Bound<'_, PyAny>) -> PyResult<Vec<Funcall>> {
    let mut out = Vec::new();
    for f in funcs.try_iter()? {
        let f = f?;
        let attr: String = f.get_item(0)?.extract()?;
        let name: String = f.get_item(1)?.extract()?;
        let func = func_from(&name, &f.get_item(2)?, &format!("attribute \"{attr}\""))?;
        out.push(Funcall::new(&attr, func));
    }
    Ok(out)
}

/// Builds an operation from the tuple the Python half makes:
/// `("get", space, key)`, `("get_partial", space, key, attrs)`,
/// `("write", space, key, checks, funcs, existence, erase)` with existence `"any"`, `"must"`
/// or `"mustnot"`, `("search" | "count" | "group_del", space, checks)`,
/// `("sorted_search", space, checks, attr, limit, maximize)`, `("group", space, checks, funcs)`.
fn op_from(op: &Bound<'_, PyAny>) -> PyResult<Operation> {
    let kind: String = op.get_item(0)?.extract()?;
    let space: String = op.get_item(1)?.extract()?;
    let key = || value_from(&op.get_item(2)?, "the key");
    Ok(match kind.as_str() {
        "get" => Operation::Get { space, key: key()? },
        "get_partial" => Operation::GetPartial {
            space,
            key: key()?,
            attrs: op.get_item(3)?.extract()?,
        },
        "write" => {
            let existence = match op.get_item(5)?.extract::<String>()?.as_str() {
                "any" => Existence::Any,
                "must" => Existence::MustExist,
                _ => Existence::MustNotExist,
            };
            Operation::Write {
                space,
                write: KeyWrite {
                    key: key()?,
                    checks: checks_from(&op.get_item(3)?)?,
                    funcs: funcs_from(&op.get_item(4)?)?,
                    existence,
                    erase: op.get_item(6)?.extract()?,
                },
            }
        }
        "search" => Operation::Search {
            space,
            checks: checks_from(&op.get_item(2)?)?,
        },
        "count" => Operation::Count {
            space,
            checks: checks_from(&op.get_item(2)?)?,
        },
        "group_del" => Operation::GroupDel {
            space,
            checks: checks_from(&op.get_item(2)?)?,
        },
        "sorted_search" => Operation::SortedSearch {
            space,
            checks: checks_from(&op.get_item(2)?)?,
            sort_by: op.get_item(3)?.extract()?,
            limit: op.get_item(4)?.extract()?,
            maximize: op.get_item(5)?.extract()?,
        },
        "group" => Operation::GroupWrite {
            space,
            checks: checks_from(&op.get_item(2)?)?,
            funcs: funcs_from(&op.get_item(3)?)?,
        },
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown operation kind {other}"
            )))
        }
    })
}

/// A connection to a cluster (`hyperdex.client.Client` wraps it).
#[pyclass(module = "hyperdex._hyperdex")]
struct NativeClient {
    client: Client,
    /// Searches being iterated, by id.
    searches: std::sync::Mutex<std::collections::BTreeMap<u64, SearchStream>>,
    next_search: std::sync::atomic::AtomicU64,
}

impl NativeClient {
    /// The client, sending `auth` (macaroons) with its operations when given.
    fn with_auth(&self, auth: Option<Vec<String>>) -> Client {
        match auth {
            Some(tokens) => self.client.with_auth(tokens),
            None => self.client.clone(),
        }
    }
}

#[pymethods]
impl NativeClient {
    #[new]
    #[pyo3(signature = (host, port, timeout=None))]
    fn new(py: Python<'_>, host: &str, port: u16, timeout: Option<f64>) -> PyResult<Self> {
        let mut opts = env_options()?;
        if let Some(t) = timeout {
            opts.timeout = Duration::from_secs_f64(t.max(0.001));
        }
        // One coordinator or several (`"h1:1982,h2:1982"`); HyperDex's host and port still work.
        let addr = hyperdex::coordinators::with_port(host, port);
        let client = py
            .detach(|| runtime().block_on(Client::connect_with(&addr, opts)))
            .map_err(|e| from_client_error(py, e))?;
        Ok(NativeClient {
            client,
            searches: Default::default(),
            next_search: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// Runs an operation and returns its Python result.
    #[pyo3(signature = (op, auth=None))]
    fn call(
        &self,
        py: Python<'_>,
        op: &Bound<'_, PyAny>,
        auth: Option<Vec<String>>,
    ) -> PyResult<Py<PyAny>> {
        let op = op_from(op)?;
        let client = self.with_auth(auth);
        let reply = py.detach(|| runtime().block_on(client.call(op)));
        reply_to(py, reply)
    }

    /// How a search would run (`Client.search_describe`).
    fn search_describe(&self, py: Python<'_>, op: &Bound<'_, PyAny>) -> PyResult<String> {
        let Operation::Search { space, checks } = op_from(op)? else {
            return Err(PyTypeError::new_err("search_describe takes a search"));
        };
        let r = py.detach(|| runtime().block_on(self.client.search_describe(&space, &checks)));
        r.map_err(|e| from_client_error(py, e))
    }

    /// Starts a search whose results `search_next` fetches a page at a time; its id.
    fn search_start(&self, op: &Bound<'_, PyAny>) -> PyResult<u64> {
        let Operation::Search { space, checks } = op_from(op)? else {
            return Err(PyTypeError::new_err("search_start takes a search"));
        };
        let stream = self.client.search_stream(&space, &checks, false);
        let id = self
            .next_search
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.searches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, stream);
        Ok(id)
    }

    /// The next page of search `id` (a list of dicts), or `None` when it is done.
    fn search_next(&self, py: Python<'_>, id: u64) -> PyResult<Py<PyAny>> {
        let taken = self
            .searches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let Some(mut stream) = taken else {
            return Ok(py.None());
        };
        let page = py.detach(|| runtime().block_on(stream.next_page()));
        match page {
            None => Ok(py.None()),
            Some(Err(e)) => Err(from_client_error(py, e)),
            Some(Ok(page)) => {
                self.searches
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, stream);
                reply_to(py, Reply::Objects(page.objects))
            }
        }
    }

    /// Starts an operation; returns its id for `wait`.
    #[pyo3(signature = (op, auth=None))]
    fn start(
        &self,
        py: Python<'_>,
        op: &Bound<'_, PyAny>,
        auth: Option<Vec<String>>,
    ) -> PyResult<u64> {
        let op = op_from(op)?;
        let client = self.with_auth(auth);
        Ok(py.detach(|| {
            let _guard = runtime().enter();
            client.start(op).0
        }))
    }

    fn wait(&self, py: Python<'_>, id: u64) -> PyResult<Py<PyAny>> {
        let client = self.client.clone();
        let reply = py.detach(|| runtime().block_on(client.wait(Deferred(id))));
        reply_to(py, reply)
    }

    /// The id of whichever started operation finishes next, with its result (the result is
    /// an exception object rather than raised), or None when none is outstanding.
    fn loop_next(&self, py: Python<'_>) -> PyResult<Option<(u64, Py<PyAny>, bool)>> {
        let client = self.client.clone();
        let next = py.detach(|| runtime().block_on(client.loop_next()));
        match next {
            None => Ok(None),
            Some((d, reply)) => match reply_to(py, reply) {
                Ok(v) => Ok(Some((d.0, v, false))),
                Err(e) => Ok(Some((d.0, e.into_value(py).into_any(), true))),
            },
        }
    }
}

/// A connection to the coordinator for administration.
#[pyclass(module = "hyperdex._hyperdex")]
struct NativeAdmin {
    admin: Admin,
    /// For backups, which read every space (connected when first needed).
    addr: String,
    opts: ClientOptions,
}

/// Options from the environment the command line also reads: `HYPERDEX_TLS_CA` names the
/// authority for a cluster that speaks TLS.
fn env_options() -> PyResult<ClientOptions> {
    let ca = std::env::var_os("HYPERDEX_TLS_CA").map(std::path::PathBuf::from);
    let tls = hyperdex::cli::security::client_tls(ca.as_deref())
        .map_err(pyo3::exceptions::PyValueError::new_err)?;
    Ok(ClientOptions {
        tls,
        ..ClientOptions::default()
    })
}

fn admin_result<T>(py: Python<'_>, r: Result<T, ClientError>) -> PyResult<T> {
    r.map_err(|e| from_client_error(py, e))
}

#[pymethods]
impl NativeAdmin {
    #[new]
    fn new(py: Python<'_>, host: &str, port: u16) -> PyResult<Self> {
        // One coordinator or several (`"h1:1982,h2:1982"`); HyperDex's host and port still work.
        let addr = hyperdex::coordinators::with_port(host, port);
        // A cluster with a secret: the same file the command line takes.
        let file = std::env::var_os("HYPERDEX_CLUSTER_SECRET_FILE").map(std::path::PathBuf::from);
        let secret = hyperdex::cli::security::load_secret(file.as_deref())
            .map_err(pyo3::exceptions::PyValueError::new_err)?;
        let opts = ClientOptions {
            secret,
            ..env_options()?
        };
        let admin = py.detach(|| runtime().block_on(Admin::connect_addr(&addr, opts.clone())));
        Ok(NativeAdmin {
            admin: admin_result(py, admin)?,
            addr,
            opts,
        })
    }

    fn add_space(&self, py: Python<'_>, description: &str) -> PyResult<()> {
        let r = py.detach(|| runtime().block_on(self.admin.add_space(description)));
        admin_result(py, r)
    }

    fn rm_space(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        let r = py.detach(|| runtime().block_on(self.admin.rm_space(name)));
        admin_result(py, r)
    }

    fn list_spaces(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let r = py.detach(|| runtime().block_on(self.admin.list_spaces()));
        admin_result(py, r)
    }

    fn wait_until_stable(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        let r = py.detach(|| {
            runtime().block_on(
                self.admin
                    .wait_until_stable(Duration::from_secs_f64(timeout)),
            )
        });
        admin_result(py, r)
    }

    fn server_kill(&self, py: Python<'_>, id: u64) -> PyResult<()> {
        let r = py.detach(|| runtime().block_on(self.admin.server_kill(id)));
        admin_result(py, r)
    }

    fn fault_tolerance(&self, py: Python<'_>, space: &str, tolerate: u32) -> PyResult<()> {
        let r = py.detach(|| runtime().block_on(self.admin.fault_tolerance(space, tolerate)));
        admin_result(py, r)
    }

    fn read_only(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        let r = py.detach(|| runtime().block_on(self.admin.read_only(on)));
        admin_result(py, r)
    }

    fn server_forget(&self, py: Python<'_>, id: u64) -> PyResult<()> {
        let r = py.detach(|| runtime().block_on(self.admin.server_forget(id)));
        admin_result(py, r)
    }

    fn dump_config(&self, py: Python<'_>) -> PyResult<String> {
        let r = py.detach(|| runtime().block_on(self.admin.config()));
        admin_result(py, r).map(|c| c.to_string())
    }

    /// (attributes of each subspace, indexed attributes) of a space.
    /// The space's subspaces (identifier, attributes; the key's first) and indexes
    /// (identifier, attribute).
    #[allow(clippy::type_complexity)]
    fn space_layout(
        &self,
        py: Python<'_>,
        name: &str,
    ) -> PyResult<(Vec<(u64, Vec<String>)>, Vec<(u64, String)>)> {
        let r = py.detach(|| runtime().block_on(self.admin.config()));
        let config = admin_result(py, r)?;
        let space = config.space(name).ok_or_else(|| {
            client_error(
                py,
                ReturnCode::AdminNotFound,
                &format!("there is no space \"{name}\""),
            )
        })?;
        Ok((space.subspaces(), space.indexes()))
    }

    /// Writes a consistent backup of every space to directory `dir`; what it wrote.
    fn backup(&self, py: Python<'_>, dir: &str) -> PyResult<String> {
        let r = py.detach(|| {
            runtime().block_on(async {
                let client = Client::connect_with(&self.addr, self.opts.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                hyperdex::cli::backup::backup(&self.admin, &client, std::path::Path::new(dir)).await
            })
        });
        r.map_err(|e| client_error(py, ReturnCode::AdminServerError, &e))
    }

    fn add_index(&self, py: Python<'_>, space: &str, attribute: &str) -> PyResult<()> {
        let r = py.detach(|| runtime().block_on(self.admin.add_index(space, attribute)));
        admin_result(py, r)
    }

    fn rm_index(&self, py: Python<'_>, id: u64) -> PyResult<()> {
        let r = py.detach(|| runtime().block_on(self.admin.rm_index(id)));
        admin_result(py, r)
    }
}

/// Checks a space description offline; returns its canonical form or raises ValueError.
#[pyfunction]
fn validate_space(description: &str) -> PyResult<String> {
    parse_space(description)
        .map(|s| s.to_string())
        .map_err(|e| PyValueError::new_err(format!("bad space description: {e}")))
}

/// The symbol of a return code number, e.g. 8512 -> HYPERDEX_CLIENT_UNKNOWNSPACE.
#[pyfunction]
fn symbol(number: u32) -> PyResult<&'static str> {
    ReturnCode::from_number(number)
        .map(ReturnCode::symbol)
        .ok_or_else(|| PyRuntimeError::new_err(format!("no return code {number}")))
}

#[pymodule]
fn _hyperdex(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeClient>()?;
    m.add_class::<NativeAdmin>()?;
    m.add_function(wrap_pyfunction!(validate_space, m)?)?;
    macaroons::register(m)?;
    m.add_function(wrap_pyfunction!(symbol, m)?)?;
    Ok(())
}
