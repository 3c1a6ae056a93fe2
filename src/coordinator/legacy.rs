//! Reading a coordinator's state saved by an earlier version of its format.
//!
//! The state is saved with postcard, which records no field names: a field added to
//! `Cluster` or `Config` changes the layout. The current layout is saved under its own key
//! (`STATE_KEY`); a data directory that has only the key of the earlier layout is read with
//! that layout and converted, and saved in the current one at the next change.
//!
//! Layout 1 (key `coordinator-state`): `Config` without `read_only`, `Cluster` without
//! `departed`. Layout 2 (key `coordinator-state-2`): `Config` without `coordinators`, saved
//! whole after every change by a coordinator that was not replicated. The current state lives
//! in the replicated log's snapshot and entries (see `consensus`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::state::Cluster;
use crate::config::{Config, RegionId, ServerId, ServerInfo, SpaceConfig};

/// The key of layout 1.
pub const STATE_KEY_1: &[u8] = b"coordinator-state";

#[derive(Serialize, Deserialize)]
struct Config1 {
    version: u64,
    cluster: u64,
    servers: BTreeMap<ServerId, ServerInfo>,
    spaces: BTreeMap<String, SpaceConfig>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Cluster1 {
    config: Config1,
    next_server: u64,
    next_space: u64,
}

/// The key of layout 2.
pub const STATE_KEY_2: &[u8] = b"coordinator-state-2";

#[derive(Serialize, Deserialize)]
struct Config2 {
    version: u64,
    cluster: u64,
    servers: BTreeMap<ServerId, ServerInfo>,
    spaces: BTreeMap<String, SpaceConfig>,
    read_only: bool,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Cluster2 {
    config: Config2,
    next_server: u64,
    next_space: u64,
    departed: BTreeMap<ServerId, BTreeSet<RegionId>>,
}

/// Decodes a state saved in layout 2.
pub fn decode_2(bytes: &[u8]) -> Result<Cluster, postcard::Error> {
    let old: Cluster2 = postcard::from_bytes(bytes)?;
    let config = Config {
        version: old.config.version,
        cluster: old.config.cluster,
        servers: old.config.servers,
        spaces: old.config.spaces,
        read_only: old.config.read_only,
        coordinators: BTreeMap::new(),
    };
    let mut cluster = Cluster::from_parts(config, old.next_server, old.next_space);
    cluster.departed = old.departed;
    Ok(cluster)
}

/// Decodes a state saved in layout 1.
pub fn decode_1(bytes: &[u8]) -> Result<Cluster, postcard::Error> {
    let old: Cluster1 = postcard::from_bytes(bytes)?;
    let config = Config {
        version: old.config.version,
        cluster: old.config.cluster,
        servers: old.config.servers,
        spaces: old.config.spaces,
        read_only: false,
        coordinators: BTreeMap::new(),
    };
    Ok(Cluster::from_parts(config, old.next_server, old.next_space))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::state::Command;

    #[test]
    fn a_state_saved_in_layout_1_reads_as_it_was() {
        let mut c = Cluster::new(7);
        c.apply(&Command::Register {
            id: None,
            addr: "127.0.0.1:2012".into(),
        })
        .expect("register");
        c.apply(&Command::add_space("space s key k attributes int n").expect("space"))
            .expect("add space");
        let (next_server, next_space) = c.counters();
        let old = Cluster1 {
            config: Config1 {
                version: c.config.version,
                cluster: c.config.cluster,
                servers: c.config.servers.clone(),
                spaces: c.config.spaces.clone(),
            },
            next_server,
            next_space,
        };
        let bytes = postcard::to_allocvec(&old).expect("encode");
        assert_eq!(decode_1(&bytes).expect("decode"), c);
        // The current layout does not read it (hence the separate key).
        assert!(postcard::from_bytes::<Cluster>(&bytes).is_err());
    }

    #[test]
    fn a_state_saved_in_layout_2_reads_as_it_was() {
        let mut c = Cluster::new(7);
        c.apply(&Command::Register {
            id: None,
            addr: "127.0.0.1:2012".into(),
        })
        .expect("register");
        c.apply(&Command::add_space("space s key k attributes int n").expect("space"))
            .expect("add space");
        c.apply(&Command::ReadOnly(true)).expect("read-only");
        let (next_server, next_space) = c.counters();
        let old = Cluster2 {
            config: Config2 {
                version: c.config.version,
                cluster: c.config.cluster,
                servers: c.config.servers.clone(),
                spaces: c.config.spaces.clone(),
                read_only: true,
            },
            next_server,
            next_space,
            departed: c.departed.clone(),
        };
        let bytes = postcard::to_allocvec(&old).expect("encode");
        assert_eq!(decode_2(&bytes).expect("decode"), c);
    }
}
