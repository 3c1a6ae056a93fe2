//! Probes: marks on the rare branches of the protocol (a write refused for skipping a
//! version, a lease that ran out, a retried write answered from its record...). Under the
//! simulation each [`probe!`](crate::probe!) counts how often its branch ran, so a sweep can
//! report which rare branches its seeds never reached and the CI seeds can be required to
//! reach a listed set; a fault mix that stops reaching them has stopped testing them.
//! Outside the simulation a probe compiles to nothing.

/// Every probe in the code, by name, and whether the CI seeds (1..=200 under the full fault
/// mix) must reach it; the others are reached by longer sweeps, or by none (see
/// docs/simulation.md). A unit test keeps this list and the code in step.
pub const ALL: &[(&str, bool)] = &[
    ("chain.gap_dropped", true),
    ("chain.resent", true),
    ("chain.forged_sender_dropped", false),
    ("chain.ack_below_held", false),
    ("chain.stale_version_dropped", true),
    ("chain.early_message_held", true),
    ("daemon.chain_from_stranger_dropped", true),
    ("head.read_past_pending", true),
    ("head.read_from_cache", true),
    ("head.read_waits_for_held", false),
    ("head.retry_answered_from_record", true),
    ("head.expired_request_refused", false),
    ("record.below_low_seq_skipped", true),
    ("record.expired_dropped", true),
    ("records.compacted", true),
    ("records.compacted_by_count", true),
    ("records.beyond_limit_dropped", true),
    ("records.kept_apart", true),
    ("replica.no_lease_refused", true),
    ("replica.stale_config_refused", true),
    ("replica.search_refused", true),
    ("replica.search_waits_for_held", false),
    ("replica.left_chain_with_pending", true),
    ("replica.became_tail_with_pending", true),
    ("replica.pending_resent_after_reconfigure", true),
    ("replica.pending_promoted_at_start", true),
    ("subspace.entry_forgotten", true),
    ("subspace.stored_write_rechecked", true),
    ("subspace.held_of_unverified_skipped", false),
    ("subspace.version_given_again", false),
    ("coordinator.region_taken_back", false),
    ("transfer.completed", true),
    ("transfer.rewound", true),
    ("transfer.abandoned_mid_way", true),
    ("transfer.unchanged_kept", true),
    ("transfer.stale_removed", false),
    ("transfer.unchanged_refused", false),
    ("transfer.live_keys_full", false),
    ("transfer.window_after_done", false),
    ("transfer.rate_limited", false),
    ("transfer.changed_live_kept", false),
    ("coordinator.server_failed", true),
    ("coordinator.only_copy_refused", true),
    ("coordinator.heartbeat_fenced", true),
    ("coordinator.joiner_promoted", true),
    ("coordinator.member_replaced", true),
    ("client.coordinator_unreachable", false),
    ("client.space_removed_mid_call", true),
    ("client.retried_after_reconfigure", true),
    ("index.built", true),
    ("search.read_through_index", true),
    ("search.candidates_looked_up", true),
    ("storage.torn_tail_dropped", true),
    ("storage.log_replayed", true),
    ("storage.checkpointed_records_skipped", true),
    ("storage.crash_before_checkpoint_commit", false),
    ("storage.crash_before_old_log_emptied", false),
    ("syncer.records_coalesced", true),
    ("actor.record_deferred", true),
];

/// The probes the CI seeds must all reach.
pub fn required_in_ci() -> impl Iterator<Item = &'static str> {
    ALL.iter().filter(|(_, r)| *r).map(|(p, _)| *p)
}

/// Marks a rare branch (see the [module docs](mod@crate::probe)); the name must be in
/// [`ALL`](crate::probe::ALL).
#[macro_export]
macro_rules! probe {
    ($name:literal) => {
        $crate::probe::hit($name)
    };
}

#[cfg(madsim)]
static HITS: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Counts one pass through the probe `name` (simulation only; nothing otherwise).
#[inline]
pub fn hit(name: &'static str) {
    #[cfg(madsim)]
    {
        let mut hits = HITS.lock().unwrap_or_else(|e| e.into_inner());
        *hits.entry(name).or_default() += 1;
    }
    #[cfg(not(madsim))]
    let _ = name;
}

/// How often each probe ran in this process so far, every probe listed (zero if never).
#[cfg(madsim)]
pub fn counts() -> std::collections::BTreeMap<&'static str, u64> {
    let hits = HITS.lock().unwrap_or_else(|e| e.into_inner());
    ALL.iter()
        .map(|&(p, _)| (p, hits.get(p).copied().unwrap_or(0)))
        .collect()
}

/// Configurations seen by daemons and clients, by (cluster, version): the digest of the first
/// seen, and every version seen again with other contents. Per thread: a simulated run runs
/// on a thread of its own, so runs side by side (or one that panicked) never mix.
#[cfg(madsim)]
type Seen = (
    std::collections::BTreeMap<(u64, u64), u64>,
    std::collections::BTreeMap<u64, Vec<String>>,
);

#[cfg(madsim)]
thread_local! {
    static CONFIGS: std::cell::RefCell<Seen> = std::cell::RefCell::default();
}

/// Records a configuration a daemon or client received (simulation only; nothing otherwise).
/// A version must mean the same configuration everywhere, whichever coordinator issued it;
/// `configs_seen` (simulation only) reports any that did not.
#[inline]
pub fn config_seen(config: &crate::config::Config) {
    #[cfg(madsim)]
    {
        let digest = crate::config::fnv1a(&postcard::to_allocvec(config).unwrap_or_default());
        CONFIGS.with_borrow_mut(|(seen, conflicts)| {
            let first = *seen
                .entry((config.cluster, config.version))
                .or_insert(digest);
            if first != digest {
                conflicts.entry(config.cluster).or_default().push(format!(
                    "configuration version {} was received with two different contents; one is:\n{config}",
                    config.version
                ));
            }
        });
    }
    #[cfg(not(madsim))]
    let _ = config;
}

/// How many versions of `cluster`'s configuration this thread's run saw, and the conflicts
/// among them; forgets them (simulation only).
#[cfg(madsim)]
pub fn configs_seen(cluster: u64) -> (usize, Vec<String>) {
    CONFIGS.with_borrow_mut(|(seen, conflicts)| {
        let versions: Vec<(u64, u64)> = seen
            .range((cluster, 0)..=(cluster, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in &versions {
            seen.remove(k);
        }
        (
            versions.len(),
            conflicts.remove(&cluster).unwrap_or_default(),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    fn probes_in(dir: &Path, found: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                probes_in(&path, found);
            } else if path.extension().is_some_and(|x| x == "rs") && !path.ends_with("probe.rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for part in text.split("probe!(\"").skip(1) {
                    if let Some((name, _)) = part.split_once('"') {
                        found.insert(name.to_string());
                    }
                }
            }
        }
    }

    #[test]
    fn the_list_names_exactly_the_probes_in_the_code() {
        let mut found = BTreeSet::new();
        probes_in(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        let listed: BTreeSet<String> = super::ALL.iter().map(|(s, _)| s.to_string()).collect();
        assert_eq!(found, listed, "probe!() uses and probe::ALL differ");
        assert_eq!(listed.len(), super::ALL.len(), "a probe listed twice");
    }
}
