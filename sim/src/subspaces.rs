//! The end-of-run audit of value-dependent chaining: once the cluster is quiet, every member of
//! every subspace region holds the values of every object that the key regions' objects place
//! there, at the versions the key regions hold (as current values or as values kept for
//! searches in progress). A write that skipped a subspace region leaves it without the object.
//!
//! This is the rule a subspace region keeps (`hyperspace::entry`): its keys are candidates that
//! a search resolves at the key's head, so a candidate too many (values of a write the key's
//! chain dropped before committing it, kept until the head commits a newer version) costs a
//! lookup, and only a missing one loses an object. The audit counts the extra ones.

use std::collections::BTreeMap;

use hyperdex::config::{Config, RegionId, SpaceConfig};
use hyperdex::daemon::record::{load, region_prefix, REGION_PREFIX_LEN};
use hyperdex::daemon::replica::load_entry;
use hyperdex::storage::{Store, Table};
use hyperdex_model::Object;

use crate::cluster::SimCluster;

/// What a subspace region should hold, or holds: key → (version, object).
type Placed = BTreeMap<Vec<u8>, (u64, Object)>;

/// What a subspace region's member holds: key → every (version, values) it keeps for it.
type Held = BTreeMap<Vec<u8>, Vec<(u64, Object)>>;

/// What the audit found: entries compared, and values held that no key region places there.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Audit {
    pub compared: usize,
    pub extra: usize,
}

/// Checks every subspace region of every space.
pub fn placed(cluster: &SimCluster, config: &Config) -> Result<Audit, String> {
    let mut audit = Audit::default();
    for space in config.spaces.values() {
        let expected = expected(cluster, config, space)?;
        for (region, want) in expected {
            for member in config.chain(region) {
                let server = daemon(cluster, config, *member)?;
                let held = held(server, region)?;
                let missing = missing(&held, &want);
                if !missing.is_empty() {
                    return Err(format!(
                        "subspace region {region} on {} lacks what the key regions place there:\n{missing}",
                        server.name,
                    ));
                }
                audit.compared += want.len();
                let kept: usize = held.values().map(Vec::len).sum();
                audit.extra += kept - want.len();
            }
        }
    }
    Ok(audit)
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
    let subspaces = hyperdex::hyperspace::of_space(space);
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

/// The placed objects `held` lacks (the first few), each with what is held for its key.
fn missing(held: &Held, want: &Placed) -> String {
    want.iter()
        .filter(|(k, placed)| !held.get(*k).is_some_and(|h| h.contains(placed)))
        .take(4)
        .map(|(k, placed)| {
            let name = hyperdex_model::value::decode(k)
                .map_or_else(|_| format!("{k:?}"), |v| v.to_string());
            format!("  key {name}: holds {:?}, placed {placed:?}", held.get(k))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The values a member keeps in a subspace region: current ones, and former ones (the values
/// of the version before the one that replaced them).
fn held(server: &crate::cluster::Server, region: RegionId) -> Result<Held, String> {
    let rows = server
        .store
        .scan_prefix(Table::Subspace, &region_prefix(region))
        .map_err(|e| e.to_string())?;
    let mut out = Held::new();
    for (k, _) in rows {
        let kb = k[REGION_PREFIX_LEN..].to_vec();
        let e = load_entry(&server.store, region, &kb).map_err(|e| e.to_string())?;
        let formers = e.formers.into_iter().map(|f| (f.until - 1, f.values));
        let kept: Vec<(u64, Object)> = e
            .current
            .map(|o| (e.version, o))
            .into_iter()
            .chain(formers)
            .collect();
        if !kept.is_empty() {
            out.insert(kb, kept);
        }
    }
    Ok(out)
}
