//! The nemesis: a seeded schedule of faults injected while the workload runs.
//!
//! Every 200–1500 ms of virtual time it first undoes faults whose time is up (restarts dead
//! nodes, heals partitions, restores the network), then injects one new fault drawn from the
//! enabled [`Fault`] kinds. At most `tolerate` daemons are down at once. Each fault is logged
//! with its virtual time, so a failing seed's report shows the schedule that broke it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyperdex::rt;
use madsim::rand::seq::SliceRandom;
use madsim::rand::{thread_rng, Rng};

use crate::admin;
use crate::cluster::SimCluster;
use crate::workload::SPACE_NAME;

/// The kinds of fault the nemesis can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// Kill a daemon; restart it later on its disk.
    KillDaemon,
    /// Kill a daemon and lose its unsynced writes; restart it later.
    CrashDisk,
    /// Cut one server (daemon or coordinator) off from every other node.
    Isolate,
    /// Cut one daemon off from the coordinator and the other daemons, but not from clients:
    /// a head that still hears clients but must stop answering them.
    IsolateFromServers,
    /// Split the daemons into two groups that cannot reach each other; the coordinator and
    /// the clients still reach all of them.
    SplitDaemons,
    /// Cut the links from one server to some others in one direction only: it hears them,
    /// they do not hear it (or the reverse).
    OneWay,
    /// Make links between daemons fail on 0.5–5% of messages: the message is lost, or it and
    /// whatever is queued behind it are lost and the connection is reset; either way what
    /// follows arrives before what was lost is sent again.
    LinkResets,
    /// Drop 2–10% of packets (the simulated TCP retransmits, so this is delay).
    PacketLoss,
    /// Latency of 10–80 ms on every message.
    LatencySpike,
    /// Kill one of the three coordinators (any, the leader included) and restart it on its
    /// disk.
    RestartCoordinator,
    /// Kill one coordinator, lose every write its disk had not synced, and restart it.
    CrashCoordinatorDisk,
    /// Freeze a server (daemon or coordinator) for up to three leases, then let it go on
    /// with its old state and timers, as a long garbage collection or a stopped VM would.
    Pause,
    /// Raise the space's fault tolerance by one (new replicas join by state transfer) and
    /// lower it back later (the extra replicas leave from the tail).
    ChangeTolerance,
    /// `server-kill` of a live daemon through the coordinator; it registers again by itself
    /// and rejoins by state transfer.
    AdminKill,
    /// `server-forget` of a live daemon; it is rebuilt on an empty disk and joins as a new
    /// server.
    AdminForget,
    /// A second space added, written, and removed while the workload runs, checking that
    /// each change is in force once acknowledged.
    SpaceChurn,
    /// A power failure of every daemon at once: each loses its unsynced writes, and all come
    /// back together later. Nothing acknowledged may be lost: it was synced everywhere.
    PowerFailure,
    /// The index searches read removed, and added back later: daemons forget it, scan
    /// meanwhile, and rebuild it under load.
    IndexChurn,
    /// One coordinator (the leader, when there is one) and one or two daemons cut off from
    /// the other coordinators and daemons; clients still reach every daemon, and half of them
    /// that coordinator. The minority side must stop granting leases before the majority
    /// replaces its daemons.
    SplitBrain,
}

impl Fault {
    pub const ALL: [Fault; 19] = [
        Fault::KillDaemon,
        Fault::CrashDisk,
        Fault::Isolate,
        Fault::IsolateFromServers,
        Fault::SplitDaemons,
        Fault::OneWay,
        Fault::LinkResets,
        Fault::PacketLoss,
        Fault::LatencySpike,
        Fault::RestartCoordinator,
        Fault::CrashCoordinatorDisk,
        Fault::Pause,
        Fault::ChangeTolerance,
        Fault::AdminKill,
        Fault::AdminForget,
        Fault::SpaceChurn,
        Fault::PowerFailure,
        Fault::IndexChurn,
        Fault::SplitBrain,
    ];
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Fault::KillDaemon => "kill-daemon",
            Fault::CrashDisk => "crash-disk",
            Fault::Isolate => "isolate",
            Fault::IsolateFromServers => "isolate-from-servers",
            Fault::SplitDaemons => "split-daemons",
            Fault::OneWay => "one-way",
            Fault::LinkResets => "link-resets",
            Fault::PacketLoss => "packet-loss",
            Fault::LatencySpike => "latency-spike",
            Fault::RestartCoordinator => "restart-coordinator",
            Fault::CrashCoordinatorDisk => "crash-coordinator-disk",
            Fault::Pause => "pause",
            Fault::ChangeTolerance => "change-tolerance",
            Fault::AdminKill => "admin-kill",
            Fault::AdminForget => "admin-forget",
            Fault::SpaceChurn => "space-churn",
            Fault::IndexChurn => "index-churn",
            Fault::PowerFailure => "power-failure",
            Fault::SplitBrain => "split-brain",
        };
        f.write_str(s)
    }
}

/// What the nemesis did.
#[derive(Clone, Debug, Default)]
pub struct NemesisLog {
    pub events: Vec<String>,
    pub counts: BTreeMap<Fault, u64>,
    /// Writes lost from disks by `CrashDisk` (unsynced: never acknowledged, or commits whose
    /// pending records are durable).
    pub lost_unsynced: usize,
    /// When the nemesis started (event times are relative to it).
    pub start: Option<rt::Instant>,
    /// Whether the last tolerance change was acknowledged.
    tolerance_changed: bool,
    /// When the daemons last came back from a power failure.
    power_restored: Option<rt::Instant>,
    /// Daemons taken out by an administrative change, counted as down until their hold ends.
    out: BTreeSet<usize>,
    /// Promises of acknowledged administrative changes that were broken.
    pub violations: Vec<String>,
}

/// How long after a power failure before another may happen (the cluster gets to recover).
const POWER_QUIET: Duration = Duration::from_secs(5);

impl NemesisLog {
    /// Records an event with its virtual time.
    fn stamp(&mut self, what: String) {
        let start = *self.start.get_or_insert_with(rt::now);
        let t = rt::now().duration_since(start).as_millis();
        self.events.push(format!("{t:>6} ms  {what}"));
    }
}

enum Undo {
    Resume(madsim::task::NodeId),
    BackIn(usize),
    Nothing,
    RestartDaemon(usize),
    RestartDaemons(Vec<usize>),
    RestartCoordinator(usize),
    Heal,
    Network,
    Tolerance(u32),
    Index,
}

/// Asks the coordinator (from the control node) to set the simulated space's tolerance,
/// trying for up to `patience` of virtual time; whether it was done.
async fn set_tolerance(cluster: &SimCluster, tolerate: u32, patience: Duration) -> bool {
    admin::with_patience(cluster, patience, move |a| async move {
        a.fault_tolerance(SPACE_NAME, tolerate).await
    })
    .await
}

/// `server-kill` (or `server-forget`) of a live daemon, back in the count after `hold`.
async fn admin_remove(
    cluster: &mut SimCluster,
    forget: bool,
    hold: Duration,
    log: &mut NemesisLog,
) -> Option<(rt::Instant, Undo)> {
    let up: Vec<usize> = (0..cluster.daemons.len())
        .filter(|&i| cluster.daemons[i].up && !log.out.contains(&i))
        .collect();
    let i = up[thread_rng().gen_range(0..up.len())];
    // Out of the count until it is back (it may be well before the hold ends).
    log.out.insert(i);
    let how = if forget { "forget" } else { "kill" };
    match admin::remove_live(cluster, i, forget).await {
        Some(id) => log.stamp(format!("server-{how} of daemon{} (server {id})", i + 1)),
        None => log.stamp(format!("server-{how} of daemon{} not acknowledged", i + 1)),
    }
    Some((rt::now() + hold, Undo::BackIn(i)))
}

/// Removes the simulated space's index, to be added back at `until` (always: even an
/// unanswered request may have been applied).
async fn remove_index(
    cluster: &SimCluster,
    until: rt::Instant,
    log: &mut NemesisLog,
) -> Option<(rt::Instant, Undo)> {
    if admin::set_index(cluster, false, Duration::from_millis(500)).await {
        log.stamp("index removed".into());
    }
    Some((until, Undo::Index))
}

/// Injects faults from `kinds` until `stop` is set, then undoes everything.
pub async fn run(
    cluster: &mut SimCluster,
    kinds: &[Fault],
    tolerate: usize,
    stop: Arc<AtomicBool>,
) -> NemesisLog {
    let mut log = NemesisLog {
        start: Some(rt::now()),
        ..NemesisLog::default()
    };
    let rates: Vec<String> = cluster
        .clock_rates
        .iter()
        .map(|(name, r)| format!("{name} {:+.2}%", r * 100.0))
        .collect();
    log.stamp(format!("clock rates: {}", rates.join(", ")));
    let mut undo: Vec<(rt::Instant, Undo)> = Vec::new();
    while !stop.load(Ordering::SeqCst) && !kinds.is_empty() {
        let wait = thread_rng().gen_range(200..1500);
        rt::sleep(Duration::from_millis(wait)).await;
        let now = rt::now();
        let (due, later): (Vec<_>, Vec<_>) = undo.into_iter().partition(|(t, _)| *t <= now);
        undo = later;
        for (_, u) in due {
            if let Some(again) = apply_undo(cluster, u, &mut log).await {
                undo.push((rt::now(), again));
            }
        }
        let fault = kinds[thread_rng().gen_range(0..kinds.len())];
        let hold = Duration::from_millis(thread_rng().gen_range(300..3000));
        let (scheduled, injected) = inject(cluster, fault, tolerate, hold, &undo, &mut log).await;
        if injected {
            *log.counts.entry(fault).or_default() += 1;
        }
        undo.extend(scheduled);
    }
    let (mut tolerance, mut index) = (None, false);
    for (_, u) in undo {
        match u {
            Undo::Tolerance(t) => tolerance = Some(t),
            Undo::Index => index = true,
            u => {
                let _ = apply_undo(cluster, u, &mut log).await;
            }
        }
    }
    cluster.heal();
    rt::knobs::set_link_faults(0);
    cluster.set_packet_loss(0.0);
    cluster.set_latency(Duration::from_millis(1)..Duration::from_millis(10));
    if let Some(t) = tolerance {
        // Everything is back up: this must go through.
        let done = set_tolerance(cluster, t, Duration::from_secs(30)).await;
        assert!(done, "the coordinator never took the tolerance back to {t}");
        log.stamp(format!("tolerance back to {t}"));
    }
    if index {
        let done = admin::set_index(cluster, true, Duration::from_secs(30)).await;
        assert!(done, "the coordinator never took the index back");
        log.stamp("index added back".into());
    }
    log
}

/// Injects one fault if it can be injected now (at most `tolerate` daemons down, one
/// partition at a time...): the undo to schedule, and whether the fault was injected.
async fn inject(
    cluster: &mut SimCluster,
    fault: Fault,
    tolerate: usize,
    hold: Duration,
    undo: &[(rt::Instant, Undo)],
    log: &mut NemesisLog,
) -> (Option<(rt::Instant, Undo)>, bool) {
    let scheduled = inject_one(cluster, fault, tolerate, hold, undo, log).await;
    let injected = match &scheduled {
        Some((_, Undo::Tolerance(_))) => log.tolerance_changed,
        other => other.is_some(),
    };
    (scheduled, injected)
}

async fn inject_one(
    cluster: &mut SimCluster,
    fault: Fault,
    tolerate: usize,
    hold: Duration,
    undo: &[(rt::Instant, Undo)],
    log: &mut NemesisLog,
) -> Option<(rt::Instant, Undo)> {
    let now = rt::now();
    let down = (0..cluster.daemons.len())
        .filter(|&i| !cluster.daemons[i].up || log.out.contains(&i))
        .count();
    let isolated = undo.iter().any(|(_, u)| matches!(u, Undo::Heal));
    match fault {
        Fault::KillDaemon | Fault::CrashDisk if down < tolerate => {
            let up: Vec<usize> = (0..cluster.daemons.len())
                .filter(|&i| cluster.daemons[i].up)
                .collect();
            let i = up[thread_rng().gen_range(0..up.len())];
            if fault == Fault::CrashDisk {
                let lost = cluster.crash_disk(i);
                log.lost_unsynced += lost;
                log.stamp(format!(
                    "crash disk of daemon{} ({lost} unsynced writes lost)",
                    i + 1
                ));
            } else {
                cluster.kill_daemon(i);
                log.stamp(format!("kill daemon{}", i + 1));
            }
            Some((now + hold, Undo::RestartDaemon(i)))
        }
        Fault::SplitBrain if !isolated && cluster.coordinators.iter().all(|c| c.up) => {
            Some((now + hold, split_brain(cluster, hold, log).await))
        }
        Fault::Isolate | Fault::IsolateFromServers | Fault::SplitDaemons | Fault::OneWay
            if !isolated =>
        {
            Some((now + hold, partition(cluster, fault, hold, log)))
        }
        Fault::LinkResets | Fault::PacketLoss | Fault::LatencySpike => {
            degrade(cluster, fault, log);
            Some((now + hold, Undo::Network))
        }
        Fault::ChangeTolerance if !undo.iter().any(|(_, u)| matches!(u, Undo::Tolerance(_))) => {
            let base = tolerate as u32;
            let done = set_tolerance(cluster, base + 1, Duration::from_millis(500)).await;
            if done {
                log.stamp(format!("tolerance {} -> {}", base, base + 1));
            }
            log.tolerance_changed = done;
            // Even an unanswered request may have been applied: always set it back.
            Some((now + hold, Undo::Tolerance(base)))
        }
        Fault::Pause if !undo.iter().any(|(_, u)| matches!(u, Undo::Resume(_))) => {
            pause_one(cluster, log)
        }
        Fault::AdminKill | Fault::AdminForget if down < tolerate => {
            admin_remove(cluster, fault == Fault::AdminForget, hold, log).await
        }
        Fault::IndexChurn if !undo.iter().any(|(_, u)| matches!(u, Undo::Index)) => {
            remove_index(cluster, now + hold, log).await
        }
        Fault::SpaceChurn => {
            let (what, broken) = admin::churn_space(cluster).await;
            log.stamp(what);
            log.violations.extend(broken);
            Some((rt::now(), Undo::Nothing))
        }
        Fault::PowerFailure
            if down == 0 && log.power_restored.is_none_or(|t| now >= t + POWER_QUIET) =>
        {
            let all: Vec<usize> = (0..cluster.daemons.len()).collect();
            let lost: usize = all.iter().map(|&i| cluster.crash_disk(i)).sum();
            log.lost_unsynced += lost;
            log.stamp(format!(
                "power failure of every daemon ({lost} unsynced writes lost)"
            ));
            Some((
                now + hold.min(Duration::from_millis(1500)),
                Undo::RestartDaemons(all),
            ))
        }
        // One coordinator down at a time: three tolerate one failure.
        Fault::RestartCoordinator | Fault::CrashCoordinatorDisk
            if cluster.coordinators.iter().all(|c| c.up) =>
        {
            let i = kill_coordinator(cluster, fault == Fault::CrashCoordinatorDisk, log).await;
            Some((
                now + hold.min(Duration::from_millis(1500)),
                Undo::RestartCoordinator(i),
            ))
        }
        _ => None,
    }
}

/// Kills one coordinator (the leader half the time), losing its unsynced writes when `crash`;
/// returns which.
async fn kill_coordinator(cluster: &mut SimCluster, crash: bool, log: &mut NemesisLog) -> usize {
    let leader = if thread_rng().gen_bool(0.5) {
        cluster.leader().await
    } else {
        None
    };
    let i = leader.unwrap_or_else(|| thread_rng().gen_range(0..cluster.coordinators.len()));
    cluster.kill_coordinator(i);
    if crash {
        let lost = cluster.coordinators[i].store.crash();
        log.lost_unsynced += lost;
        log.stamp(format!(
            "crash disk of coordinator{} ({lost} unsynced writes lost)",
            i + 1
        ));
    } else {
        log.stamp(format!("kill coordinator{}", i + 1));
    }
    i
}

/// A coordinator (the leader, if one answers as leader) and one or two daemons cut off from
/// the rest, and half the clients from that coordinator; healed by `Undo::Heal`.
async fn split_brain(cluster: &mut SimCluster, hold: Duration, log: &mut NemesisLog) -> Undo {
    let victim = match cluster.leader().await {
        Some(i) => i,
        None => thread_rng().gen_range(0..cluster.coordinators.len()),
    };
    let mut daemons = cluster.daemon_ids();
    daemons.shuffle(&mut thread_rng());
    let (minority, majority) = daemons.split_at(thread_rng().gen_range(1..=2));
    let small: Vec<_> = std::iter::once(cluster.coordinators[victim].node.id())
        .chain(minority.iter().copied())
        .collect();
    let large: Vec<_> = cluster
        .coordinator_ids()
        .into_iter()
        .filter(|&n| n != small[0])
        .chain(majority.iter().copied())
        .collect();
    cluster.partition(&small, &large);
    // Some clients cannot reach the cut-off coordinator: they follow the majority's
    // leader while the others may still follow it.
    let mut clients: Vec<_> = cluster.clients.iter().map(|c| c.id()).collect();
    clients.shuffle(&mut thread_rng());
    let away = &clients[..clients.len().div_ceil(2)];
    cluster.partition(&small[..1], away);
    log.stamp(format!(
        "split coordinator{} and daemons {minority:?} from the rest (and clients \
             {away:?} from coordinator{0}) for {} ms",
        victim + 1,
        hold.as_millis()
    ));
    Undo::Heal
}

/// Cuts the network in one of the partition shapes; healed by `Undo::Heal`.
fn partition(cluster: &mut SimCluster, fault: Fault, hold: Duration, log: &mut NemesisLog) -> Undo {
    match fault {
        Fault::Isolate => {
            let servers = cluster.server_ids();
            let victim = servers[thread_rng().gen_range(0..servers.len())];
            let others: Vec<_> = servers
                .iter()
                .copied()
                .chain(cluster.client_ids())
                .filter(|&n| n != victim)
                .collect();
            cluster.partition(&[victim], &others);
            log.stamp(format!("isolate node {victim} for {} ms", hold.as_millis()));
        }
        Fault::IsolateFromServers => {
            let daemons = cluster.daemon_ids();
            let victim = daemons[thread_rng().gen_range(0..daemons.len())];
            let servers: Vec<_> = cluster
                .server_ids()
                .into_iter()
                .filter(|&n| n != victim)
                .collect();
            cluster.partition(&[victim], &servers);
            log.stamp(format!(
                "cut node {victim} off from the servers for {} ms",
                hold.as_millis()
            ));
        }
        Fault::SplitDaemons => {
            let mut daemons = cluster.daemon_ids();
            daemons.shuffle(&mut thread_rng());
            let cut = thread_rng().gen_range(1..daemons.len());
            let (a, b) = daemons.split_at(cut);
            cluster.partition(a, b);
            log.stamp(format!(
                "split daemons {a:?} from {b:?} for {} ms",
                hold.as_millis()
            ));
        }
        Fault::OneWay => {
            let servers = cluster.server_ids();
            let victim = servers[thread_rng().gen_range(0..servers.len())];
            let others: Vec<_> = servers
                .iter()
                .copied()
                .filter(|&n| n != victim && thread_rng().gen_bool(0.6))
                .collect();
            let deaf = thread_rng().gen_bool(0.5);
            cluster.partition_one_way(&[victim], &others, deaf);
            let how = if deaf {
                "hears nothing from"
            } else {
                "is not heard by"
            };
            log.stamp(format!(
                "node {victim} {how} {others:?} for {} ms",
                hold.as_millis()
            ));
        }
        _ => unreachable!("not a partition: {fault:?}"),
    }
    Undo::Heal
}

/// Makes links lossy, resetting or slow; restored by `Undo::Network`.
fn degrade(cluster: &mut SimCluster, fault: Fault, log: &mut NemesisLog) {
    match fault {
        Fault::LinkResets => {
            let per_million = thread_rng().gen_range(5_000..50_000);
            rt::knobs::set_link_faults(per_million);
            log.stamp(format!(
                "links between daemons fail on {:.1}% of messages",
                per_million as f64 / 10_000.0
            ));
        }
        Fault::PacketLoss => {
            let rate = thread_rng().gen_range(0.02..0.10);
            cluster.set_packet_loss(rate);
            log.stamp(format!("packet loss {:.0}%", rate * 100.0));
        }
        Fault::LatencySpike => {
            let hi = thread_rng().gen_range(10..80);
            cluster.set_latency(Duration::from_millis(hi / 2)..Duration::from_millis(hi));
            log.stamp(format!("latency up to {hi} ms"));
        }
        _ => unreachable!("not a link fault: {fault:?}"),
    }
}

/// Pauses one running server (coordinator or daemon) for up to three leases.
fn pause_one(cluster: &mut SimCluster, log: &mut NemesisLog) -> Option<(rt::Instant, Undo)> {
    let now = rt::now();
    let servers: Vec<_> = cluster
        .coordinators
        .iter()
        .chain(&cluster.daemons)
        .filter(|s| s.up)
        .map(|s| (s.name.clone(), s.node.id()))
        .collect();
    if servers.is_empty() {
        return None;
    }
    let (name, node) = servers[thread_rng().gen_range(0..servers.len())].clone();
    let longest = cluster.timing.lease * 3;
    let hold = Duration::from_millis(thread_rng().gen_range(50..=longest.as_millis() as u64));
    cluster.pause(node);
    log.stamp(format!("pause {name} for {} ms", hold.as_millis()));
    Some((now + hold, Undo::Resume(node)))
}

async fn apply_undo(cluster: &mut SimCluster, u: Undo, log: &mut NemesisLog) -> Option<Undo> {
    match u {
        Undo::Nothing => {}
        Undo::BackIn(i) => {
            log.out.remove(&i);
        }
        Undo::Resume(node) => {
            cluster.resume(node);
            log.stamp(format!("resume node {node}"));
        }
        Undo::RestartDaemon(i) => {
            cluster.restart_daemon(i);
            log.stamp(format!("restart daemon{}", i + 1));
        }
        Undo::RestartDaemons(all) => {
            for i in all {
                cluster.restart_daemon(i);
            }
            log.power_restored = Some(rt::now());
            log.stamp("restart every daemon".into());
        }
        Undo::RestartCoordinator(i) => {
            cluster.restart_coordinator(i);
            log.stamp(format!("restart coordinator{}", i + 1));
        }
        Undo::Heal => {
            cluster.heal();
            log.stamp("heal".into());
        }
        Undo::Network => {
            rt::knobs::set_link_faults(0);
            cluster.set_packet_loss(0.0);
            cluster.set_latency(Duration::from_millis(1)..Duration::from_millis(10));
            log.stamp("network back to normal".into());
        }
        Undo::Index => {
            if admin::set_index(cluster, true, Duration::from_millis(500)).await {
                log.stamp("index added back".into());
            } else {
                return Some(Undo::Index);
            }
        }
        Undo::Tolerance(t) => {
            // A failed attempt is retried at the next step (or at the end, patiently).
            if set_tolerance(cluster, t, Duration::from_millis(500)).await {
                log.stamp(format!("tolerance back to {t}"));
            } else {
                return Some(Undo::Tolerance(t));
            }
        }
    }
    None
}
