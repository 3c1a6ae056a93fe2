//! `sweep`: runs many simulation seeds with a progress bar and prints a summary.
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" cargo run --profile sim -p hyperdex-sim --target-dir target/sim \
//!     --bin sweep -- --seeds 10000 [--from 1]
//! ```
//! Seeds run in child processes of 100 seeds each, as many at once as there are cores
//! (`--jobs`), so memory stays flat however long the sweep. The summary counts every
//! [probe](mod@hyperdex::probe) and names those no seed reached. A failing seed is printed with
//! its explanation and the command that replays it.

#[cfg(madsim)]
const USAGE: &str = "usage: sweep [--seeds N] [--from FIRST] [--jobs PROCESSES]";

/// The command line.
#[cfg(madsim)]
struct Args {
    seeds: u64,
    from: u64,
    jobs: u64,
    chunk: bool,
}

/// Parses the command line. Anything unexpected ends the program with the usage line rather
/// than silently running a default sweep.
#[cfg(madsim)]
fn parse_args(args: &[String]) -> Args {
    let fail = |why: String| -> ! {
        eprintln!("sweep: {why}\n{USAGE}");
        std::process::exit(2);
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let mut parsed = Args {
        seeds: 1000,
        from: 1,
        jobs: cores,
        chunk: false,
    };
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> u64 {
            match it.next().map(|v| v.parse::<u64>()) {
                Some(Ok(n)) if n > 0 => n,
                _ => fail(format!("{name} wants a positive number")),
            }
        };
        match a.as_str() {
            "--seeds" => parsed.seeds = number("--seeds"),
            "--from" => parsed.from = number("--from"),
            "--jobs" => parsed.jobs = number("--jobs"),
            "--chunk" => parsed.chunk = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => fail(format!("unknown argument {other:?}")),
        }
    }
    parsed
}

/// Runs `seeds` seeds from `from` in this process and prints one line per seed, then one
/// line with the probe counts.
#[cfg(madsim)]
fn run_chunk(from: u64, seeds: u64) {
    use hyperdex_sim::run::RunOptions;
    use hyperdex_sim::sweep::{replay_command, run_seed};
    let opts = RunOptions::default();
    // PLANTED_BUG=Name sweeps with that bug planted (to find the faults and seeds that catch
    // it faster than the planted-bug test can).
    if let Ok(name) = std::env::var("PLANTED_BUG") {
        match hyperdex::bugs::Bug::ALL
            .into_iter()
            .find(|b| format!("{b:?}") == name)
        {
            Some(bug) => hyperdex::bugs::plant(&[bug]),
            None => {
                eprintln!("PLANTED_BUG: no bug is called {name:?}");
                std::process::exit(2);
            }
        }
    }
    for seed in from..from + seeds {
        let report = run_seed(seed, &opts);
        if !report.ok() {
            eprintln!(
                "seed {seed} FAILED:\n{}\n{}",
                report.explain(),
                replay_command(seed)
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
    let probes: Vec<String> = hyperdex::probe::counts()
        .iter()
        .map(|(p, n)| format!("{p}={n}"))
        .collect();
    println!("probes {}", probes.join(","));
}

/// What the chunks reported so far.
#[cfg(madsim)]
#[derive(Default)]
struct Tally {
    done: u64,
    operations: u64,
    unknown: u64,
    faults: std::collections::BTreeMap<String, u64>,
    probes: std::collections::BTreeMap<String, u64>,
    failed: Vec<String>,
}

#[cfg(madsim)]
impl Tally {
    /// Adds `name=count,...` pairs to `into`.
    fn add_counts(into: &mut std::collections::BTreeMap<String, u64>, list: Option<&&str>) {
        for f in list.map(|s| s.split(',')).into_iter().flatten() {
            if let Some((name, count)) = f.split_once('=') {
                *into.entry(name.to_string()).or_default() += count.parse::<u64>().unwrap_or(0);
            }
        }
    }

    /// Takes one line of a chunk's output; the seed it reports, if it reports one.
    fn line(&mut self, line: &str) -> Option<u64> {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.first() {
            Some(&"probes") => {
                Tally::add_counts(&mut self.probes, parts.get(1));
                None
            }
            Some(&"seed") if parts.len() >= 5 => {
                let seed = parts[1].parse().ok()?;
                self.done += 1;
                if parts[2] != "ok" {
                    self.failed.push(parts[1].to_string());
                }
                self.operations += parts[3].parse::<u64>().unwrap_or(0);
                self.unknown += parts[4].parse::<u64>().unwrap_or(0);
                Tally::add_counts(&mut self.faults, parts.get(5));
                Some(seed)
            }
            _ => None,
        }
    }

    fn print(&self, from: u64, seeds: u64, secs: f64, jobs: u64) {
        println!(
            "seeds:       {} ({from}..{}) in {secs:.1} s on {jobs} processes, {:.1} seeds/s",
            self.done,
            from + seeds - 1,
            self.done as f64 / secs
        );
        println!(
            "operations:  {} checked, {} with unknown outcome",
            self.operations, self.unknown
        );
        println!("faults:");
        for (f, n) in &self.faults {
            println!("  {f:<22} {n}");
        }
        println!("probes:");
        for (p, n) in &self.probes {
            println!("  {p:<42} {n}");
        }
        let never: Vec<&String> = self
            .probes
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(p, _)| p)
            .collect();
        println!("never hit:   {} {never:?}", never.len());
        println!("violations:  {} {:?}", self.failed.len(), self.failed);
    }
}

/// Runs the seeds `from..from + n` in a child process, sending its lines to `lines`; the seed
/// it died on, if it panicked (the seed after the last it reported).
#[cfg(madsim)]
fn run_child(
    exe: &std::path::Path,
    from: u64,
    n: u64,
    lines: &std::sync::mpsc::Sender<String>,
) -> Option<u64> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let args = [
        "--chunk",
        "--from",
        &from.to_string(),
        "--seeds",
        &n.to_string(),
    ];
    let mut child = match Command::new(exe).args(args).stdout(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start a sweep chunk: {e}");
            std::process::exit(2);
        }
    };
    let mut last = from - 1;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(seed) = line.strip_prefix("seed ").and_then(|l| l.split(' ').next()) {
                last = seed.parse().unwrap_or(last);
            }
            let _ = lines.send(line);
        }
    }
    match child.wait() {
        Ok(status) if status.success() => None,
        _ => Some(last + 1),
    }
}

#[cfg(madsim)]
fn main() {
    use std::collections::VecDeque;
    use std::sync::{mpsc, Mutex};

    use indicatif::{ProgressBar, ProgressStyle};

    let args: Vec<String> = std::env::args().collect();
    let Args {
        seeds,
        from,
        jobs,
        chunk,
    } = parse_args(&args);
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
    // Chunks of seeds, each run by a child process; a chunk that dies on a seed goes back on
    // the queue from the seed after it.
    const CHUNK: u64 = 100;
    let queue: Mutex<VecDeque<(u64, u64)>> = Mutex::new(
        (from..from + seeds)
            .step_by(CHUNK as usize)
            .map(|f| (f, CHUNK.min(from + seeds - f)))
            .collect(),
    );
    let (tx, rx) = mpsc::channel::<String>();
    let mut tally = Tally::default();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            let (tx, queue, exe) = (tx.clone(), &queue, &exe);
            s.spawn(move || loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some((f, n)) = next else { break };
                if let Some(seed) = run_child(exe, f, n, &tx) {
                    let _ = tx.send(format!("seed {seed} PANICKED 0 0"));
                    if seed + 1 < f + n {
                        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                        q.push_back((seed + 1, f + n - seed - 1));
                    }
                }
            });
        }
        drop(tx);
        for line in rx {
            if tally.line(&line).is_some() {
                bar.set_message(format!("{} violations", tally.failed.len()));
                bar.inc(1);
            }
        }
    });
    bar.finish();
    tally.print(from, seeds, started.elapsed().as_secs_f64(), jobs);
    if !tally.failed.is_empty() || tally.done < seeds {
        std::process::exit(1);
    }
}

#[cfg(not(madsim))]
fn main() {
    eprintln!("the sweep runs only in the simulation: build with RUSTFLAGS=\"--cfg madsim\" --target-dir target/sim");
    std::process::exit(2);
}
