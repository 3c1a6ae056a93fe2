//! A simulated cluster: three coordinators, daemons and client nodes, with faults.
//!
//! Each server node's start-up code is its `init` closure, which madsim runs again on
//! `restart`. Each node's disk is a [`MemStore`] owned here, outside the node, so it survives
//! kills and restarts; [`SimCluster::crash_disk`] kills the node *and* drops every write its
//! disk had not synced, as a power failure would.
//!
//! Addresses: coordinator `i` is `10.0.0.(i+1):1982` (the first starts the log, the others
//! join it), daemon `i` is `10.0.1.(i+1):2012`, client
//! node `i` is `10.0.2.(i+1)`, the control node (admin calls, audits) is `10.0.3.1`, and the
//! rogue node is `10.0.4.1`.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use hyperdex::client::ClientOptions;
use hyperdex::config::{Timing, MAX_CLOCK_DRIFT};
use hyperdex::coordinator::{self, CoordinatorOptions};
use hyperdex::daemon::{self, DaemonOptions};
use hyperdex::net::RpcConn;
use hyperdex::protocol::auth::Secret;
use hyperdex::protocol::{CoordRequest, CoordResponse, Message, DEFAULT_MAX_FRAME};
use hyperdex::rt;
use hyperdex::storage::MemStore;
use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId;

/// Each coordinator's address.
pub const COORDINATORS: [&str; 3] = ["10.0.0.1:1982", "10.0.0.2:1982", "10.0.0.3:1982"];
/// Every coordinator, as daemons and clients are given them.
pub const COORDINATOR: &str = "10.0.0.1:1982,10.0.0.2:1982,10.0.0.3:1982";

/// How long asking one coordinator whether it leads may take.
const ASK_LEADER: Duration = Duration::from_millis(200);

/// The simulated cluster's secret: its servers and admin calls prove it; the rogue node does
/// not know it.
pub fn secret() -> Secret {
    Secret::new(b"the secret of the simulated cluster").expect("a long enough secret")
}

/// Options for admin calls to the simulated cluster.
pub fn admin_options() -> ClientOptions {
    ClientOptions {
        secret: Some(secret()),
        ..ClientOptions::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("a literal address")
}

/// A server node and its disk.
pub struct Server {
    pub name: String,
    pub node: NodeHandle,
    pub store: MemStore,
    pub addr: String,
    pub up: bool,
}

pub struct SimCluster {
    handle: Handle,
    pub coordinators: Vec<Server>,
    pub daemons: Vec<Server>,
    pub clients: Vec<NodeHandle>,
    pub control: NodeHandle,
    /// A node that does not know the cluster secret (see `rogue`).
    pub rogue: NodeHandle,
    /// Each server's clock rate (`0.01`: 1% fast), within the clock assumption.
    pub clock_rates: Vec<(String, f64)>,
    pub timing: Timing,
    clogged: BTreeSet<(NodeId, NodeId)>,
}

fn coordinator_node(handle: &Handle, i: usize, store: MemStore, timing: Timing) -> NodeHandle {
    let addr = COORDINATORS[i];
    handle
        .create_node()
        .name(format!("coordinator{}", i + 1))
        .ip(ip(addr.split_once(':').map_or(addr, |(h, _)| h)))
        .init(move || {
            let store = store.clone();
            async move {
                let listener = match rt::listen(addr).await {
                    Ok(l) => l,
                    Err(e) => return tracing::error!("coordinator cannot listen: {e}"),
                };
                let opts = CoordinatorOptions {
                    listen: addr.into(),
                    join: (i > 0).then(|| COORDINATORS[0].to_string()),
                    timing,
                    secret: Some(secret()),
                    ..CoordinatorOptions::default()
                };
                if let Err(e) = coordinator::run(listener, Box::new(store), opts).await {
                    tracing::error!("coordinator stopped: {e}");
                }
            }
        })
        .build()
}

fn daemon_node(handle: &Handle, i: usize, store: MemStore, timing: Timing) -> (NodeHandle, String) {
    let host = format!("10.0.1.{}", i + 1);
    let addr = format!("{host}:2012");
    let a = addr.clone();
    let node = handle
        .create_node()
        .name(format!("daemon{}", i + 1))
        .ip(ip(&host))
        .init(move || {
            // A restarted node finds the records its previous life handed to the disk.
            let store = store.restarted();
            let addr = a.clone();
            async move {
                let listener = match rt::listen(&addr).await {
                    Ok(l) => l,
                    Err(e) => return tracing::error!("daemon cannot listen: {e}"),
                };
                let opts = DaemonOptions {
                    address: addr,
                    coordinator: COORDINATOR.into(),
                    timing,
                    startup_timeout: Duration::from_secs(600),
                    secret: Some(secret()),
                    // Tiny windows, so transfers of a few keys still take several windows.
                    transfer_window: 2,
                    ..DaemonOptions::default()
                };
                if let Err(e) = daemon::run(listener, Box::new(store), opts).await {
                    tracing::error!("daemon stopped: {e}");
                }
            }
        })
        .build();
    (node, addr)
}

impl SimCluster {
    /// Starts three coordinators, `daemons` daemons and `clients` client nodes, and waits
    /// until every daemon has registered.
    pub async fn start(daemons: usize, clients: usize, timing: Timing) -> SimCluster {
        let handle = Handle::current();
        rt::knobs::reset();
        let coordinators = (0..COORDINATORS.len())
            .map(|i| {
                let store = MemStore::new();
                Server {
                    name: format!("coordinator{}", i + 1),
                    node: coordinator_node(&handle, i, store.clone(), timing),
                    store,
                    addr: COORDINATORS[i].into(),
                    up: true,
                }
            })
            .collect::<Vec<_>>();
        let daemons = (0..daemons)
            .map(|i| {
                let store = MemStore::new();
                let (node, addr) = daemon_node(&handle, i, store.clone(), timing);
                Server {
                    name: format!("daemon{}", i + 1),
                    node,
                    store,
                    addr,
                    up: true,
                }
            })
            .collect::<Vec<_>>();
        let clients = (0..clients)
            .map(|i| {
                handle
                    .create_node()
                    .name(format!("client{}", i + 1))
                    .ip(ip(&format!("10.0.2.{}", i + 1)))
                    .build()
            })
            .collect();
        let control = handle
            .create_node()
            .name("control")
            .ip(ip("10.0.3.1"))
            .build();
        let rogue = handle
            .create_node()
            .name("rogue")
            .ip(ip("10.0.4.1"))
            .build();
        // Every server's clock runs at its own rate, anywhere within the clock assumption;
        // clients and the control node keep real time (the history is stamped there).
        let clock_rates = coordinators
            .iter()
            .chain(&daemons)
            .map(|s| {
                let rate = thread_rng().gen_range(-MAX_CLOCK_DRIFT..=MAX_CLOCK_DRIFT);
                rt::knobs::set_clock_rate(s.node.id(), rate);
                (s.name.clone(), rate)
            })
            .collect();
        let cluster = SimCluster {
            handle,
            coordinators,
            daemons,
            clients,
            control,
            rogue,
            clock_rates,
            timing,
            clogged: BTreeSet::new(),
        };
        let n = cluster.daemons.len();
        let ok = cluster
            .wait_until(Duration::from_secs(30), move || async move {
                hyperdex::client::fetch_config(COORDINATOR, &Default::default())
                    .await
                    .is_ok_and(|c| {
                        c.servers.len() == n && c.coordinators.len() == COORDINATORS.len()
                    })
            })
            .await;
        assert!(ok, "daemons did not register, or coordinators did not join");
        cluster
    }

    /// Runs `f` on the control node.
    pub async fn on_control<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.control.spawn(f).await.expect("control task")
    }

    /// Polls `cond` (on the control node) every 50 ms of virtual time until it holds or
    /// `timeout` passes.
    pub async fn wait_until<C, F>(&self, timeout: Duration, cond: C) -> bool
    where
        C: Fn() -> F + Send + 'static,
        F: Future<Output = bool> + Send + 'static,
    {
        self.on_control(async move {
            let deadline = rt::now() + timeout;
            while rt::now() < deadline {
                if cond().await {
                    return true;
                }
                rt::sleep(Duration::from_millis(50)).await;
            }
            false
        })
        .await
    }

    pub fn daemon_ids(&self) -> Vec<NodeId> {
        self.daemons.iter().map(|d| d.node.id()).collect()
    }

    pub fn kill_daemon(&mut self, i: usize) {
        self.handle.kill(self.daemons[i].node.id());
        self.daemons[i].up = false;
    }

    /// Kills daemon `i` and loses every write its disk had not synced. Returns how many were
    /// lost.
    pub fn crash_disk(&mut self, i: usize) -> usize {
        self.kill_daemon(i);
        self.daemons[i].store.crash()
    }

    pub fn restart_daemon(&mut self, i: usize) {
        self.handle.restart(self.daemons[i].node.id());
        self.daemons[i].up = true;
    }

    /// Freezes every task of `node` (timers included) until [`resume`](Self::resume).
    pub fn pause(&self, node: NodeId) {
        self.handle.pause(node);
    }

    pub fn resume(&self, node: NodeId) {
        self.handle.resume(node);
    }

    pub fn kill_coordinator(&mut self, i: usize) {
        self.handle.kill(self.coordinators[i].node.id());
        self.coordinators[i].up = false;
    }

    pub fn restart_coordinator(&mut self, i: usize) {
        self.handle.restart(self.coordinators[i].node.id());
        self.coordinators[i].up = true;
    }

    /// Which coordinator leads (answers a configuration request rather than naming another),
    /// if one does now.
    pub async fn leader(&self) -> Option<usize> {
        self.on_control(async {
            for (i, addr) in COORDINATORS.iter().enumerate() {
                let Ok(conn) = RpcConn::connect(addr, DEFAULT_MAX_FRAME, ASK_LEADER).await else {
                    continue;
                };
                let asked = conn
                    .call(Message::ToCoordinator(CoordRequest::GetConfig), ASK_LEADER)
                    .await;
                if let Ok(Message::FromCoordinator(CoordResponse::Config(_))) = asked {
                    return Some(i);
                }
            }
            None
        })
        .await
    }

    pub fn coordinator_ids(&self) -> Vec<NodeId> {
        self.coordinators.iter().map(|c| c.node.id()).collect()
    }

    /// Cuts every link between a node of `a` and a node of `b`, both ways.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        let net = NetSim::current();
        for &x in a {
            for &y in b {
                if x != y {
                    net.clog_link(x, y);
                    net.clog_link(y, x);
                    self.clogged.insert((x, y));
                    self.clogged.insert((y, x));
                }
            }
        }
    }

    /// Cuts the links between `a` and `b` in one direction: from `b` to `a` when `deaf`
    /// (`a` hears nothing from `b`), else from `a` to `b`.
    pub fn partition_one_way(&mut self, a: &[NodeId], b: &[NodeId], deaf: bool) {
        let net = NetSim::current();
        for &x in a {
            for &y in b {
                let (from, to) = if deaf { (y, x) } else { (x, y) };
                if from != to {
                    net.clog_link(from, to);
                    self.clogged.insert((from, to));
                }
            }
        }
    }

    /// Restores every link cut by [`partition`](Self::partition).
    pub fn heal(&mut self) {
        let net = NetSim::current();
        for (x, y) in std::mem::take(&mut self.clogged) {
            net.unclog_link(x, y);
        }
    }

    pub fn set_packet_loss(&self, rate: f64) {
        NetSim::current().update_config(|c| c.packet_loss_rate = rate);
    }

    pub fn set_latency(&self, range: std::ops::Range<Duration>) {
        NetSim::current().update_config(|c| c.send_latency = range);
    }

    /// Every node id except the clients and the control node.
    pub fn server_ids(&self) -> Vec<NodeId> {
        self.coordinator_ids()
            .into_iter()
            .chain(self.daemon_ids())
            .collect()
    }

    /// The address of every server, coordinators first.
    pub fn server_addrs(&self) -> Vec<String> {
        self.coordinators
            .iter()
            .chain(&self.daemons)
            .map(|s| s.addr.clone())
            .collect()
    }

    pub fn client_ids(&self) -> Vec<NodeId> {
        self.clients
            .iter()
            .map(NodeHandle::id)
            .chain([self.control.id()])
            .collect()
    }
}
