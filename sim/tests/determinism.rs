//! The same seed gives the same run, byte for byte: the whole history is hashed.
#![cfg(madsim)]

use hyperdex_sim::run::RunOptions;
use hyperdex_sim::sweep::run_seed;

#[test]
fn a_seed_replays_exactly() {
    let opts = RunOptions::default();
    for seed in [1, 7, 42] {
        let a = run_seed(seed, &opts);
        let b = run_seed(seed, &opts);
        assert_eq!(
            a.history_hash, b.history_hash,
            "seed {seed} gave two different histories"
        );
        assert_eq!(
            a.nemesis.events, b.nemesis.events,
            "seed {seed} gave two different fault schedules"
        );
        assert!(
            a.operations > 500,
            "a run checks a real workload ({} operations)",
            a.operations
        );
    }
    let (a, b) = (run_seed(1, &opts), run_seed(2, &opts));
    assert_ne!(
        a.history_hash, b.history_hash,
        "different seeds explore different runs"
    );
}
