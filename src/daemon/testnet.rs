//! A network of replicas wired by hand, for tests: every message is delivered by the test (or
//! held, dropped, reordered), so each step of the protocol can be observed. Time is virtual:
//! it moves only when the test says so.

use std::collections::BTreeMap;
use std::time::Duration;

use hyperdex_model::{Operation, Reply};

use crate::config::{Config, RegionId, ServerId};
use crate::coordinator::state::{Cluster, Command};
use crate::protocol::{ChainMessage, ClientResponse, OpRequest};
use crate::rt::Instant;
use crate::storage::{MemStore, Store};

use super::replica::{Input, Lease, Output, Replica};

/// A reply a client received, by the test's waiter number.
pub type Received = (u32, Reply);

pub struct Net {
    pub replicas: BTreeMap<ServerId, (Replica<u32>, MemStore)>,
    pub replies: Vec<Received>,
    /// Search answers.
    pub objects: Vec<(u32, ClientResponse)>,
    /// (from, to, message)
    pub in_flight: Vec<(ServerId, ServerId, ChainMessage)>,
    pub transfers_done: Vec<(ServerId, RegionId)>,
    pub now: Instant,
}

impl Net {
    /// `servers` registered servers (ids 1..=servers) and the space `space`, every replica
    /// with the configuration and a fresh lease on it.
    pub fn new(servers: usize, space: &str) -> (Net, Config) {
        Net::with_window(servers, space, 64)
    }

    /// The same, with transfer windows of `window` objects.
    pub fn with_window(servers: usize, space: &str, window: usize) -> (Net, Config) {
        let mut c = Cluster::new(1);
        for i in 0..servers {
            c.apply(&Command::Register {
                id: None,
                addr: format!("s{i}"),
            })
            .expect("register");
        }
        c.apply(&Command::add_space(space).expect("a valid space"))
            .expect("space");
        let now = crate::rt::now();
        let replicas = c
            .config
            .servers
            .keys()
            .map(|&id| {
                let r = Replica::new(id, c.config.clone()).with_transfers(window, 0);
                (id, (r, MemStore::new()))
            })
            .collect();
        let mut net = Net {
            replicas,
            replies: Vec::new(),
            objects: Vec::new(),
            in_flight: Vec::new(),
            transfers_done: Vec::new(),
            now,
        };
        let ids: Vec<ServerId> = net.replicas.keys().copied().collect();
        for id in ids {
            net.grant(id, c.config.version);
        }
        (net, c.config)
    }

    /// Steps server `to` through `input`, syncs its store and collects what it sends.
    pub fn input(&mut self, to: ServerId, input: Input<u32>) {
        let now = self.now;
        let (r, store) = self.replicas.get_mut(&to).expect("a server of the net");
        let outs = r.step(store, now, input).expect("step");
        store.sync().expect("sync");
        self.collect(to, outs);
    }

    /// Takes what server `to` delivers.
    fn collect(&mut self, to: ServerId, outs: Vec<Output<u32>>) {
        for o in outs {
            match o {
                Output::Reply(w, ClientResponse::Reply(m))
                | Output::Read(w, ClientResponse::Reply(m), _, _) => self.replies.push((w, m)),
                Output::Reply(w, objects) | Output::Read(w, objects, _, _) => {
                    self.objects.push((w, objects))
                }
                Output::Send(s, m) => self.in_flight.push((to, s, m)),
                Output::FetchConfig => {}
                Output::TransferDone(r, _) => self.transfers_done.push((to, r)),
                Output::Durable(o, _) => self.collect(to, vec![*o]),
            }
        }
    }

    /// Installs `config` on server `to` and grants it a lease on it, as its coordinator link
    /// would after an answered heartbeat.
    pub fn install(&mut self, to: ServerId, config: &Config) {
        self.input(to, Input::Config(config.clone()));
        self.grant(to, config.version);
    }

    /// A lease on `version`, sent now.
    pub fn grant(&mut self, to: ServerId, version: u64) {
        let lease = Lease {
            sent: self.now,
            config_version: version,
        };
        self.input(to, Input::Lease(lease));
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Delivers the oldest message in flight; `false` when there is none.
    pub fn deliver_one(&mut self) -> bool {
        if self.in_flight.is_empty() {
            return false;
        }
        let (from, to, msg) = self.in_flight.remove(0);
        self.input(to, Input::Chain { from, msg });
        true
    }

    pub fn deliver_all(&mut self) {
        while self.deliver_one() {}
    }
}

/// A client request from client 7.
pub fn op(config: &Config, waiter: u32, seq: u64, op: Operation) -> Input<u32> {
    Input::Op {
        waiter,
        unix: 0,
        req: OpRequest {
            config_version: config.version,
            client: 7,
            seq,
            low_seq: 1,
            op,
            auth: Vec::new(),
            first_unix: 0,
        },
    }
}

/// The head and region of `key` in space "s".
pub fn head_of(config: &Config, key: &str) -> (ServerId, RegionId) {
    let s = config.space("s").expect("space s");
    let r = s
        .region_of(&hyperdex_model::Value::string(key))
        .expect("a key");
    (config.chain(r)[0], r)
}
