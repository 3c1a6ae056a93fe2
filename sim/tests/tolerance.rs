//! Changing a space's fault tolerance while clients write and daemons die: raised replicas
//! are filled by state transfer, lowered ones leave from the tail, and every run stays
//! linearizable, converges and ends at the tolerance it started with.
#![cfg(madsim)]

use hyperdex_sim::nemesis::Fault;
use hyperdex_sim::run::RunOptions;
use hyperdex_sim::sweep::run_seed;

#[test]
fn tolerance_changes_under_failures_lose_nothing() {
    let opts = RunOptions {
        faults: vec![Fault::ChangeTolerance, Fault::KillDaemon, Fault::CrashDisk],
        ..RunOptions::default()
    };
    let mut raised = 0;
    for seed in 1..=8 {
        let report = run_seed(seed, &opts);
        assert!(report.ok(), "seed {seed}:\n{}", report.explain());
        raised += report
            .nemesis
            .counts
            .get(&Fault::ChangeTolerance)
            .copied()
            .unwrap_or(0);
        let events = report.nemesis.events.join("\n");
        if events.contains("tolerance 1 -> 2") {
            assert!(
                events.contains("tolerance back to 1"),
                "seed {seed}:\n{events}"
            );
        }
        assert!(
            report.final_config.contains("tolerate 1 failures"),
            "seed {seed}:\n{}",
            report.final_config
        );
    }
    assert!(raised >= 8, "the tolerance was raised only {raised} times");
}
