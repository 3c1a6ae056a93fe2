//! Running many seeds outside the test harness: one fresh simulated runtime per seed.

use crate::run::{run, RunOptions, RunReport};

/// The command that replays `seed` with full tracing, as a failing run prints it.
pub fn replay_command(seed: u64) -> String {
    format!(
        "replay with: MADSIM_TEST_SEED={seed} RUST_LOG=hyperdex=debug RUSTFLAGS=\"--cfg madsim\" \
         cargo test -p hyperdex-sim --target-dir target/sim --test linearizability -- --nocapture"
    )
}

/// Runs `opts` on seed `seed` in a fresh simulated runtime.
pub fn run_seed(seed: u64, opts: &RunOptions) -> RunReport {
    let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let opts = opts.clone();
    rt.block_on(run(opts))
}
