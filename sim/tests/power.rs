//! Power failures of every daemon at once, under load: whatever was acknowledged had been
//! synced on every replica, so nothing acknowledged is lost and the cluster comes back.
#![cfg(madsim)]

use hyperdex_sim::nemesis::Fault;
use hyperdex_sim::run::RunOptions;
use hyperdex_sim::sweep::run_seed;

#[test]
fn whole_cluster_power_failures_lose_nothing_acknowledged() {
    let opts = RunOptions {
        faults: vec![Fault::PowerFailure, Fault::LatencySpike],
        ..RunOptions::default()
    };
    let first: u64 = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut failures = 0;
    for seed in first..first + 8 {
        let report = run_seed(seed, &opts);
        assert!(report.ok(), "seed {seed}:\n{}", report.explain());
        failures += report
            .nemesis
            .counts
            .get(&Fault::PowerFailure)
            .copied()
            .unwrap_or(0);
    }
    assert!(failures >= 8, "only {failures} power failures");
}
