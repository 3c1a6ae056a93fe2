//! Running many seeds outside the test harness: one fresh simulated runtime per seed.

use crate::run::{run, RunOptions, RunReport};

/// Runs `opts` on seed `seed` in a fresh simulated runtime.
pub fn run_seed(seed: u64, opts: &RunOptions) -> RunReport {
    let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let opts = opts.clone();
    rt.block_on(run(opts))
}
