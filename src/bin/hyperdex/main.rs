//! The `hyperdex` binary: see `hyperdex --help` and the library's `cli` module.
//!
//! Everything but `hyperdex bench` lives in the library; the benchmark (a load generator with
//! its histogram and progress-bar dependencies) lives here, behind the default feature
//! `bench`, so the library that the Python package and the simulation link carries none of it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[cfg(feature = "bench")]
mod bench;

#[derive(Parser, Debug)]
#[command(
    name = "hyperdex",
    version,
    about = "A HyperDex-compatible searchable, replicated key-value store"
)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand, Debug)]
enum Top {
    #[command(flatten)]
    Cluster(hyperdex::cli::Command),
    /// Measure throughput and latency (against a cluster, or a local one with --local).
    #[cfg(feature = "bench")]
    Bench(bench::BenchArgs),
    /// Time selective searches through indexes against the same searches without one.
    #[cfg(feature = "bench")]
    #[command(name = "search-bench")]
    SearchBench(bench::search::SearchBenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Top::Cluster(c) => hyperdex::cli::threads(c),
        #[cfg(feature = "bench")]
        Top::Bench(_) | Top::SearchBench(_) => None,
    };
    let rt = match hyperdex::cli::runtime(threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(async move {
        match cli.command {
            Top::Cluster(c) => hyperdex::cli::run(c).await,
            #[cfg(feature = "bench")]
            Top::Bench(args) => bench::run(args).await,
            #[cfg(feature = "bench")]
            Top::SearchBench(args) => bench::search::run(args).await,
        }
    })
}
