//! One whole-cluster run under the full fault mix, through madsim's test harness: for
//! replaying a seed (`MADSIM_TEST_SEED`, with `RUST_LOG` for tracing) and for madsim's
//! determinism check (`MADSIM_TEST_CHECK_DETERMINISM=1`). The history must be linearizable,
//! replicas must converge, and the cluster must recover. The CI seeds run in `ci_seeds.rs`.
#![cfg(madsim)]

use hyperdex_sim::run::{run, RunOptions};
use hyperdex_sim::sweep::replay_command;

#[madsim::test]
async fn every_run_is_linearizable_under_faults() {
    hyperdex_sim::init_logging();
    let report = run(RunOptions::default()).await;
    assert!(
        report.ok(),
        "seed failed:\n{}\n{}",
        report.explain(),
        replay_command(madsim::runtime::Handle::current().seed())
    );
}
