//! The `hyperdex` binary: see `hyperdex --help` and the library's `cli` module.
//!
//! Everything but `hyperdex bench` lives in the library; the benchmark (a load generator with
//! its histogram and progress-bar dependencies) lives here, behind the default feature
//! `bench`, so the library that the Python package and the simulation link carries none of it.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

#[cfg(feature = "bench")]
mod bench;

/// The daemons allocate and free small buffers on every request (frames, keys, decoded
/// objects) from several threads; mimalloc's per-thread heaps serve that with less CPU than
/// the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (hyperdex.1 and one per command) into DIR.
    Man {
        /// The directory (created if missing).
        dir: std::path::PathBuf,
    },
}

/// Writes `hyperdex.1` and `hyperdex-COMMAND.1` for every command into `dir`.
fn man_pages(dir: &std::path::Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let cmd = Cli::command();
    let mut pages = vec![("hyperdex".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands() {
        let name = format!("hyperdex-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().bin_name(name)));
    }
    for (name, page) in &pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(page.clone())
            .title(name.to_uppercase())
            .render(&mut out)?;
        std::fs::write(dir.join(format!("{name}.1")), out)?;
    }
    Ok(pages.len())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Top::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "hyperdex", &mut script);
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            return ExitCode::SUCCESS;
        }
        Top::Man { dir } => {
            return match man_pages(dir) {
                Ok(n) => {
                    hyperdex::outln!("{n} man pages written to {}", dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: cannot write man pages to {}: {e}", dir.display());
                    ExitCode::from(2)
                }
            };
        }
        _ => {}
    }
    let threads = match &cli.command {
        Top::Cluster(c) => hyperdex::cli::threads(c),
        #[cfg(feature = "bench")]
        Top::Bench(_) | Top::SearchBench(_) => None,
        Top::Completions { .. } | Top::Man { .. } => None,
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
            Top::Completions { .. } | Top::Man { .. } => ExitCode::SUCCESS,
        }
    })
}
