//! The end-of-run audit of value-dependent chaining: once the cluster is quiet, every member of
//! every subspace region holds, as current values, exactly the objects whose values place them
//! there, at the versions the key regions hold (a write that skipped a subspace region leaves
//! it without the object; a move that skipped the old region leaves the object in two).

use std::collections::BTreeMap;

use hyperdex::config::{Config, RegionId, SpaceConfig};
use hyperdex::daemon::record::{load, region_prefix, REGION_PREFIX_LEN};
use hyperdex::daemon::replica::load_entry;
use hyperdex::hyperspace::Subspace;
use hyperdex::storage::{Store, Table};
use hyperdex_model::Object;

use crate::cluster::SimCluster;

/// What a subspace region should hold, or holds: key → (version, object).
type Placed = BTreeMap<Vec<u8>, (u64, Object)>;

/// Checks every subspace region of every space; returns how many entries were compared.
pub fn placed(cluster: &SimCluster, config: &Config) -> Result<usize, String> {
    let mut compared = 0;
    for space in config.spaces.values() {
        let expected = expected(cluster, config, space)?;
        for (region, want) in expected {
            for member in config.chain(region) {
                let server = daemon(cluster, config, *member)?;
                let held = held(server, region)?;
                if held != want {
                    return Err(format!(
                        "subspace region {region} on {} differs from what the key regions place there:\n{}",
                        server.name,
                        differences(&held, &want)
                    ));
                }
                compared += held.len();
            }
        }
    }
    Ok(compared)
}

fn daemon<'a>(
    cluster: &'a SimCluster,
    config: &Config,
    member: hyperdex::config::ServerId,
) -> Result<&'a crate::cluster::Server, String> {
    let info = config
        .server(member)
        .ok_or(format!("server {member} is not in the configuration"))?;
    cluster
        .daemons
        .iter()
        .find(|d| d.addr == info.addr)
        .ok_or(format!("server {member} is not a simulated daemon"))
}

/// For each subspace region of `space`, what the key regions' objects place there.
fn expected(
    cluster: &SimCluster,
    config: &Config,
    space: &SpaceConfig,
) -> Result<BTreeMap<RegionId, Placed>, String> {
    let schema = &space.schema;
    let subspaces: Vec<Subspace> = schema
        .subspaces
        .iter()
        .filter_map(|s| Subspace::new(schema, &s.attributes, space.key_regions()))
        .collect();
    let mut out: BTreeMap<RegionId, Placed> = BTreeMap::new();
    for (i, _) in subspaces.iter().enumerate() {
        for r in 0..space.key_regions() {
            out.insert(space.subspace_region(i + 1, r), Placed::new());
        }
    }
    for region in space.key_region_ids() {
        let Some(&first) = config.chain(region).first() else {
            continue;
        };
        let server = daemon(cluster, config, first)?;
        let rows = server
            .store
            .scan_prefix(Table::Objects, &region_prefix(region))
            .map_err(|e| e.to_string())?;
        for (k, _) in rows {
            let kb = k[REGION_PREFIX_LEN..].to_vec();
            let stored = load(&server.store, region, &kb).map_err(|e| e.to_string())?;
            let Some(object) = stored.object else {
                continue;
            };
            let key = hyperdex_model::value::decode(&kb).map_err(|e| e.to_string())?;
            for (i, sub) in subspaces.iter().enumerate() {
                let at = space.subspace_region(i + 1, sub.region_of(&key, &object));
                let placed = out.entry(at).or_default();
                placed.insert(kb.clone(), (stored.version, object.clone()));
            }
        }
    }
    Ok(out)
}

/// The keys on which `held` and `want` differ (the first few), each as both see it.
fn differences(held: &Placed, want: &Placed) -> String {
    let keys: std::collections::BTreeSet<&Vec<u8>> = held.keys().chain(want.keys()).collect();
    keys.into_iter()
        .filter(|k| held.get(*k) != want.get(*k))
        .take(4)
        .map(|k| {
            let name = hyperdex_model::value::decode(k)
                .map_or_else(|_| format!("{k:?}"), |v| v.to_string());
            format!(
                "  key {name}: holds {:?}, placed {:?}",
                held.get(k),
                want.get(k)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The current values a member holds in a subspace region.
fn held(server: &crate::cluster::Server, region: RegionId) -> Result<Placed, String> {
    let rows = server
        .store
        .scan_prefix(Table::Subspace, &region_prefix(region))
        .map_err(|e| e.to_string())?;
    let mut out = Placed::new();
    for (k, _) in rows {
        let kb = k[REGION_PREFIX_LEN..].to_vec();
        let e = load_entry(&server.store, region, &kb).map_err(|e| e.to_string())?;
        if let Some(object) = e.current {
            out.insert(kb, (e.version, object));
        }
    }
    Ok(out)
}
