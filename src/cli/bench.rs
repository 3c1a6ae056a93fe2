//! `hyperdex bench`: a load generator against a running cluster, or against a local one it
//! starts itself (`--local`: a coordinator and three daemons with `tolerate 1 failure`).
//!
//! Workloads over `--keys` keys in space `bench` (`key k attributes string v, int n`):
//! `put`, `get` (after loading every key), `cond-put` (each put conditional on the value it
//! replaces, on the same keys as `put`), `atomic-add` (counters, `--keys 1` for one hot
//! counter), and `mixed` (50% get, 50% put). Each of `--clients` clients keeps `--window`
//! operations outstanding. Prints throughput and latency percentiles; `--json FILE` writes them
//! as JSON too.

#![allow(clippy::disallowed_methods)] // the benchmark measures wall time on purpose

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use hyperdex_model::{Check, NumOp, Operation, Predicate, Reply, Value};

use super::local::{start, LocalArgs};
use crate::admin::Admin;
use crate::client::{Client, ClientOptions, Deferred};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    Put,
    Get,
    CondPut,
    AtomicAdd,
    Mixed,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Coordinator host (ignored with --local).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Coordinator port (ignored with --local).
    #[arg(long, default_value_t = 1982)]
    pub port: u16,
    /// Start a local cluster (coordinator and 3 daemons) for the run.
    #[arg(long)]
    pub local: bool,
    #[arg(long, value_enum, default_value = "put")]
    pub workload: Workload,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Outstanding operations per client.
    #[arg(long, default_value_t = 1)]
    pub window: usize,
    /// Operations in all.
    #[arg(long, default_value_t = 10_000)]
    pub ops: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Bytes in each value.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// What a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    pub workload: String,
    pub clients: usize,
    pub window: usize,
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
}

fn key(i: u64) -> Value {
    Value::string(format!("key{i:08}"))
}

fn op_for(w: Workload, i: u64, keys: u64, value: &Value) -> Operation {
    let k = key(i % keys);
    match w {
        Workload::Put => Operation::put("bench", k, vec![("v", value.clone())]),
        Workload::Get => Operation::get("bench", k),
        // Conditional on the value a previous put wrote: the check passes, so this measures
        // what a condition costs on top of a put.
        Workload::CondPut => Operation::cond_put(
            "bench",
            k,
            vec![Check::new("v", Predicate::Equals(value.clone()))],
            vec![("v", value.clone())],
        ),
        Workload::AtomicAdd => {
            Operation::atomic(NumOp::Add, "bench", k, vec![("n", Value::Int(1))])
        }
        Workload::Mixed if i.is_multiple_of(2) => Operation::get("bench", k),
        Workload::Mixed => Operation::put("bench", k, vec![("v", value.clone())]),
    }
}

/// Runs the benchmark against the coordinator at `addr` and returns its result.
pub async fn run_bench(addr: &str, args: &BenchArgs) -> Result<BenchResult, String> {
    let opts = ClientOptions::default();
    let admin = Admin::connect_addr(addr, opts.clone())
        .await
        .map_err(|e| e.to_string())?;
    let _ = admin.rm_space("bench").await;
    admin
        .add_space("space bench key k attributes string v, int n tolerate 1 failure")
        .await
        .map_err(|e| e.to_string())?;
    admin
        .wait_until_stable(Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    let value = Value::String(vec![b'x'; args.value_size]);
    // Load every key first (gets, cond-puts and counters need them).
    let loader = Client::connect_with(addr, opts.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut started = Vec::new();
    for i in 0..args.keys {
        started.push(loader.start(Operation::put("bench", key(i), vec![("v", value.clone())])));
        if started.len() >= 256 {
            while loader.loop_next().await.is_some() {}
            started.clear();
        }
    }
    while loader.loop_next().await.is_some() {}

    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?,
    ));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let per_client = args.ops / args.clients.max(1) as u64;
    let begin = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients.max(1) {
        let client = Client::connect_with(addr, opts.clone())
            .await
            .map_err(|e| e.to_string())?;
        let (histogram, errors, value) = (histogram.clone(), errors.clone(), value.clone());
        let (workload, keys, window) = (args.workload, args.keys, args.window.max(1));
        tasks.push(tokio::spawn(async move {
            let mut local =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let mut in_flight: Vec<(Deferred, Instant)> = Vec::new();
            let base = c as u64 * per_client;
            let mut record = |reply: Reply, since: Instant| {
                if matches!(reply, Reply::Error(..)) {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let _ = local.record(since.elapsed().as_micros().max(1) as u64);
            };
            for i in 0..per_client {
                let op = op_for(workload, base + i, keys, &value);
                if window == 1 {
                    let t = Instant::now();
                    let r = client.call(op).await;
                    record(r, t);
                    continue;
                }
                in_flight.push((client.start(op), Instant::now()));
                if in_flight.len() >= window {
                    if let Some((d, r)) = client.loop_next().await {
                        if let Some(p) = in_flight.iter().position(|(x, _)| *x == d) {
                            let (_, t) = in_flight.remove(p);
                            record(r, t);
                        }
                    }
                }
            }
            while let Some((d, r)) = client.loop_next().await {
                if let Some(p) = in_flight.iter().position(|(x, _)| *x == d) {
                    let (_, t) = in_flight.remove(p);
                    record(r, t);
                }
            }
            let mut h = histogram.lock().unwrap_or_else(|e| e.into_inner());
            let _ = h.add(&local);
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    let seconds = begin.elapsed().as_secs_f64();
    let h = histogram.lock().unwrap_or_else(|e| e.into_inner());
    let ops = h.len();
    Ok(BenchResult {
        workload: format!("{:?}", args.workload).to_lowercase(),
        clients: args.clients,
        window: args.window,
        ops,
        errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        seconds,
        ops_per_sec: ops as f64 / seconds,
        p50_us: h.value_at_quantile(0.50),
        p95_us: h.value_at_quantile(0.95),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
    })
}

pub async fn run(args: BenchArgs) -> ExitCode {
    super::init_logging("warn", None);
    let dir = std::env::temp_dir().join(format!("hyperdex-bench-{}", std::process::id()));
    let addr = if args.local {
        let local = LocalArgs {
            daemons: 3,
            data: Some(dir.clone()),
            listen: "127.0.0.1".into(),
            port: 0,
        };
        match start(&local, &dir).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        format!("{}:{}", args.host, args.port)
    };
    let result = run_bench(&addr, &args).await;
    if args.local {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match result {
        Ok(r) => {
            println!(
                "{} clients={} window={} ops={} errors={} in {:.2} s: {:.0} ops/s, latency p50 {} us, p95 {} us, p99 {} us, p99.9 {} us",
                r.workload, r.clients, r.window, r.ops, r.errors, r.seconds, r.ops_per_sec, r.p50_us, r.p95_us, r.p99_us, r.p999_us
            );
            if let Some(path) = &args.json {
                let text = serde_json::to_string_pretty(&r).unwrap_or_default();
                if let Err(e) = std::fs::write(path, text) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
