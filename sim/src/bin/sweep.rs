//! `sweep`: runs many simulation seeds with a progress bar and prints a summary.
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" cargo run --release -p hyperdex-sim --target-dir target/sim \
//!     --bin sweep -- --seeds 10000 [--from 1]
//! ```
//! Seeds run in child processes of 200 seeds each, so memory stays flat however long the
//! sweep. A failing seed is printed with its explanation and the command that replays it.

#[cfg(madsim)]
const USAGE: &str = "usage: sweep [--seeds N] [--from FIRST]";

/// Parsed command line: (seeds, from, chunk). Anything unexpected ends the program with the
/// usage line rather than silently running a default sweep.
#[cfg(madsim)]
fn parse_args(args: &[String]) -> (u64, u64, bool) {
    let fail = |why: String| -> ! {
        eprintln!("sweep: {why}\n{USAGE}");
        std::process::exit(2);
    };
    let (mut seeds, mut from, mut chunk) = (1000, 1, false);
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> u64 {
            match it.next().map(|v| v.parse::<u64>()) {
                Some(Ok(n)) if n > 0 => n,
                _ => fail(format!("{name} wants a positive number")),
            }
        };
        match a.as_str() {
            "--seeds" => seeds = number("--seeds"),
            "--from" => from = number("--from"),
            "--chunk" => chunk = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => fail(format!("unknown argument {other:?}")),
        }
    }
    (seeds, from, chunk)
}

/// Runs `seeds` seeds from `from` in this process and prints one `chunk` line per seed.
#[cfg(madsim)]
fn run_chunk(from: u64, seeds: u64) {
    use hyperdex_sim::run::RunOptions;
    use hyperdex_sim::sweep::run_seed;
    let opts = RunOptions::default();
    for seed in from..from + seeds {
        let report = run_seed(seed, &opts);
        if !report.ok() {
            eprintln!(
                "seed {seed} FAILED:\n{}\nreplay: MADSIM_TEST_SEED={seed} RUST_LOG=hyperdex=debug RUSTFLAGS=\"--cfg madsim\" \
                 cargo test -p hyperdex-sim --target-dir target/sim --test linearizability -- --nocapture",
                report.explain()
            );
        }
        let faults: Vec<String> = report
            .nemesis
            .counts
            .iter()
            .map(|(f, n)| format!("{f}={n}"))
            .collect();
        println!(
            "seed {seed} {} {} {} {}",
            if report.ok() { "ok" } else { "FAILED" },
            report.operations,
            report.unknown,
            faults.join(",")
        );
    }
}

#[cfg(madsim)]
fn main() {
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    use indicatif::{ProgressBar, ProgressStyle};

    let args: Vec<String> = std::env::args().collect();
    let (seeds, from, chunk) = parse_args(&args);
    hyperdex_sim::init_logging();
    if chunk {
        run_chunk(from, seeds);
        return;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot find the sweep binary: {e}");
            std::process::exit(2);
        }
    };
    let bar = ProgressBar::new(seeds);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds, {per_sec}, eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    #[allow(clippy::disallowed_methods)] // the sweep reports wall time, outside the simulation
    let started = std::time::Instant::now();
    let (mut done, mut operations, mut unknown) = (0u64, 0u64, 0u64);
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    let mut failed = Vec::new();
    const CHUNK: u64 = 200;
    let mut next = from;
    while next < from + seeds {
        let n = CHUNK.min(from + seeds - next);
        let child = Command::new(&exe)
            .args([
                "--chunk",
                "--from",
                &next.to_string(),
                "--seeds",
                &n.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cannot start a sweep chunk: {e}");
                std::process::exit(2);
            }
        };
        let mut last = next - 1;
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let parts: Vec<&str> = line.split_whitespace().collect();
                if parts.len() < 5 || parts[0] != "seed" {
                    continue;
                }
                last = parts[1].parse().unwrap_or(last);
                done += 1;
                if parts[2] != "ok" {
                    failed.push(parts[1].to_string());
                }
                operations += parts[3].parse::<u64>().unwrap_or(0);
                unknown += parts[4].parse::<u64>().unwrap_or(0);
                for f in parts.get(5).map(|s| s.split(',')).into_iter().flatten() {
                    if let Some((name, count)) = f.split_once('=') {
                        *faults.entry(name.to_string()).or_default() +=
                            count.parse::<u64>().unwrap_or(0);
                    }
                }
                bar.set_message(format!("{} violations", failed.len()));
                bar.inc(1);
            }
        }
        match child.wait() {
            Ok(status) if status.success() => next += n,
            _ => {
                // The chunk died (a panic in the harness) on the seed after the last it
                // reported: count that seed as failed and go on after it.
                let seed = last + 1;
                eprintln!("seed {seed} FAILED: the run panicked (output above)");
                failed.push(format!("{seed} (panicked)"));
                done += 1;
                bar.inc(1);
                next = seed + 1;
            }
        }
    }
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seeds:       {done} ({from}..{}) in {secs:.1} s, {:.1} seeds/s",
        from + seeds - 1,
        done as f64 / secs
    );
    println!("operations:  {operations} checked, {unknown} with unknown outcome");
    println!("faults:");
    for (f, n) in &faults {
        println!("  {f:<22} {n}");
    }
    println!("violations:  {} {:?}", failed.len(), failed);
    if !failed.is_empty() || done < seeds {
        std::process::exit(1);
    }
}

#[cfg(not(madsim))]
fn main() {
    eprintln!("the sweep runs only in the simulation: build with RUSTFLAGS=\"--cfg madsim\" --target-dir target/sim");
    std::process::exit(2);
}
