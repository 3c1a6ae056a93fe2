//! `hyperdex search-bench`: selective searches through secondary indexes and through
//! subspaces against the same searches on attributes with neither (every object of every
//! region examined), on one data set.
//!
//! Each record has a category (`cat`, 10,000 values, about `--records / 10,000` objects each),
//! a number (`num`, a permutation of `0..records`, so a range of 100 numbers matches 100
//! objects) and 100 bytes of padding; `catx` and `numx` hold the same values without an index,
//! and `cats` and `nums` the same values again, each the attribute of a subspace (`--subspaces
//! 2`, the default; 1: `cats` only; 0: none, to measure what value-dependent chaining costs
//! writes). The searches: equality on the category, a range of 100 numbers, each through the
//! index, through the subspace and on the copy, `--repeat` times with a different value each
//! time; and a count of everything. Prints the load's rate, the median and 90th percentile of
//! each search, and the ratios of scan to index and to subspace.

#![allow(clippy::disallowed_methods)] // the benchmark measures wall time on purpose

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use hyperdex_model::{Check, Operation, Predicate, Value};

use hyperdex::admin::Admin;
use hyperdex::client::{Client, ClientOptions};

#[derive(Args, Debug, Clone)]
pub struct SearchBenchArgs {
    #[command(flatten)]
    pub cluster: super::ClusterArgs,
    /// Objects to load.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Times each search runs (with a different value each time).
    #[arg(long, default_value_t = 20)]
    pub repeat: u64,
    /// Search the space a previous run loaded instead of loading it again.
    #[arg(long)]
    pub existing: bool,
    /// How many of `cats` and `nums` are the attribute of a subspace (0, 1 or 2).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub subspaces: u8,
}

/// The space, with `subspaces` subspace clauses.
fn space(subspaces: u8) -> String {
    let clauses = ["subspace cats", "subspace nums"];
    format!(
        "space searchbench key k attributes string cat, int num, string pad, string catx, \
         int numx, string cats, int nums {} index cat index num tolerate 1 failure",
        clauses[..usize::from(subspaces)].join(" ")
    )
}
const CATEGORIES: u64 = 10_000;

/// The category and number of record `i` (a fixed pseudo-random spread, reproducible).
fn fields(i: u64, records: u64) -> (Value, i64) {
    let cat = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % CATEGORIES;
    // 2,654,435,761 is prime, so multiplying by it modulo `records` is a permutation.
    let num = (u128::from(i) * 2_654_435_761 % u128::from(records)) as i64;
    (Value::string(format!("c{cat:05}")), num)
}

/// Loads the records, 256 puts outstanding, printing the rate of each tenth to stderr (the
/// rate as the data grows).
async fn load(client: &Client, records: u64) {
    let pad = Value::String(vec![b'p'; 100]);
    let mut outstanding = 0;
    let tenth = (records / 10).max(1);
    let mut since = Instant::now();
    for i in 0..records {
        if i > 0 && i % tenth == 0 {
            let rate = tenth as f64 / since.elapsed().as_secs_f64();
            eprintln!("loaded {i} of {records} ({rate:.0} puts/s over the last {tenth})");
            since = Instant::now();
        }
        let (cat, num) = fields(i, records);
        client.start(Operation::put(
            "searchbench",
            Value::string(format!("user{i:010}")),
            vec![
                ("cat", cat.clone()),
                ("num", Value::Int(num)),
                ("pad", pad.clone()),
                ("catx", cat.clone()),
                ("numx", Value::Int(num)),
                ("cats", cat),
                ("nums", Value::Int(num)),
            ],
        ));
        outstanding += 1;
        if outstanding >= 256 {
            let _ = client.loop_next().await;
            outstanding -= 1;
        }
    }
    while client.loop_next().await.is_some() {}
}

/// Median and 90th percentile of the times `run` takes, and the results of the last one.
async fn measure<F, Fut>(repeat: u64, mut run: F) -> Result<(Duration, Duration, u64), String>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<u64, String>>,
{
    let mut times = Vec::new();
    let mut found = 0;
    for r in 0..repeat.max(1) {
        let t = Instant::now();
        found = run(r).await?;
        times.push(t.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.9), found))
}

async fn bench(addr: &str, args: &SearchBenchArgs) -> Result<String, String> {
    let opts = ClientOptions {
        timeout: Duration::from_secs(600),
        ..ClientOptions::default()
    };
    let admin = Admin::connect_addr(addr, opts.clone())
        .await
        .map_err(|e| e.to_string())?;
    let client = Client::connect_with(addr, opts)
        .await
        .map_err(|e| e.to_string())?;
    let records = args.records.max(CATEGORIES);
    let mut out = String::new();
    if !args.existing {
        let _ = admin.rm_space("searchbench").await;
        admin
            .add_space(&space(args.subspaces))
            .await
            .map_err(|e| e.to_string())?;
        admin
            .wait_until_stable(Duration::from_secs(60))
            .await
            .map_err(|e| e.to_string())?;
        let t = Instant::now();
        load(&client, records).await;
        let secs = t.elapsed().as_secs_f64();
        out += &format!(
            "loaded {records} objects with {} subspace(s) in {secs:.1} s ({:.0} puts/s)\n",
            args.subspaces,
            records as f64 / secs
        );
    }
    out += "search                               median ms    p90 ms   matches\n";
    let mut medians = Vec::new();
    let searches = [
        ("equality, indexed (cat)", "cat", false),
        ("equality, no index (catx)", "catx", false),
        ("range of 100, indexed (num)", "num", true),
        ("range of 100, no index (numx)", "numx", true),
        ("equality, subspace (cats)", "cats", false),
        ("range of 100, subspace (nums)", "nums", true),
    ];
    for (name, attr, range) in searches.into_iter().take(4 + usize::from(args.subspaces)) {
        let client = &client;
        let (p50, p90, found) = measure(args.repeat, |r| async move {
            let step = records / args.repeat.max(1);
            let predicate = if range {
                let lo = (r * step) as i64;
                Predicate::Range(Value::Int(lo), Value::Int(lo + 99))
            } else {
                Predicate::Equals(Value::string(format!("c{:05}", (r * 37) % CATEGORIES)))
            };
            let objects = client
                .search_all("searchbench", &[Check::new(attr, predicate)])
                .await
                .map_err(|e| e.to_string())?;
            Ok(objects.len() as u64)
        })
        .await?;
        out += &format!(
            "{name:<36} {:>9.2} {:>9.2} {found:>9}\n",
            p50.as_secs_f64() * 1e3,
            p90.as_secs_f64() * 1e3
        );
        medians.push(p50.as_secs_f64());
    }
    let (p50, p90, n) = measure(args.repeat.min(5), |_| async {
        client
            .count_all("searchbench", &[])
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    out += &format!(
        "{:<36} {:>9.2} {:>9.2} {n:>9}\n",
        "count of everything",
        p50.as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3
    );
    out += &format!(
        "index speedup (median, scan / index): equality {:.1}x, range {:.1}x\n",
        medians[1] / medians[0],
        medians[3] / medians[2]
    );
    let subspace = |i: usize, scan: usize| medians.get(i).map(|m| medians[scan] / m);
    if let Some(e) = subspace(4, 1) {
        out += &format!("subspace speedup (median, scan / subspace): equality {e:.1}x");
        if let Some(r) = subspace(5, 3) {
            out += &format!(", range {r:.1}x");
        }
        out += "\n";
    }
    Ok(out)
}

pub async fn run(args: SearchBenchArgs) -> ExitCode {
    hyperdex::cli::init_logging("warn", None);
    let dir = std::env::temp_dir().join(format!("hyperdex-search-bench-{}", std::process::id()));
    let result = match args.cluster.start(&dir).await {
        Ok(addr) => bench(&addr, &args).await,
        Err(e) => Err(e),
    };
    args.cluster.done(&dir);
    match result {
        Ok(text) => {
            hyperdex::out!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
