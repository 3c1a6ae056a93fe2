//! The coordinator's state machine: pure and deterministic.
//!
//! [`Cluster::apply`] takes a [`Command`] and changes the configuration, bumping its version
//! whenever anything visible changes. It does no I/O: the server around it persists the
//! whole state after every change and before answering, so a later replicated log can drive
//! the same machine unchanged.
//!
//! **Chain assignment.** When a space is added, region `i`'s chain is
//! `available[(i + j) mod n]` for `j < min(tolerate + 1, n)`, over the available servers in id
//! order: consecutive regions start at consecutive servers, so heads and replicas spread
//! evenly. A server that fails is removed from every chain (its successor takes its place; if
//! it was the head, the next server becomes head), except where it is the last member: then
//! the region waits for it to come back. A server that registers again after a restart is
//! treated the same way (what was in flight through it is gone), and rejoins by state
//! transfer. Chains that are empty because the space was created before any daemon existed
//! are filled as soon as daemons register.

use std::collections::{BTreeMap, BTreeSet};

use hyperdex_model::schema::MAX_TOLERATE;
use hyperdex_model::{parse_space, ReturnCode, Space};
use serde::{Deserialize, Serialize};

use crate::config::{
    regions_of_schema, Config, IndexId, Joiner, RegionId, ServerId, ServerInfo, ServerState,
    SpaceConfig, SpaceId,
};

/// Everything that can change the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A daemon starts; `id` is its old identity when it restarts on its data directory.
    Register {
        id: Option<ServerId>,
        addr: String,
    },
    /// A space, parsed and checked (see [`Command::add_space`]).
    AddSpace(Space),
    RmSpace(String),
    /// Missed heartbeats or reported by peers.
    ServerFailed(ServerId),
    /// An operator asked for the server to be treated as dead.
    ServerKill(ServerId),
    /// An operator asked for the server to be removed from the cluster altogether.
    ServerForget(ServerId),
    /// An operator changed how many failures a space tolerates.
    FaultTolerance {
        space: String,
        tolerate: u32,
    },
    /// A joining server has every object of the region.
    TransferComplete {
        server: ServerId,
        region: RegionId,
        since: u64,
    },
    /// An operator switched read-only mode on or off.
    ReadOnly(bool),
    /// An operator added a secondary index (daemons build it in the background).
    AddIndex {
        space: String,
        attribute: String,
    },
    /// An operator removed the index with this identifier ([`crate::config::IndexId`]).
    RmIndex(u64),
    /// A coordinator joined the replicated log (applied with the log's membership change).
    AddCoordinator {
        id: u64,
        addr: String,
    },
    /// A coordinator left the replicated log.
    RmCoordinator(u64),
}

/// The longest space description the coordinator parses.
pub const MAX_DESCRIPTION: usize = 64 << 10;
/// The most attributes a space may have.
pub const MAX_ATTRIBUTES: usize = 1024;
/// The most spaces a cluster may have.
pub const MAX_SPACES: usize = 1024;
/// The most regions (partitions of every space together) a cluster may have, which keeps the
/// configuration that every heartbeat may carry to a few megabytes.
pub const MAX_REGIONS: usize = 131_072;

impl Command {
    /// Parses and checks a space description into the command that adds it; this is the
    /// costly part, done before the coordinator takes its lock.
    pub fn add_space(text: &str) -> Result<Command, CommandError> {
        let bad = |why: String| {
            (
                ReturnCode::BadSpace,
                format!("bad space description: {why}"),
            )
        };
        if text.len() > MAX_DESCRIPTION {
            return Err(bad(format!(
                "it is {} bytes long, over the limit of {MAX_DESCRIPTION}",
                text.len()
            )));
        }
        let space = parse_space(text).map_err(|e| bad(e.to_string()))?;
        if space.attributes.len() > MAX_ATTRIBUTES {
            return Err(bad(format!(
                "it has {} attributes, over the limit of {MAX_ATTRIBUTES}",
                space.attributes.len()
            )));
        }
        Ok(Command::AddSpace(space))
    }
}

/// What a successful command produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Registered(ServerId),
    Done,
    Unchanged,
}

pub type CommandError = (ReturnCode, String);

/// The coordinator's whole state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub config: Config,
    next_server: u64,
    next_space: u64,
    /// For each server that failed: the regions it held completely then (see `affinity`).
    pub(super) departed: BTreeMap<ServerId, BTreeSet<RegionId>>,
}

impl Cluster {
    pub fn new(cluster_id: u64) -> Cluster {
        Cluster {
            config: Config {
                version: 1,
                cluster: cluster_id,
                ..Config::default()
            },
            next_server: 1,
            next_space: 1,
            departed: BTreeMap::new(),
        }
    }

    /// A cluster from a saved configuration and its id counters (see `legacy`).
    pub(super) fn from_parts(config: Config, next_server: u64, next_space: u64) -> Cluster {
        Cluster {
            config,
            next_server,
            next_space,
            departed: BTreeMap::new(),
        }
    }

    /// The next server and space ids.
    #[cfg(test)]
    pub(super) fn counters(&self) -> (u64, u64) {
        (self.next_server, self.next_space)
    }

    fn available(&self) -> Vec<ServerId> {
        self.config
            .servers
            .values()
            .filter(|s| s.state == ServerState::Available)
            .map(|s| s.id)
            .collect()
    }

    /// Applies a command. On error nothing changed.
    pub fn apply(&mut self, cmd: &Command) -> Result<Outcome, CommandError> {
        let before = self.clone();
        match self.apply_inner(cmd) {
            Ok(out) => {
                if self.config != before.config {
                    self.config.version = before.config.version + 1;
                }
                Ok(out)
            }
            Err(e) => {
                *self = before;
                Err(e)
            }
        }
    }

    fn apply_inner(&mut self, cmd: &Command) -> Result<Outcome, CommandError> {
        match cmd {
            Command::Register { id, addr } => self.register(*id, addr),
            Command::AddSpace(space) => self.add_space(space.clone()),
            Command::RmSpace(name) => {
                if self.config.spaces.remove(name).is_none() {
                    return Err((
                        ReturnCode::AdminNotFound,
                        format!("there is no space \"{name}\""),
                    ));
                }
                Ok(Outcome::Done)
            }
            Command::ServerFailed(id) | Command::ServerKill(id) => self.fail(*id),
            Command::TransferComplete {
                server,
                region,
                since,
            } => Ok(self.transfer_complete(*server, *region, *since)),
            Command::FaultTolerance { space, tolerate } => self.fault_tolerance(space, *tolerate),
            Command::AddIndex { space, attribute } => self.add_index(space, attribute),
            Command::RmIndex(id) => self.rm_index(*id),
            Command::AddCoordinator { id, addr } => {
                self.config.coordinators.insert(*id, addr.clone());
                Ok(Outcome::Done)
            }
            Command::RmCoordinator(id) => {
                self.config.coordinators.remove(id);
                Ok(Outcome::Done)
            }
            Command::ReadOnly(on) if self.config.read_only == *on => Ok(Outcome::Unchanged),
            Command::ReadOnly(on) => {
                self.config.read_only = *on;
                Ok(Outcome::Done)
            }
            Command::ServerForget(id) => {
                if let Some(region) = self.only_copy(*id) {
                    crate::probe!("coordinator.only_copy_refused");
                    return Err((
                        ReturnCode::AdminServerError,
                        format!(
                            "server {id} holds the only complete copy of region {region}; \
                             forgetting it would lose that data (bring it back, or wait until \
                             another server has joined the region)"
                        ),
                    ));
                }
                if self.config.servers.remove(id).is_none() {
                    return Err((
                        ReturnCode::AdminNotFound,
                        format!("there is no server {id}"),
                    ));
                }
                self.departed.remove(id);
                self.remove_from_chains(*id);
                self.refill();
                Ok(Outcome::Done)
            }
        }
    }

    /// A region whose chain holds no complete member but `id` (a joiner is not complete).
    fn only_copy(&self, id: ServerId) -> Option<RegionId> {
        self.config.spaces.values().find_map(|s| {
            s.chains.iter().enumerate().find_map(|(i, chain)| {
                let joiner = s.joining.get(i).copied().flatten().map(|j| j.server);
                let complete: Vec<_> = chain.iter().filter(|m| Some(**m) != joiner).collect();
                (complete == [&id]).then_some(RegionId {
                    space: s.id,
                    index: i as u32,
                })
            })
        })
    }

    fn register(&mut self, id: Option<ServerId>, addr: &str) -> Result<Outcome, CommandError> {
        let id = match id {
            Some(id) if self.config.servers.contains_key(&id) => id,
            Some(id) => {
                return Err((
                    ReturnCode::AdminNotFound,
                    format!(
                        "server {id} is not part of this cluster (was it forgotten?); \
                         start it on an empty data directory to join as a new server"
                    ),
                ))
            }
            None => {
                let id = ServerId(self.next_server);
                self.next_server += 1;
                id
            }
        };
        if let Some(other) = self
            .config
            .servers
            .values()
            .find(|s| s.addr == addr && s.id != id && s.state == ServerState::Available)
        {
            return Err((
                ReturnCode::Duplicate,
                format!("address {addr} is already used by server {}", other.id),
            ));
        }
        self.config.servers.insert(
            id,
            ServerInfo {
                id,
                addr: addr.to_string(),
                state: ServerState::Available,
            },
        );
        // A restarted server lost whatever was in flight through it: it leaves every chain it
        // shares with others and comes back by state transfer. Where it is the only member,
        // its data is the region's only copy and it keeps serving.
        self.remove_from_chains(id);
        self.restart_joins_behind(id);
        self.take_back(id);
        self.refill();
        Ok(Outcome::Registered(id))
    }

    fn add_space(&mut self, schema: Space) -> Result<Outcome, CommandError> {
        if self.config.spaces.contains_key(&schema.name) {
            return Err((
                ReturnCode::Duplicate,
                format!("space \"{}\" already exists", schema.name),
            ));
        }
        if self.config.spaces.len() >= MAX_SPACES {
            return Err((
                ReturnCode::BadSpace,
                format!("the cluster has {MAX_SPACES} spaces, the most it may have"),
            ));
        }
        let regions: usize = self.config.spaces.values().map(|s| s.chains.len()).sum();
        let more = regions_of_schema(&schema);
        if regions + more > MAX_REGIONS {
            return Err((
                ReturnCode::BadSpace,
                format!(
                    "the cluster has {regions} regions; {more} more would pass the limit of {MAX_REGIONS}",
                ),
            ));
        }
        let available = self.available();
        let replicas = (schema.tolerate as usize + 1).min(available.len());
        let chains = (0..more)
            .map(|i| {
                (0..replicas)
                    .map(|j| available[(i + j) % available.len()])
                    .collect()
            })
            .collect();
        let id = SpaceId(self.next_space);
        self.next_space += 1;
        self.config.spaces.insert(
            schema.name.clone(),
            SpaceConfig {
                id,
                joining: vec![None; more],
                schema,
                chains,
            },
        );
        Ok(Outcome::Done)
    }

    fn add_index(&mut self, space: &str, attribute: &str) -> Result<Outcome, CommandError> {
        let Some(sc) = self.config.spaces.get_mut(space) else {
            return Err((
                ReturnCode::AdminNotFound,
                format!("there is no space \"{space}\""),
            ));
        };
        if let Some(why) = sc.schema.index_error(attribute) {
            return Err((ReturnCode::BadSpace, why));
        }
        if sc.schema.indexes.iter().any(|i| i == attribute) {
            return Ok(Outcome::Unchanged);
        }
        sc.schema.indexes.push(attribute.to_string());
        Ok(Outcome::Done)
    }

    fn rm_index(&mut self, id: u64) -> Result<Outcome, CommandError> {
        let not_found = || Err((ReturnCode::AdminNotFound, format!("there is no index {id}")));
        let IndexId { space, attribute } = IndexId::from(id);
        let Some(sc) = self.config.space_by_id_mut(space) else {
            return not_found();
        };
        let Some(name) = sc
            .schema
            .attributes
            .get(attribute as usize)
            .map(|a| a.name.clone())
        else {
            return not_found();
        };
        let before = sc.schema.indexes.len();
        sc.schema.indexes.retain(|i| *i != name);
        if sc.schema.indexes.len() == before {
            return not_found();
        }
        Ok(Outcome::Done)
    }

    fn fail(&mut self, id: ServerId) -> Result<Outcome, CommandError> {
        let Some(server) = self.config.servers.get_mut(&id) else {
            return Err((
                ReturnCode::AdminNotFound,
                format!("there is no server {id}"),
            ));
        };
        if server.state == ServerState::Failed {
            return Ok(Outcome::Unchanged);
        }
        server.state = ServerState::Failed;
        self.note_departure(id);
        self.remove_from_chains(id);
        self.refill();
        Ok(Outcome::Done)
    }

    fn transfer_complete(&mut self, server: ServerId, region: RegionId, since: u64) -> Outcome {
        let Some(space) = self.config.space_by_id_mut(region.space) else {
            return Outcome::Unchanged;
        };
        let index = region.index as usize;
        match space.joining.get(index).copied().flatten() {
            Some(j) if j.server == server && j.since == since => {
                crate::probe!("coordinator.joiner_promoted");
                space.joining[index] = None;
                // The member it replaces leaves, unless that would leave the region short of
                // replicas (another member failed meanwhile).
                let want = space.schema.tolerate as usize + 1;
                if let (Some(gone), Some(chain)) = (j.replaces, space.chains.get_mut(index)) {
                    if chain.len() > want && chain.first() != Some(&gone) {
                        crate::probe!("coordinator.member_replaced");
                        chain.retain(|&m| m != gone);
                    }
                }
                self.refill();
                Outcome::Done
            }
            _ => Outcome::Unchanged,
        }
    }

    fn fault_tolerance(&mut self, space: &str, tolerate: u32) -> Result<Outcome, CommandError> {
        if tolerate > MAX_TOLERATE {
            return Err((
                ReturnCode::BadSpace,
                format!("a space tolerates at most {MAX_TOLERATE} failures"),
            ));
        }
        let Some(sc) = self.config.spaces.get_mut(space) else {
            return Err((
                ReturnCode::AdminNotFound,
                format!("there is no space \"{space}\""),
            ));
        };
        sc.schema.tolerate = tolerate;
        let want = tolerate as usize + 1;
        for (chain, joining) in sc.chains.iter_mut().zip(sc.joining.iter_mut()) {
            // A join the region no longer needs is called off.
            if let Some(j) = *joining {
                if chain.len() > want {
                    chain.retain(|&m| m != j.server);
                    *joining = None;
                }
            }
            // Extra replicas leave from the tail, as if they had failed there: the member
            // before a tail has every write the tail has. The head stays.
            if joining.is_none() {
                chain.truncate(want.max(1));
            }
        }
        // More replicas arrive as joiners, one per region at a time.
        self.refill();
        Ok(Outcome::Done)
    }

    /// Removes `id` from every chain, except where it is the last complete member: a region
    /// whose every replica failed keeps its last one and is unavailable until that server
    /// returns with its data (refilling it from elsewhere would silently lose acknowledged
    /// writes). A joiner is simply dropped.
    fn remove_from_chains(&mut self, id: ServerId) {
        for space in self.config.spaces.values_mut() {
            for (chain, joining) in space.chains.iter_mut().zip(space.joining.iter_mut()) {
                if joining.map(|j| j.server) == Some(id) {
                    chain.retain(|&m| m != id);
                    *joining = None;
                } else if chain.contains(&id) && chain.len() - usize::from(joining.is_some()) > 1 {
                    chain.retain(|&m| m != id);
                    if let Some(j) = joining.as_mut().filter(|j| j.replaces == Some(id)) {
                        j.replaces = None;
                    }
                }
            }
        }
    }

    /// Where `id` is the only complete member of a chain and has just restarted, a joiner may
    /// hold writes `id` lost (stored by the joiner, not yet by `id`): that join starts over,
    /// so the joiner's copy is rebuilt from `id`'s rather than diverging from it.
    fn restart_joins_behind(&mut self, id: ServerId) {
        for space in self.config.spaces.values_mut() {
            for (chain, joining) in space.chains.iter_mut().zip(space.joining.iter_mut()) {
                if let Some(j) = *joining {
                    if chain.first() == Some(&id) && chain.len() == 2 {
                        chain.retain(|&m| m != j.server);
                        *joining = None;
                    }
                }
            }
        }
    }

    /// How many chains each server is in.
    fn load(&self) -> BTreeMap<ServerId, usize> {
        let mut load: BTreeMap<ServerId, usize> = BTreeMap::new();
        for space in self.config.spaces.values() {
            for chain in &space.chains {
                for m in chain {
                    *load.entry(*m).or_default() += 1;
                }
            }
        }
        load
    }

    /// Fills chains short of `tolerate + 1` members. An empty chain (a space created before
    /// any daemon existed) is filled at once: it holds no data. Any other short chain gets one
    /// joiner at a time, the least loaded available server not in it, which daemons fill by
    /// state transfer before it counts.
    fn refill(&mut self) {
        let available = self.available();
        if available.is_empty() {
            return;
        }
        let mut load = self.load();
        let next_version = self.config.version + 1;
        for space in self.config.spaces.values_mut() {
            let want = (space.schema.tolerate as usize + 1).min(available.len());
            for (i, (chain, joining)) in space
                .chains
                .iter_mut()
                .zip(space.joining.iter_mut())
                .enumerate()
            {
                if chain.is_empty() {
                    *chain = (0..want)
                        .map(|j| available[(i + j) % available.len()])
                        .collect();
                    for m in chain.iter() {
                        *load.entry(*m).or_default() += 1;
                    }
                    continue;
                }
                if joining.is_some() || chain.len() >= want {
                    continue;
                }
                let candidate = available
                    .iter()
                    .filter(|s| !chain.contains(s))
                    .min_by_key(|s| (load.get(s).copied().unwrap_or(0), **s));
                if let Some(&c) = candidate {
                    chain.push(c);
                    *joining = Some(Joiner {
                        server: c,
                        since: next_version,
                        replaces: None,
                    });
                    *load.entry(c).or_default() += 1;
                }
            }
        }
        self.rebalance(&available, next_version);
    }

    /// Moves replicas from the most loaded available server to the least loaded one until
    /// no two differ by more than one chain, one join per region at a time: a daemon that
    /// joins a running cluster takes its fair share. The move is a join that replaces the
    /// loaded member once its transfer is done.
    fn rebalance(&mut self, available: &[ServerId], next_version: u64) {
        if available.len() < 2 {
            return;
        }
        let regions: usize = self.config.spaces.values().map(|s| s.chains.len()).sum();
        for _ in 0..regions {
            // Load after the moves already under way.
            let mut load: BTreeMap<ServerId, usize> = available.iter().map(|s| (*s, 0)).collect();
            for space in self.config.spaces.values() {
                for (chain, joining) in space.chains.iter().zip(&space.joining) {
                    let leaving = joining.and_then(|j| j.replaces);
                    for m in chain.iter().filter(|m| Some(**m) != leaving) {
                        if let Some(l) = load.get_mut(m) {
                            *l += 1;
                        }
                    }
                }
            }
            let Some((&most, &high)) = load
                .iter()
                .max_by_key(|(s, l)| (**l, std::cmp::Reverse(**s)))
            else {
                return;
            };
            let Some((&least, &low)) = load.iter().min_by_key(|(s, l)| (**l, **s)) else {
                return;
            };
            if high <= low + 1 {
                return;
            }
            // Never the head: a live head that is replaced keeps serving until it learns of
            // the change, while the new head already serves. A region the least loaded server
            // held before it failed goes first: it rejoins that one with its data.
            let movable = |chain: &[ServerId], joining: &Option<Joiner>| {
                joining.is_none()
                    && chain.contains(&most)
                    && !chain.contains(&least)
                    && chain.first() != Some(&most)
            };
            let mut candidates = self.config.spaces.values().flat_map(|space| {
                space
                    .chains
                    .iter()
                    .zip(&space.joining)
                    .enumerate()
                    .filter(|(_, (chain, joining))| movable(chain, joining))
                    .map(|(i, _)| RegionId {
                        space: space.id,
                        index: i as u32,
                    })
            });
            let first = candidates.next();
            let Some(region) = candidates
                .chain(first)
                .find(|r| self.held_before(least, *r))
                .or(first)
            else {
                return;
            };
            let Some(space) = self.config.space_by_id_mut(region.space) else {
                return;
            };
            let i = region.index as usize;
            space.chains[i].push(least);
            space.joining[i] = Some(Joiner {
                server: least,
                since: next_version,
                replaces: Some(most),
            });
        }
    }

    /// Regions short of replicas that the available servers could fill, described for
    /// `wait-until-stable`; empty when the cluster is stable.
    pub fn unstable(&self) -> Vec<String> {
        let available = self.available().len();
        let mut out = Vec::new();
        for (name, space) in &self.config.spaces {
            let want = (space.schema.tolerate as usize + 1).min(available);
            let short = space.chains.iter().filter(|c| c.len() < want).count();
            if short > 0 {
                out.push(format!(
                    "{short} regions of space \"{name}\" are short of replicas"
                ));
            }
            let joining = space.joining.iter().filter(|j| j.is_some()).count();
            if joining > 0 {
                out.push(format!(
                    "{joining} regions of space \"{name}\" are being filled by state transfer"
                ));
            }
        }
        out
    }

    /// Servers by state, for `show-config`.
    pub fn servers_by_state(&self) -> BTreeMap<String, Vec<ServerId>> {
        let mut out: BTreeMap<String, Vec<ServerId>> = BTreeMap::new();
        for s in self.config.servers.values() {
            out.entry(s.state.to_string()).or_default().push(s.id);
        }
        out
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
