//! The cluster configuration: servers, spaces, and the chain of servers for every region.
//!
//! The coordinator owns it and bumps `version` on every change; daemons and clients cache it.
//! Every request and chain message carries the sender's version, and a receiver with another
//! version refuses to act on it (see `PROTOCOL.md`'s rule, restated in `daemon`'s docs).
//!
//! **Placement.** A space's key subspace is cut into `partitions` regions of equal width over
//! the 64-bit hash of the key. The hash is FNV-1a (64-bit) over the key's canonical encoding
//! ([`hyperdex_model::value::encode`] of the key coerced to the key's type), followed by
//! MurmurHash3's 64-bit finalizer, which spreads the high bits that pick the region (FNV-1a
//! alone leaves them nearly equal for short keys such as `k1`, `k2`). Both are stable across
//! Rust versions and platforms, unlike `DefaultHasher`. Region `r` of `n` covers hashes
//! `[r·2⁶⁴/n, (r+1)·2⁶⁴/n)`. Each region is served by a chain of up to `tolerate + 1` servers,
//! head first.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hyperdex_model::value::{coerce, encode};
use hyperdex_model::{Datatype, Space, Value};
use serde::{Deserialize, Serialize};

/// A daemon's identity, assigned by the coordinator when it first registers and kept in its
/// data directory across restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServerId(pub u64);

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A space's identity; a space removed and added again gets a new one, so old data never
/// reappears under the new space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpaceId(pub u64);

/// One region: a space and the index of its partition of the key subspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RegionId {
    pub space: SpaceId,
    pub index: u32,
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.space.0, self.index)
    }
}

/// What the coordinator believes about a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerState {
    /// Registered and serving.
    Available,
    /// Declared failed (missed heartbeats or killed); removed from every chain.
    Failed,
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerState::Available => "AVAILABLE",
            ServerState::Failed => "FAILED",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub id: ServerId,
    /// `host:port` where the daemon listens.
    pub addr: String,
    pub state: ServerState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceConfig {
    pub id: SpaceId,
    pub schema: Space,
    /// For each region, its chain (head first): the key subspace's `partitions` regions first,
    /// then those of each `subspace` clause in turn ([`SpaceConfig::subspace_of`]).
    pub chains: Vec<Vec<ServerId>>,
    /// For each region, the server being filled by state transfer, if any. It is always the
    /// last member of the chain: it stores and acknowledges writes like a tail, but it never
    /// counts as a complete copy until the transfer from its predecessor is done.
    pub joining: Vec<Option<Joiner>>,
}

/// The identifier of a secondary index, as `list_indices` shows it and `rm_index` takes it:
/// the space's id times 65,536 plus the attribute's position among its non-key attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexId {
    pub space: SpaceId,
    pub attribute: u16,
}

impl From<u64> for IndexId {
    fn from(id: u64) -> IndexId {
        IndexId {
            space: SpaceId(id >> 16),
            attribute: id as u16,
        }
    }
}

impl From<IndexId> for u64 {
    fn from(id: IndexId) -> u64 {
        (id.space.0 << 16) | u64::from(id.attribute)
    }
}

impl SpaceConfig {
    /// The space's indexes: identifier and attribute, in the order they were added.
    pub fn indexes(&self) -> Vec<(u64, String)> {
        let schema = &self.schema;
        schema
            .indexes
            .iter()
            .filter_map(|name| {
                let pos = schema.attributes.iter().position(|a| &a.name == name)?;
                let id = IndexId {
                    space: self.id,
                    attribute: pos as u16,
                };
                Some((u64::from(id), name.clone()))
            })
            .collect()
    }

    /// The space's subspaces: identifier and attributes, the key's (subspace 0) first.
    pub fn subspaces(&self) -> Vec<(u64, Vec<String>)> {
        let schema = &self.schema;
        std::iter::once(vec![schema.key.name.clone()])
            .chain(schema.subspaces.iter().map(|s| s.attributes.clone()))
            .enumerate()
            .map(|(i, attrs)| ((self.id.0 << 16) | i as u64, attrs))
            .collect()
    }
}

/// A server being filled by state transfer, and the configuration version in which it
/// started: a new start (even of the same server) means a new, complete transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joiner {
    pub server: ServerId,
    pub since: u64,
    /// When the join moves a replica for balance: the member that leaves once it is done.
    #[serde(default)]
    pub replaces: Option<ServerId>,
}

impl Joiner {
    /// What identifies one join: the server and the version it started in.
    pub fn id(self) -> (ServerId, u64) {
        (self.server, self.since)
    }
}

/// A numbered configuration of the whole cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub version: u64,
    /// Random per cluster, so clients notice when an address now belongs to another cluster.
    pub cluster: u64,
    pub servers: BTreeMap<ServerId, ServerInfo>,
    pub spaces: BTreeMap<String, SpaceConfig>,
    /// Read-only mode: daemons refuse every write (READONLY) and go on serving reads.
    pub read_only: bool,
    /// The coordinators, by their id in the replicated log, and the address each serves on:
    /// daemons and clients learn them here and follow the leader among them.
    pub coordinators: BTreeMap<u64, String>,
}

/// Heartbeat, lease and failure-detection periods shared by coordinator and daemons.
///
/// A daemon serves only while its last heartbeat answered within `lease` (measured from when
/// it was sent); the coordinator declares a daemon failed after `failure_timeout`, which
/// must exceed `lease` by a margin, so a cut-off head stops serving before it is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub heartbeat_interval: Duration,
    pub lease: Duration,
    pub failure_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            heartbeat_interval: Duration::from_millis(100),
            lease: Duration::from_millis(600),
            failure_timeout: Duration::from_millis(1000),
        }
    }
}

/// The clock assumption: every server's clock runs at a rate within this fraction of real
/// time (2%: far looser than any working quartz clock, NTP-disciplined or not). Clocks need
/// not agree on the time, only on how long a lease lasts.
pub const MAX_CLOCK_DRIFT: f64 = 0.02;

impl Timing {
    /// How long, on any server's clock, until a lease granted at an instant has surely
    /// expired on the daemon's clock: `lease × (1 + ρ) / (1 − ρ)` for drift ρ
    /// ([`MAX_CLOCK_DRIFT`]).
    pub fn lease_bound(&self) -> Duration {
        self.lease
            .mul_f64((1.0 + MAX_CLOCK_DRIFT) / (1.0 - MAX_CLOCK_DRIFT))
    }

    /// Every period `factor` times longer: for a cluster that runs that much slower than
    /// usual (under valgrind, say), so that it does not declare its own servers failed.
    pub fn scaled(self, factor: u32) -> Timing {
        Timing {
            heartbeat_interval: self.heartbeat_interval * factor,
            lease: self.lease * factor,
            failure_timeout: self.failure_timeout * factor,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.failure_timeout <= self.lease_bound() + self.heartbeat_interval {
            return Err(format!(
                "failure timeout {:?} must exceed the lease {:?} (allowing for clocks {}% apart \
                 in rate) plus a heartbeat interval {:?}",
                self.failure_timeout,
                self.lease,
                MAX_CLOCK_DRIFT * 100.0,
                self.heartbeat_interval
            ));
        }
        Ok(())
    }
}

/// The configuration as `show-config` prints it.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self;
        writeln!(
            f,
            "cluster {:016x}, configuration version {}{}",
            c.cluster,
            c.version,
            if c.read_only { ", read-only" } else { "" }
        )?;
        if c.coordinators.len() > 1 {
            writeln!(f, "coordinators:")?;
            for (id, addr) in &c.coordinators {
                writeln!(f, "  coordinator {id} {addr}")?;
            }
        }
        writeln!(f, "servers:")?;
        for s in c.servers.values() {
            writeln!(f, "  server {} {} {}", s.id, s.addr, s.state)?;
        }
        for (name, s) in &c.spaces {
            writeln!(
                f,
                "space {name} (id {}, {} partitions, tolerate {} failures)",
                s.id.0,
                s.key_regions(),
                s.schema.tolerate
            )?;
            for (i, chain) in s.chains.iter().enumerate() {
                let members: Vec<String> = chain.iter().map(|m| m.to_string()).collect();
                let joining = match s.joining.get(i).copied().flatten().map(|j| j.server) {
                    Some(j) => format!(" (server {j} joining by state transfer)"),
                    None => String::new(),
                };
                writeln!(f, "  region {i}: [{}]{joining}", members.join(" -> "))?;
            }
        }
        Ok(())
    }
}

/// FNV-1a, 64-bit: the documented, stable hash used for placement.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's 64-bit finalizer: every input bit affects every output bit.
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The placement hash of a key's canonical bytes.
pub fn placement_hash(bytes: &[u8]) -> u64 {
    fmix64(fnv1a(bytes))
}

/// The canonical bytes of a key of `space` (coerced to the key's type), or `None` when the
/// value cannot be a key of this space.
pub fn key_bytes(space: &Space, key: &Value) -> Option<Vec<u8>> {
    match (space.key.datatype, key) {
        // Already of the key's type (nearly every call): nothing to coerce, nothing to copy.
        (Datatype::String, Value::String(_)) | (Datatype::Int, Value::Int(_)) => Some(encode(key)),
        _ => coerce(key.clone(), space.key.datatype)
            .ok()
            .map(|k| encode(&k)),
    }
}

/// The region index of a key hash among `partitions` equal ranges.
pub fn region_index(hash: u64, partitions: usize) -> u32 {
    ((u128::from(hash) * partitions as u128) >> 64) as u32
}

impl Config {
    pub fn space(&self, name: &str) -> Option<&SpaceConfig> {
        self.spaces.get(name)
    }

    pub fn space_by_id(&self, id: SpaceId) -> Option<&SpaceConfig> {
        self.spaces.values().find(|s| s.id == id)
    }

    pub fn space_by_id_mut(&mut self, id: SpaceId) -> Option<&mut SpaceConfig> {
        self.spaces.values_mut().find(|s| s.id == id)
    }

    pub fn server(&self, id: ServerId) -> Option<&ServerInfo> {
        self.servers.get(&id)
    }

    /// The chain serving region `r`.
    pub fn chain(&self, r: RegionId) -> &[ServerId] {
        self.space_by_id(r.space)
            .and_then(|s| s.chains.get(r.index as usize))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The server joining region `r` by state transfer, if any.
    pub fn joining(&self, r: RegionId) -> Option<ServerId> {
        self.joiner(r).map(|j| j.server)
    }

    /// The joiner of region `r` with the version its transfer started in.
    pub fn joiner(&self, r: RegionId) -> Option<Joiner> {
        self.space_by_id(r.space)
            .and_then(|s| s.joining.get(r.index as usize).copied().flatten())
    }

    /// Every region `server` belongs to, with its position in the chain.
    pub fn regions_of(&self, server: ServerId) -> Vec<(RegionId, usize)> {
        let mut out = Vec::new();
        for s in self.spaces.values() {
            for (i, chain) in s.chains.iter().enumerate() {
                if let Some(pos) = chain.iter().position(|&m| m == server) {
                    out.push((
                        RegionId {
                            space: s.id,
                            index: i as u32,
                        },
                        pos,
                    ));
                }
            }
        }
        out
    }
}

/// How many regions a space with this schema has: `partitions` for its key and for each
/// subspace.
pub fn regions_of_schema(schema: &Space) -> usize {
    schema.partitions.max(1) as usize * (1 + schema.subspaces.len())
}

impl SpaceConfig {
    /// How many regions each subspace has; the key subspace's are regions `0..` this.
    pub fn key_regions(&self) -> u32 {
        self.schema.partitions.max(1)
    }

    /// The key subspace's regions.
    pub fn key_region_ids(&self) -> impl Iterator<Item = RegionId> + '_ {
        (0..self.key_regions()).map(|index| RegionId {
            space: self.id,
            index,
        })
    }

    /// Which subspace region `index` belongs to (0: the key's; `i`: the `i`th `subspace`
    /// clause's) and its number within it.
    pub fn subspace_of(&self, index: u32) -> (usize, u32) {
        let n = self.key_regions();
        ((index / n) as usize, index % n)
    }

    /// Region `region` of subspace `subspace` (as [`SpaceConfig::subspace_of`] numbers them).
    pub fn subspace_region(&self, subspace: usize, region: u32) -> RegionId {
        RegionId {
            space: self.id,
            index: subspace as u32 * self.key_regions() + region,
        }
    }

    /// The region holding the object with these canonical key bytes.
    pub fn region_of_bytes(&self, key: &[u8]) -> RegionId {
        RegionId {
            space: self.id,
            index: region_index(placement_hash(key), self.key_regions() as usize),
        }
    }

    /// The region of `key`, or `None` when it cannot be a key of this space.
    pub fn region_of(&self, key: &Value) -> Option<RegionId> {
        key_bytes(&self.schema, key).map(|b| self.region_of_bytes(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A key's bytes are those of the key coerced to the space's key type, whichever
        /// path `key_bytes` takes.
        #[test]
        fn key_bytes_are_the_coerced_keys_bytes(
            ty in prop::sample::select(vec!["string", "int", "float", "timestamp(second)"]),
            key in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..16).prop_map(Value::String),
                any::<i64>().prop_map(Value::Int),
                any::<f64>().prop_map(Value::Float),
            ],
        ) {
            let space = hyperdex_model::schema::parse_space(
                &format!("space s key {ty} k attributes a")).unwrap();
            let expected = coerce(key.clone(), space.key.datatype).ok().map(|k| encode(&k));
            prop_assert_eq!(key_bytes(&space, &key), expected);
        }
    }

    #[test]
    fn fnv1a_matches_published_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn short_similar_keys_spread_over_regions() {
        let mut used = std::collections::BTreeSet::new();
        for i in 0..32 {
            let key = hyperdex_model::value::encode(&Value::string(format!("k{i}")));
            used.insert(region_index(placement_hash(&key), 4));
        }
        assert_eq!(
            used.len(),
            4,
            "32 keys k0..k31 land in every one of 4 regions"
        );
        assert_eq!(fmix64(0), 0);
    }

    #[test]
    fn regions_cover_the_hash_space_evenly() {
        assert_eq!(region_index(0, 64), 0);
        assert_eq!(region_index(u64::MAX, 64), 63);
        assert_eq!(region_index(1 << 63, 2), 1);
        assert_eq!(region_index((1 << 63) - 1, 2), 0);
        assert_eq!(region_index(u64::MAX, 1), 0);
    }
}
