//! Whole-cluster runs under the full fault mix; every run's history must be linearizable,
//! replicas must converge, and the cluster must recover. `MADSIM_TEST_NUM` sets how many
//! seeds run (the README's test command runs 200), `MADSIM_TEST_SEED` the first seed.
#![cfg(madsim)]

use hyperdex_sim::run::{run, RunOptions};

fn replay_hint() -> String {
    let seed = madsim::runtime::Handle::current().seed();
    format!(
        "replay with: MADSIM_TEST_SEED={seed} RUST_LOG=hyperdex=debug RUSTFLAGS=\"--cfg madsim\" \
         cargo test -p hyperdex-sim --target-dir target/sim --test linearizability -- --nocapture"
    )
}

#[madsim::test]
async fn every_run_is_linearizable_under_faults() {
    hyperdex_sim::init_logging();
    let report = run(RunOptions::default()).await;
    assert!(
        report.ok(),
        "seed failed:\n{}\n{}",
        report.explain(),
        replay_hint()
    );
}
