//! Running many seeds outside the test harness: one fresh simulated runtime per seed.

use std::collections::BTreeMap;

use crate::nemesis::Fault;
use crate::run::{run, RunOptions, RunReport};

/// Runs `opts` on seed `seed` in a fresh simulated runtime.
pub fn run_seed(seed: u64, opts: &RunOptions) -> RunReport {
    let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let opts = opts.clone();
    rt.block_on(run(opts))
}

/// Totals over a sweep.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub seeds: u64,
    pub operations: u64,
    pub unknown: u64,
    pub faults: BTreeMap<Fault, u64>,
    pub failed: Vec<u64>,
}

impl Summary {
    pub fn add(&mut self, seed: u64, r: &RunReport) {
        self.seeds += 1;
        self.operations += r.operations as u64;
        self.unknown += r.unknown as u64;
        for (f, n) in &r.nemesis.counts {
            *self.faults.entry(*f).or_default() += n;
        }
        if !r.ok() {
            self.failed.push(seed);
        }
    }
}
