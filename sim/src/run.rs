//! One simulated run: start a cluster, run the workload while the nemesis injects faults,
//! heal everything, wait until the cluster is stable, audit, and check.
//!
//! The checks after every run:
//! 1. the history (the workload's operations plus a final read of every key) is
//!    linearizable against the model, so no acknowledged write is missing at the end;
//! 2. the replicas of every region hold the same objects at the same versions, with the same
//!    retry records;
//! 3. every configuration version daemons and clients received had the same contents
//!    wherever it came from (whichever coordinator led when it was issued);
//! 4. no node panicked (a panic in any simulated node fails the run).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyperdex::admin::Admin;
use hyperdex::client::{fetch_config, ClientOptions};
use hyperdex::config::Timing;
use hyperdex::config::{Config, RegionId, ServerState};
use hyperdex::daemon::record::{load, region_prefix, StoredObject, REGION_PREFIX_LEN};
use hyperdex::daemon::retry_records;
use hyperdex::rt;
use hyperdex::storage::{Store, Table};
use hyperdex_model::history::{check, CheckStats};
use hyperdex_model::Object;

use crate::cluster::{admin_options, SimCluster, COORDINATOR};
use crate::liveness;
use crate::nemesis::{self, Fault, NemesisLog};
use crate::ops::WIDE;
use crate::rogue::{self, RogueLog};
use crate::workload::{run_client, Recorder, WorkloadOptions, READER, SPACE};

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub daemons: usize,
    pub clients: usize,
    pub workload: WorkloadOptions,
    pub faults: Vec<Fault>,
    /// How many daemons may be down at once (the space tolerates 1 failure).
    pub tolerate: usize,
    /// Whether the rogue node sends garbage and forged messages during the run.
    pub rogue: bool,
    pub timing: Timing,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            daemons: 4,
            clients: 4,
            workload: WorkloadOptions::default(),
            faults: faults_from_env().unwrap_or_else(|| Fault::ALL.to_vec()),
            tolerate: 1,
            rogue: true,
            timing: Timing::default(),
        }
    }
}

/// The faults named in `SIM_FAULTS` (`split-brain,kill-daemon`), to replay or sweep a
/// narrower mix than the full one.
fn faults_from_env() -> Option<Vec<Fault>> {
    let names = std::env::var("SIM_FAULTS").ok()?;
    let faults: Vec<Fault> = names
        .split(',')
        .filter_map(|n| {
            let f = Fault::ALL.into_iter().find(|f| f.to_string() == n.trim());
            if f.is_none() {
                eprintln!("SIM_FAULTS: no fault is called {n:?}");
            }
            f
        })
        .collect();
    (!faults.is_empty()).then_some(faults)
}

/// What one run did and found.
#[derive(Debug)]
pub struct RunReport {
    pub operations: usize,
    pub unknown: usize,
    /// A hash of the whole history: equal seeds give equal hashes.
    pub history_hash: u64,
    pub nemesis: NemesisLog,
    pub rogue: RogueLog,
    pub check: Result<CheckStats, String>,
    pub convergence: Result<usize, String>,
    /// How many configuration versions were received, or the version received with two
    /// different contents.
    pub configs: Result<usize, String>,
    pub stable: bool,
    /// Whether every operation after healing got a definite answer in time.
    pub liveness: Result<(), String>,
    /// The configuration at the end, rendered as `show-config` prints it.
    pub final_config: String,
    /// The whole recorded history.
    pub history: hyperdex_model::history::History,
}

impl RunReport {
    pub fn ok(&self) -> bool {
        self.check.is_ok()
            && self.convergence.is_ok()
            && self.configs.is_ok()
            && self.stable
            && self.liveness.is_ok()
            && self.nemesis.violations.is_empty()
    }

    /// A human-readable account of a failed run.
    pub fn explain(&self) -> String {
        let mut s = String::new();
        if !self.stable {
            s.push_str("the cluster did not become stable after healing; final configuration:\n");
            s.push_str(&self.final_config);
        }
        if let Err(e) = &self.check {
            s.push_str(e);
            s.push('\n');
        }
        if let Err(e) = &self.liveness {
            s.push_str(e);
            s.push('\n');
        }
        if let Err(e) = &self.convergence {
            s.push_str(e);
            s.push_str("\nfinal configuration:\n");
            s.push_str(&self.final_config);
        }
        if let Err(e) = &self.configs {
            s.push_str(e);
            s.push('\n');
        }
        for v in &self.nemesis.violations {
            s.push_str("an administrative change was not in force when acknowledged: ");
            s.push_str(v);
            s.push('\n');
        }
        s.push_str("fault schedule:\n");
        for e in &self.nemesis.events {
            s.push_str("  ");
            s.push_str(e);
            s.push('\n');
        }
        s
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    hyperdex::config::fnv1a(bytes)
}

/// Runs one whole simulation with `opts` on the current (seeded) madsim runtime.
pub async fn run(opts: RunOptions) -> RunReport {
    let mut cluster = SimCluster::start(opts.daemons, opts.clients, opts.timing).await;
    add_space(&cluster).await;
    let rec = Recorder::new(opts.clients);
    let fresh_node = cluster
        .clients
        .get(READER as usize)
        .or(cluster.clients.first());
    if let Some(node) = fresh_node {
        let prefill = crate::fresh::prefill(
            opts.workload.client.clone(),
            rec.clone(),
            COORDINATOR.into(),
        );
        let _ = node.spawn(prefill).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles: Vec<_> = cluster
        .clients
        .iter()
        .enumerate()
        .map(|(i, node)| {
            node.spawn(run_client(
                i as u64,
                opts.workload.clone(),
                rec.clone(),
                COORDINATOR.into(),
            ))
        })
        .collect();
    if let Some(node) = fresh_node {
        let fresh = crate::fresh::run(
            opts.workload.client.clone(),
            rec.clone(),
            COORDINATOR.into(),
        );
        handles.push(node.spawn(fresh));
    }
    let rogue = opts.rogue.then(|| {
        let targets = cluster.server_addrs();
        cluster.rogue.spawn(rogue::run(targets, stop.clone()))
    });
    let waiter = {
        let stop = stop.clone();
        async move {
            for h in handles {
                let _ = h.await;
            }
            stop.store(true, Ordering::SeqCst);
        }
    };
    let (log, ()) = tokio::join!(
        nemesis::run(&mut cluster, &opts.faults, opts.tolerate, stop.clone()),
        waiter
    );
    let rogue = match rogue {
        Some(h) => h.await.unwrap_or_default(),
        None => RogueLog::default(),
    };
    let stable = wait_until_stable(&cluster, opts.daemons).await;
    // Let retransmissions settle writes whose clients gave up.
    cluster.on_control(rt::sleep(Duration::from_secs(3))).await;
    let liveness = liveness::check(&cluster, opts.workload.keys, &opts.workload.client, &rec).await;
    let mut report = report(&cluster, &rec, (log, rogue), stable).await;
    report.liveness = liveness;
    report
}

async fn add_space(cluster: &SimCluster) {
    for space in [SPACE, WIDE] {
        // A space the simulation cannot add would leave every run waiting for it.
        assert!(
            hyperdex_model::parse_space(space).is_ok(),
            "the simulated space does not parse: {space}"
        );
    }
    cluster
        .on_control(async {
            for space in [SPACE, WIDE] {
                loop {
                    if let Ok(a) = Admin::connect_addr(COORDINATOR, admin_options()).await {
                        if a.add_space(space).await.is_ok() {
                            break;
                        }
                    }
                    rt::sleep(Duration::from_millis(100)).await;
                }
            }
        })
        .await;
}

/// After healing: waits until every daemon is available, every region has its full chain
/// and no join, and the configuration stayed the same for two seconds (a daemon restarted at
/// the end of the nemesis registers again a moment later and starts a join).
async fn wait_until_stable(cluster: &SimCluster, daemons: usize) -> bool {
    let since: Arc<std::sync::Mutex<Option<(u64, rt::Instant)>>> = Arc::default();
    cluster
        .wait_until(Duration::from_secs(120), move || {
            let since = since.clone();
            async move {
                let Ok(c) = fetch_config(COORDINATOR, &ClientOptions::default()).await else {
                    return false;
                };
                let settled = c
                    .servers
                    .values()
                    .filter(|s| s.state == ServerState::Available)
                    .count()
                    == daemons
                    && c.spaces.values().all(|s| {
                        s.joining.iter().all(Option::is_none)
                            && s.chains
                                .iter()
                                .all(|ch| ch.len() == (s.schema.tolerate as usize + 1).min(daemons))
                    });
                let mut since = since.lock().unwrap_or_else(|e| e.into_inner());
                match *since {
                    Some((v, t)) if settled && v == c.version => {
                        rt::now().duration_since(t) >= Duration::from_secs(2)
                    }
                    _ => {
                        *since = settled.then(|| (c.version, rt::now()));
                        false
                    }
                }
            }
        })
        .await
}

/// Audits the replicas and checks the history.
async fn report(
    cluster: &SimCluster,
    rec: &Recorder,
    (nemesis, rogue): (NemesisLog, RogueLog),
    stable: bool,
) -> RunReport {
    let config = cluster
        .on_control(async {
            fetch_config(COORDINATOR, &ClientOptions::default())
                .await
                .ok()
        })
        .await;
    let convergence = match &config {
        Some(c) => converged(cluster, c).and_then(|n| {
            let audit = crate::subspaces::placed(cluster, c)?;
            tracing::info!(
                compared = audit.compared,
                extra = audit.extra,
                "subspace regions hold every object placed there"
            );
            Ok(n + audit.compared)
        }),
        None => Err("cannot fetch the final configuration".into()),
    };
    let final_config = config.as_ref().map(ToString::to_string).unwrap_or_default();
    let configs = match &config {
        Some(c) => match hyperdex::probe::configs_seen(c.cluster) {
            (versions, conflicts) if conflicts.is_empty() => Ok(versions),
            (_, conflicts) => Err(conflicts.join("\n")),
        },
        None => Err("cannot fetch the final configuration".into()),
    };
    let history = rec
        .history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let unknown = history
        .entries
        .iter()
        .filter(|e| !matches!(e.outcome, hyperdex_model::history::Outcome::Returned { .. }))
        .count();
    let history_hash = fnv(format!("{:?}", history.entries).as_bytes());
    let check = check(&history).map_err(|v| v.explanation);
    RunReport {
        operations: history.entries.len(),
        unknown,
        history_hash,
        nemesis,
        rogue,
        check,
        convergence,
        configs,
        stable,
        liveness: Ok(()),
        final_config,
        history,
    }
}

/// One server's copy of a region: key → (version, object, the (client, sequence number) of
/// every retry record it keeps).
type Replica = BTreeMap<Vec<u8>, (u64, Option<Object>, BTreeSet<(u64, u64)>)>;

/// Every member of every chain holds the same objects at the same versions, with the same
/// retry records (a member missing one would apply that write again if it became head and
/// the client retried). Returns how many objects were compared.
fn converged(cluster: &SimCluster, config: &Config) -> Result<usize, String> {
    let mut compared = 0;
    for space in config.spaces.values() {
        for index in 0..space.chains.len() {
            let region = RegionId {
                space: space.id,
                index: index as u32,
            };
            let mut copies: Vec<(String, Replica)> = Vec::new();
            for member in config.chain(region) {
                let Some(info) = config.server(*member) else {
                    continue;
                };
                let Some(server) = cluster.daemons.iter().find(|d| d.addr == info.addr) else {
                    return Err(format!(
                        "server {member} at {} is not a simulated daemon",
                        info.addr
                    ));
                };
                let mut objects = BTreeMap::new();
                let entries = server
                    .store
                    .scan_prefix(Table::Objects, &region_prefix(region))
                    .map_err(|e| e.to_string())?;
                for (k, _) in entries {
                    let kb = k[REGION_PREFIX_LEN..].to_vec();
                    let stored: StoredObject =
                        load(&server.store, region, &kb).map_err(|e| e.to_string())?;
                    let records = stored.dedupe.iter().map(|d| (d.client, d.seq)).collect();
                    objects.insert(kb, (stored.version, stored.object, records));
                }
                retry_records::check_region(&server.store, region)
                    .map_err(|e| format!("region {region} at {}: {e}", server.name))?;
                copies.push((server.name.clone(), objects));
            }
            if let Some((first_name, first)) = copies.first() {
                for (name, other) in &copies[1..] {
                    if other != first {
                        return Err(format!(
                            "region {region}: {name} and {first_name} differ:\n  {name}: {other:?}\n  {first_name}: {first:?}"
                        ));
                    }
                }
                compared += first.len();
            }
        }
    }
    Ok(compared)
}
