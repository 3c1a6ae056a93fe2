//! `sweep`: runs many simulation seeds with a progress bar and prints a summary.
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" cargo run --release -p hyperdex-sim --target-dir target/sim \
//!     --bin sweep -- --seeds 10000 [--from 1]
//! ```
//! A failing seed is printed with its explanation and the command that replays it.

#[cfg(madsim)]
fn main() {
    use hyperdex_sim::run::RunOptions;
    use hyperdex_sim::sweep::{run_seed, Summary};
    use indicatif::{ProgressBar, ProgressStyle};

    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let seeds = arg("--seeds", 1000);
    let from = arg("--from", 1);
    hyperdex_sim::init_logging();
    let opts = RunOptions::default();
    let bar = ProgressBar::new(seeds);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds, {per_sec}, eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    #[allow(clippy::disallowed_methods)] // the sweep reports wall time, outside the simulation
    let started = std::time::Instant::now();
    let mut summary = Summary::default();
    for seed in from..from + seeds {
        let report = run_seed(seed, &opts);
        summary.add(seed, &report);
        if !report.ok() {
            bar.println(format!(
                "seed {seed} FAILED:\n{}\nreplay: MADSIM_TEST_SEED={seed} RUST_LOG=hyperdex=debug RUSTFLAGS=\"--cfg madsim\" \
                 cargo test -p hyperdex-sim --target-dir target/sim --test linearizability -- --nocapture",
                report.explain()
            ));
        }
        bar.set_message(format!("{} violations", summary.failed.len()));
        bar.inc(1);
    }
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seeds:       {} ({from}..{}) in {secs:.1} s, {:.1} seeds/s",
        summary.seeds,
        from + seeds - 1,
        summary.seeds as f64 / secs
    );
    println!(
        "operations:  {} checked, {} with unknown outcome",
        summary.operations, summary.unknown
    );
    println!("faults:");
    for (f, n) in &summary.faults {
        println!("  {f:<22} {n}");
    }
    println!("violations:  {} {:?}", summary.failed.len(), summary.failed);
    if !summary.failed.is_empty() {
        std::process::exit(1);
    }
}

#[cfg(not(madsim))]
fn main() {
    eprintln!("the sweep runs only in the simulation: build with RUSTFLAGS=\"--cfg madsim\" --target-dir target/sim");
    std::process::exit(2);
}
