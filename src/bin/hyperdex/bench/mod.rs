//! `hyperdex bench`: a load generator against a running cluster, or against a local one it
//! starts itself (`--local`: a coordinator and three daemons, `tolerate 1 failure`).
//!
//! Workloads: YCSB's core workloads `a`–`f` (see `ycsb`), and micro-workloads HyperDex users
//! care about: `put`, `get`, `cond-put` (a put conditional on the value it replaces, on the
//! same keys as `put`), `atomic-add` (counters; `--records 1` for one hot counter) and
//! `mixed` (50% get, 50% put). Records have `--fields` string fields of `--value-size` bytes
//! (YCSB's defaults: 10 × 100 bytes); an update writes one field. A load phase inserts every
//! record, then the run phase issues `--ops` operations from `--clients` clients, each with
//! `--window` operations outstanding. Prints throughput and latency percentiles per operation
//! type (HdrHistogram), shows a progress bar, and can write JSON (`--json`) and an SVG plot
//! (`--svg`: latency percentiles and throughput over time).

#![allow(clippy::disallowed_methods)] // the benchmark measures wall time on purpose

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use hyperdex_model::{Check, NumOp, Operation, Predicate, Reply, Value};
use indicatif::{ProgressBar, ProgressStyle};

use hyperdex::admin::Admin;
use hyperdex::cli::local::{start, LocalArgs};
use hyperdex::client::{Client, ClientOptions};
use report::{summary, svg};
use ycsb::{mix, pick, Distribution, KeyChooser, Rng, YcsbOp};

mod peers;
mod report;
pub mod search;
mod ycsb;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    A,
    B,
    C,
    D,
    E,
    F,
    Put,
    Get,
    CondPut,
    AtomicAdd,
    Mixed,
    /// A put and a delete of the same key, one cycle per step (what grows tombstones and
    /// retry records).
    PutDel,
}

/// The store under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    Hyperdex,
    /// Redis at --address (SET/GET of one value per key).
    Redis,
    /// etcd at --address, a comma-separated list of client endpoints (v3 JSON gateway).
    Etcd,
}

/// The cluster under test: a running one, or one started for the run.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Coordinator host (ignored with --local).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Coordinator port (ignored with --local).
    #[arg(long, default_value_t = 1982)]
    pub port: u16,
    /// Start a local cluster (a coordinator and three daemons) for the run.
    #[arg(long)]
    pub local: bool,
    /// With --local: heartbeats, leases and failure detection N times slower, so that a
    /// run under valgrind (for instruction counts) sees no failover.
    #[arg(long = "timing-scale", value_name = "N", default_value_t = 1, requires = "local",
          value_parser = clap::value_parser!(u32).range(1..=20))]
    pub timing_scale: u32,
}

impl ClusterArgs {
    /// The coordinator's address; with `--local`, of a cluster started with its data in
    /// `dir` (removed by [`ClusterArgs::done`]).
    pub async fn start(&self, dir: &std::path::Path) -> Result<String, String> {
        if !self.local {
            return Ok(format!("{}:{}", self.host, self.port));
        }
        let local = LocalArgs {
            daemons: 3,
            data: Some(dir.to_path_buf()),
            listen: "127.0.0.1".into(),
            port: 0,
            security: Default::default(),
            metrics_listen: None,
            timing_scale: self.timing_scale,
        };
        start(&local, dir).await
    }

    /// Removes a local cluster's data.
    pub fn done(&self, dir: &std::path::Path) {
        if self.local {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// The store to measure: this cluster, or a peer for comparison.
    #[arg(long, value_enum, default_value = "hyperdex")]
    pub target: Target,
    /// The peer's address(es) for --target redis or etcd.
    #[arg(long, default_value = "127.0.0.1:6379")]
    pub address: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[arg(long, value_enum, default_value = "a")]
    pub workload: Workload,
    /// Key distribution (default: the workload's own).
    #[arg(long, value_enum)]
    pub distribution: Option<Distribution>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Outstanding operations per client.
    #[arg(long, default_value_t = 1)]
    pub window: usize,
    /// Operations in the run phase.
    #[arg(long, default_value_t = 10_000)]
    pub ops: u64,
    /// Records loaded before the run.
    #[arg(long, default_value_t = 1000)]
    pub records: u64,
    /// Run against the `bench` space and records an earlier run loaded (same --records and
    /// --fields), without removing, adding or loading anything.
    #[arg(long)]
    pub existing: bool,
    /// String fields per record.
    #[arg(long, default_value_t = 10)]
    pub fields: usize,
    /// Bytes per field.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an SVG plot (latency percentiles, throughput over time) to this file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Latency figures of one operation type, in microseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpStats {
    pub count: u64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
}

/// What a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    pub workload: String,
    pub distribution: String,
    pub clients: usize,
    pub window: usize,
    pub records: u64,
    pub load_seconds: f64,
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub per_op: BTreeMap<String, OpStats>,
    /// Operations completed in each second of the run.
    pub timeline: Vec<u64>,
    /// Bytes of every server's data directory after the load and after the run (with
    /// `--local`).
    pub disk_after_load: Option<u64>,
    pub disk_after_run: Option<u64>,
}

/// Bytes of the files under `dir`.
fn disk_use(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_use(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn key(i: u64) -> Value {
    Value::string(format!("user{i:010}"))
}

fn space_description(fields: usize) -> String {
    let attrs: Vec<String> = (0..fields).map(|f| format!("string f{f}")).collect();
    format!(
        "space bench key k attributes {}, int n tolerate 1 failure",
        attrs.join(", ")
    )
}

struct Shape {
    workload: Workload,
    mix: Vec<(YcsbOp, u32)>,
    chooser: KeyChooser,
    fields: usize,
    value: Value,
}

/// The operation(s) for one step; a read-modify-write is two.
fn ops_for(shape: &Shape, rng: &mut Rng, records: &AtomicU64) -> (String, Vec<Operation>) {
    let n = records.load(Ordering::Relaxed);
    let field = |rng: &mut Rng| format!("f{}", rng.below(shape.fields as u64));
    let value = shape.value.clone();
    let put = |k: Value, value: Value| {
        (
            "put".to_string(),
            vec![Operation::put("bench", k, vec![("f0", value)])],
        )
    };
    let get = |k: Value| ("get".to_string(), vec![Operation::get("bench", k)]);
    match shape.workload {
        Workload::Put => put(key(shape.chooser.next(rng, n)), value),
        Workload::Get => get(key(shape.chooser.next(rng, n))),
        // Conditional on the value the load wrote: the check passes, so this measures what a
        // condition costs on top of a put.
        Workload::CondPut => (
            "cond_put".into(),
            vec![Operation::cond_put(
                "bench",
                key(shape.chooser.next(rng, n)),
                vec![Check::new("f0", Predicate::Equals(value.clone()))],
                vec![("f0", value)],
            )],
        ),
        Workload::AtomicAdd => (
            "atomic_add".into(),
            vec![Operation::atomic(
                NumOp::Add,
                "bench",
                key(shape.chooser.next(rng, n)),
                vec![("n", Value::Int(1))],
            )],
        ),
        Workload::PutDel => {
            let k = key(shape.chooser.next(rng, n));
            (
                "put_del".into(),
                vec![
                    Operation::put("bench", k.clone(), vec![("f0", value)]),
                    Operation::del("bench", k),
                ],
            )
        }
        Workload::Mixed if rng.below(2) == 0 => get(key(shape.chooser.next(rng, n))),
        Workload::Mixed => put(key(shape.chooser.next(rng, n)), value),
        _ => {
            let op = pick(&shape.mix, rng);
            let k = key(shape.chooser.next(rng, n));
            let f = field(rng);
            let ops = match op {
                YcsbOp::Read => vec![Operation::get("bench", k)],
                YcsbOp::Update => vec![Operation::put("bench", k, vec![(f.as_str(), value)])],
                YcsbOp::Insert => {
                    let id = records.fetch_add(1, Ordering::Relaxed);
                    let attrs: Vec<(String, Value)> = (0..shape.fields)
                        .map(|i| (format!("f{i}"), value.clone()))
                        .collect();
                    let attrs = attrs.iter().map(|(a, v)| (a.as_str(), v.clone())).collect();
                    vec![Operation::put("bench", key(id), attrs)]
                }
                YcsbOp::Scan => vec![Operation::SortedSearch {
                    space: "bench".into(),
                    checks: vec![Check::new("k", Predicate::GreaterEqual(k))],
                    sort_by: "k".into(),
                    limit: 1 + rng.below(100),
                    maximize: false,
                }],
                YcsbOp::ReadModifyWrite => vec![
                    Operation::get("bench", k.clone()),
                    Operation::put("bench", k, vec![(f.as_str(), value)]),
                ],
            };
            (op.name().into(), ops)
        }
    }
}

/// Loads `records` records, 256 outstanding at a time.
async fn load(client: &Client, records: u64, fields: usize, value: &Value) {
    let attrs: Vec<(String, Value)> = (0..fields)
        .map(|i| (format!("f{i}"), value.clone()))
        .collect();
    let mut outstanding = 0;
    for i in 0..records {
        let a = attrs.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
        client.start(Operation::put("bench", key(i), a));
        outstanding += 1;
        if outstanding >= 256 {
            let _ = client.loop_next().await;
            outstanding -= 1;
        }
    }
    while client.loop_next().await.is_some() {}
}

/// Runs the benchmark against the coordinator at `addr` and returns its result.
#[allow(
    clippy::too_many_lines,
    reason = "one measurement: load, workers, progress and totals share their state"
)]
pub async fn run_bench(
    addr: &str,
    args: &BenchArgs,
    data: Option<&std::path::Path>,
) -> Result<BenchResult, String> {
    let opts = ClientOptions::default();
    let admin = Admin::connect_addr(addr, opts.clone())
        .await
        .map_err(|e| e.to_string())?;
    let fields = args.fields.max(1);
    let value = Value::String(vec![b'x'; args.value_size]);
    let records = args.records.max(1);
    let loading = Instant::now();
    if !args.existing {
        let _ = admin.rm_space("bench").await;
        admin
            .add_space(&space_description(fields))
            .await
            .map_err(|e| e.to_string())?;
        admin
            .wait_until_stable(Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())?;
        let loader = Client::connect_with(addr, opts.clone())
            .await
            .map_err(|e| e.to_string())?;
        load(&loader, records, fields, &value).await;
    }
    let load_seconds = loading.elapsed().as_secs_f64();
    let disk_after_load = data.map(disk_use);

    let ycsb = match args.workload {
        Workload::A => Some('a'),
        Workload::B => Some('b'),
        Workload::C => Some('c'),
        Workload::D => Some('d'),
        Workload::E => Some('e'),
        Workload::F => Some('f'),
        _ => None,
    };
    let (op_mix, default_dist) = ycsb.and_then(mix).unwrap_or((&[], Distribution::Uniform));
    let dist = args.distribution.unwrap_or(default_dist);
    let shape = Arc::new(Shape {
        workload: args.workload,
        mix: op_mix.to_vec(),
        chooser: KeyChooser::new(dist, records),
        fields,
        value,
    });
    let record_count = Arc::new(AtomicU64::new(records));
    let stats: Arc<Mutex<BTreeMap<String, Histogram<u64>>>> = Arc::default();
    let timeline: Arc<Mutex<Vec<u64>>> = Arc::default();
    let errors = Arc::new(AtomicU64::new(0));
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.ops)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} ops, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let clients = args.clients.max(1);
    let per_client = args.ops / clients as u64;
    let begin = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = Client::connect_with(addr, opts.clone())
            .await
            .map_err(|e| e.to_string())?;
        let (shape, record_count, stats, timeline, errors, bar) = (
            shape.clone(),
            record_count.clone(),
            stats.clone(),
            timeline.clone(),
            errors.clone(),
            bar.clone(),
        );
        let window = args.window.max(1);
        tasks.push(tokio::spawn(async move {
            let mut rng =
                Rng::new(0x9e37_79b9 ^ (c as u64 + 1).wrapping_mul(0x5851_f42d_4c95_7f2d));
            let mut local: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
            let mut seconds: Vec<u64> = Vec::new();
            let mut record = |name: &str, reply: &Reply, since: Instant| {
                if matches!(reply, Reply::Error(..)) {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                let h = local.entry(name.to_string()).or_insert_with(|| {
                    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
                });
                let _ = h.record(since.elapsed().as_micros().max(1) as u64);
                let s = begin.elapsed().as_secs() as usize;
                if seconds.len() <= s {
                    seconds.resize(s + 1, 0);
                }
                seconds[s] += 1;
                bar.inc(1);
            };
            // Asynchronous steps: (deferred id, name, start); read-modify-writes run inline.
            let mut in_flight: Vec<(u64, String, Instant)> = Vec::new();
            for _ in 0..per_client {
                let (name, ops) = ops_for(&shape, &mut rng, &record_count);
                let t = Instant::now();
                if window == 1 || ops.len() > 1 {
                    let mut last = Reply::Success;
                    for op in ops {
                        last = client.call(op).await;
                    }
                    record(&name, &last, t);
                    continue;
                }
                let Some(op) = ops.into_iter().next() else {
                    continue;
                };
                in_flight.push((client.start(op).0, name, t));
                if in_flight.len() >= window {
                    if let Some((d, r)) = client.loop_next().await {
                        if let Some(i) = in_flight.iter().position(|(id, _, _)| *id == d.0) {
                            let (_, name, t) = in_flight.remove(i);
                            record(&name, &r, t);
                        }
                    }
                }
            }
            while let Some((d, r)) = client.loop_next().await {
                if let Some(i) = in_flight.iter().position(|(id, _, _)| *id == d.0) {
                    let (_, name, t) = in_flight.remove(i);
                    record(&name, &r, t);
                }
            }
            merge_into(&stats, local);
            let mut tl = timeline.lock().unwrap_or_else(|e| e.into_inner());
            if tl.len() < seconds.len() {
                tl.resize(seconds.len(), 0);
            }
            for (i, n) in seconds.into_iter().enumerate() {
                tl[i] += n;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    bar.finish_and_clear();
    let seconds = begin.elapsed().as_secs_f64();
    let per_op = per_op_stats(&stats);
    let ops: u64 = per_op.values().map(|s| s.count).sum();
    let timeline = timeline.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(BenchResult {
        workload: format!("{:?}", args.workload).to_lowercase(),
        distribution: format!("{dist:?}").to_lowercase(),
        clients,
        window: args.window.max(1),
        records,
        load_seconds,
        ops,
        errors: errors.load(Ordering::Relaxed),
        seconds,
        ops_per_sec: ops as f64 / seconds,
        per_op,
        timeline,
        disk_after_load,
        disk_after_run: data.map(disk_use),
    })
}

/// Runs a workload against Redis or etcd: one connection per client, one operation at a
/// time; a record is one value of `fields * value_size` bytes, an update rewrites it.
#[allow(
    clippy::too_many_lines,
    reason = "one measurement: connections, workers and totals share their state"
)]
pub async fn run_peer(args: &BenchArgs) -> Result<BenchResult, String> {
    use peers::Peer;
    let endpoints: Vec<String> = args
        .address
        .split(',')
        .map(|a| a.trim().to_string())
        .collect();
    let target = args.target;
    let connect = |i: usize| {
        let addr = endpoints[i % endpoints.len()].clone();
        async move {
            match target {
                Target::Etcd => Peer::etcd(&addr).await,
                _ => Peer::redis(&addr).await,
            }
            .map_err(|e| format!("cannot reach {addr}: {e}"))
        }
    };
    let records = args.records.max(1);
    let blob = vec![b'x'; args.fields.max(1) * args.value_size];
    let loading = Instant::now();
    let mut loader = connect(0).await?;
    let load = if args.existing { 0 } else { records };
    for i in 0..load {
        loader
            .put(format!("user{i:010}").as_bytes(), &blob)
            .await
            .map_err(|e| e.to_string())?;
    }
    let load_seconds = loading.elapsed().as_secs_f64();
    let ycsb = |w: char| mix(w).map(|m| m.0.to_vec()).unwrap_or_default();
    let (op_mix, default_dist): (Vec<(YcsbOp, u32)>, Distribution) = match args.workload {
        Workload::Put => (vec![(YcsbOp::Update, 100)], Distribution::Uniform),
        Workload::Get => (vec![(YcsbOp::Read, 100)], Distribution::Uniform),
        Workload::Mixed => (
            vec![(YcsbOp::Read, 50), (YcsbOp::Update, 50)],
            Distribution::Uniform,
        ),
        Workload::A => (ycsb('a'), Distribution::Zipfian),
        Workload::B => (ycsb('b'), Distribution::Zipfian),
        Workload::C => (ycsb('c'), Distribution::Zipfian),
        // Redis INCR; etcd has no increment: a read and a compare-and-swap, retried.
        Workload::AtomicAdd => (vec![(YcsbOp::Update, 100)], Distribution::Uniform),
        other => return Err(format!("workload {other:?} is measured on hyperdex only")),
    };
    let incr = matches!(args.workload, Workload::AtomicAdd);
    let dist = args.distribution.unwrap_or(default_dist);
    let chooser = Arc::new(KeyChooser::new(dist, records));
    let clients = args.clients.max(1);
    let per_client = args.ops / clients as u64;
    let stats: Arc<Mutex<BTreeMap<String, Histogram<u64>>>> = Arc::default();
    let errors = Arc::new(AtomicU64::new(0));
    let begin = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut peer = connect(c).await?;
        let (op_mix, chooser, stats, errors, blob) = (
            op_mix.clone(),
            chooser.clone(),
            stats.clone(),
            errors.clone(),
            blob.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng =
                Rng::new(0x9e37_79b9 ^ (c as u64 + 1).wrapping_mul(0x5851_f42d_4c95_7f2d));
            let mut local: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
            for _ in 0..per_client {
                let op = pick(&op_mix, &mut rng);
                let k = format!("user{:010}", chooser.next(&mut rng, records));
                let t = Instant::now();
                let ok = match op {
                    _ if incr => peer.incr(format!("{k}#n").as_bytes()).await,
                    YcsbOp::Read => peer.get(k.as_bytes()).await.map(|_| ()),
                    _ => peer.put(k.as_bytes(), &blob).await,
                };
                if ok.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                let name = match op {
                    _ if incr => "atomic_add",
                    YcsbOp::Read => "read",
                    _ => "update",
                };
                let h = local.entry(name.to_string()).or_insert_with(|| {
                    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
                });
                let _ = h.record(t.elapsed().as_micros().max(1) as u64);
            }
            merge_into(&stats, local);
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    let seconds = begin.elapsed().as_secs_f64();
    let per_op = per_op_stats(&stats);
    let ops: u64 = per_op.values().map(|s| s.count).sum();
    Ok(BenchResult {
        workload: format!("{:?}", args.workload).to_lowercase(),
        distribution: format!("{dist:?}").to_lowercase(),
        clients,
        window: 1,
        records,
        load_seconds,
        ops,
        errors: errors.load(Ordering::Relaxed),
        seconds,
        ops_per_sec: ops as f64 / seconds,
        per_op,
        timeline: Vec::new(),
        disk_after_load: None,
        disk_after_run: None,
    })
}

/// Adds one client's histograms to the shared ones.
fn merge_into(
    stats: &Mutex<BTreeMap<String, Histogram<u64>>>,
    local: BTreeMap<String, Histogram<u64>>,
) {
    let mut all = stats.lock().unwrap_or_else(|e| e.into_inner());
    for (name, h) in local {
        match all.get_mut(&name) {
            Some(existing) => {
                let _ = existing.add(&h);
            }
            None => {
                all.insert(name, h);
            }
        }
    }
}

/// Percentiles of every operation type.
fn per_op_stats(stats: &Mutex<BTreeMap<String, Histogram<u64>>>) -> BTreeMap<String, OpStats> {
    let stats = stats.lock().unwrap_or_else(|e| e.into_inner());
    stats
        .iter()
        .map(|(name, h)| {
            let stats = OpStats {
                count: h.len(),
                p50_us: h.value_at_quantile(0.50),
                p95_us: h.value_at_quantile(0.95),
                p99_us: h.value_at_quantile(0.99),
                p999_us: h.value_at_quantile(0.999),
            };
            (name.clone(), stats)
        })
        .collect()
}

pub async fn run(args: BenchArgs) -> ExitCode {
    hyperdex::cli::init_logging("warn", None);
    let dir = std::env::temp_dir().join(format!("hyperdex-bench-{}", std::process::id()));
    let result = if args.target != Target::Hyperdex {
        run_peer(&args).await
    } else {
        run_hyperdex(&args, &dir).await
    };
    let r = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    hyperdex::out!("{}", summary(&r));
    let writes = [
        (
            args.json.as_ref(),
            serde_json::to_string_pretty(&r).unwrap_or_default(),
        ),
        (args.svg.as_ref(), svg(&r)),
    ];
    for (path, text) in writes {
        if let Some(path) = path {
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}

/// Runs against this cluster (started locally with --local).
async fn run_hyperdex(args: &BenchArgs, dir: &std::path::Path) -> Result<BenchResult, String> {
    let addr = args.cluster.start(dir).await?;
    let result = run_bench(&addr, args, args.cluster.local.then_some(dir)).await;
    args.cluster.done(dir);
    result
}
