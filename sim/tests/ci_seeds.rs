//! The CI seeds: whole-cluster runs under the full fault mix on seeds `SIM_FIRST_SEED..`
//! (default 1), `SIM_SEEDS` of them (default 200), spread over the machine's cores. Every
//! run's history must be linearizable, replicas must converge, and the cluster must recover
//! (see `run.rs`); and the 200 CI seeds together must reach every probe of
//! `hyperdex::probe::required_in_ci`, so a change that stops the fault mix from reaching a
//! rare branch fails here instead of silently testing less.
#![cfg(madsim)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hyperdex::probe;
use hyperdex_sim::run::RunOptions;
use hyperdex_sim::sweep::{replay_command, run_seed};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn the_ci_seeds_are_clean_and_reach_the_required_probes() {
    hyperdex_sim::init_logging();
    let first = env_u64("SIM_FIRST_SEED", 1);
    let count = env_u64("SIM_SEEDS", 200);
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicU64::new(first);
    let failures = Mutex::new(Vec::new());
    let opts = RunOptions::default();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= first + count {
                    break;
                }
                let why = match catch_unwind(AssertUnwindSafe(|| run_seed(seed, &opts))) {
                    Ok(report) if report.ok() => continue,
                    Ok(report) => report.explain(),
                    Err(_) => "the run panicked (output above)".to_string(),
                };
                let mut f = failures.lock().unwrap_or_else(|e| e.into_inner());
                f.push(format!(
                    "seed {seed} failed:\n{why}\n{}",
                    replay_command(seed)
                ));
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    let counts = probe::counts();
    for (p, n) in &counts {
        eprintln!("probe {p:<42} {n}");
    }
    if first == 1 && count >= 200 {
        let missed: Vec<_> = probe::required_in_ci()
            .filter(|p| counts.get(p).copied().unwrap_or(0) == 0)
            .collect();
        assert!(
            missed.is_empty(),
            "the CI seeds no longer reach these rare branches: {missed:?}"
        );
    }
}
