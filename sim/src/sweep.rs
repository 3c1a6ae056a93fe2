//! Running many seeds outside the test harness: one fresh simulated runtime per seed.

use crate::run::{run, RunOptions, RunReport};

/// The command that replays `seed` (under the full fault mix, or `SIM_FAULTS`) with full
/// tracing, as a failing run prints it.
pub fn replay_command(seed: u64) -> String {
    let faults = std::env::var("SIM_FAULTS")
        .map(|f| format!("SIM_FAULTS={f} "))
        .unwrap_or_default();
    format!(
        "replay with: {faults}RUST_LOG=hyperdex=debug RUSTFLAGS=\"--cfg madsim\" cargo run --profile sim \
         -p hyperdex-sim --target-dir target/sim --bin sweep -- --seeds 1 --from {seed} --jobs 1"
    )
}

/// Runs `opts` on seed `seed` in a fresh simulated runtime, on a fresh thread.
///
/// The thread matters: the `raft` crate draws from the thread's random generator (its draws
/// are replaced, see `coordinator::consensus`), which seeds itself from the simulation's
/// numbers on first use and again after every 64 KiB it hands out. On a thread of its own,
/// that happens at the same points of every run of a seed; on a thread shared with earlier
/// seeds it would depend on them.
pub fn run_seed(seed: u64, opts: &RunOptions) -> RunReport {
    let opts = opts.clone();
    let run_it = move || {
        let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.block_on(run(opts))
    };
    // A thread outside the simulation, holding the whole simulated run.
    #[allow(clippy::disallowed_methods)]
    let thread = std::thread::spawn(run_it);
    match thread.join() {
        Ok(report) => report,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
