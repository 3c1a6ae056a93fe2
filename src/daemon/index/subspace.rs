//! Entries of subspace regions in value order: for every attribute of a region's subspace that
//! has an order, the entries `(region, value, key)` of every value the region keeps for a key
//! (current values and those kept for searches in progress), so a search with an equality or
//! range check on the attribute reads only the region's keys within the check's bounds. An
//! int subspace over small values puts everything in one region (its coordinate preserves
//! order over all of `i64`): without these entries, a range of 100 numbers would examine all
//! of them.
//!
//! They are kept like the `index` clauses' entries ([`super::Indexed`] writes them in the
//! batch that writes the region's entry), in the same table, under attribute positions with
//! [`SUBSPACE_POS`] set, so that adding or removing an `index` never touches them. A daemon
//! whose store predates them writes them for everything it holds when it installs its first
//! configuration ([`ensure_built`]). A search still checks each key's values: the entries
//! narrow it and never decide it.

use std::collections::{BTreeMap, BTreeSet};

use hyperdex_model::{Check, Object};

use crate::config::{Config, RegionId, SpaceConfig, SpaceId};
use crate::hyperspace::entry::Entry;
use crate::storage::{Store, StoreError, Table};

use super::scan::{plan_over, Plan};
use super::{entry, orderable, split_object_key, Spec};

/// Set in the attribute position of a subspace region's entries.
pub const SUBSPACE_POS: u16 = 0x8000;

/// Written once every subspace region's entries of this store are in place.
const BUILT: &[u8] = b"subspace-entries-built";

/// Entries read from the store at a time by [`ensure_built`].
const BUILD_WINDOW: usize = 1024;

/// The ordered attributes of each subspace of a space (the key subspace's, first, is empty:
/// its regions hold objects, indexed by `index` clauses only), and its regions per subspace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubspaceSpecs {
    regions: u32,
    attrs: Vec<Vec<Spec>>,
}

impl SubspaceSpecs {
    pub fn of(space: &SpaceConfig) -> SubspaceSpecs {
        let schema = &space.schema;
        let spec_of = |name: &String| {
            let pos = schema.attributes.iter().position(|a| &a.name == name)?;
            let ty = schema.attributes[pos].datatype;
            orderable(ty).then(|| Spec {
                pos: SUBSPACE_POS | pos as u16,
                attr: name.clone(),
                ty,
            })
        };
        let attrs = std::iter::once(Vec::new())
            .chain(
                schema
                    .subspaces
                    .iter()
                    .map(|s| s.attributes.iter().filter_map(spec_of).collect()),
            )
            .collect();
        SubspaceSpecs {
            regions: space.key_regions(),
            attrs,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.attrs.iter().all(Vec::is_empty)
    }

    /// The ordered attributes of `region`'s subspace.
    pub fn of_region(&self, region: RegionId) -> &[Spec] {
        let subspace = (region.index / self.regions.max(1)) as usize;
        self.attrs.get(subspace).map_or(&[], Vec::as_slice)
    }

    /// The entries a search of subspace region `region` reads for `checks`, if they bound one
    /// of its subspace's ordered attributes.
    pub fn plan(&self, region: RegionId, checks: &[Check]) -> Option<Plan> {
        plan_over(self.of_region(region), checks)
    }
}

/// Every encoded value a stored entry keeps for each of `specs`.
fn values(bytes: Option<&[u8]>, specs: &[Spec]) -> BTreeSet<(u16, Vec<u8>)> {
    let Some(e) = bytes.and_then(|b| postcard::from_bytes::<Entry<Object>>(b).ok()) else {
        return BTreeSet::new();
    };
    let kept = e.current.iter().chain(e.formers.iter().map(|f| &f.values));
    let mut out = BTreeSet::new();
    for o in kept {
        for spec in specs {
            if let Some(v) = o.get(&spec.attr).and_then(super::encode::sortable) {
                out.insert((spec.pos, v));
            }
        }
    }
    out
}

/// Keeps the entries of the subspace region entry stored under `k` in step with its new
/// bytes `new` (`None`: deleted), given the old ones.
pub(super) fn maintain(
    inner: &mut dyn Store,
    specs: &SubspaceSpecs,
    k: &[u8],
    old: Option<&[u8]>,
    new: Option<&[u8]>,
) {
    let Some((_, region, key)) = split_object_key(k) else {
        return;
    };
    let attrs = specs.of_region(region);
    if attrs.is_empty() {
        return;
    }
    let (was, is) = (values(old, attrs), values(new, attrs));
    for (pos, v) in was.difference(&is) {
        inner.put(Table::Index, &entry(region, *pos, v, key), None);
    }
    for (pos, v) in is.difference(&was) {
        inner.put(Table::Index, &entry(region, *pos, v, key), Some(Vec::new()));
    }
}

/// At a daemon's first configuration: writes the entries of every subspace region entry it
/// holds, unless its store already records them as built.
pub fn ensure_built(store: &mut dyn Store, config: &Config) -> Result<(), StoreError> {
    if store.get(Table::Meta, BUILT)?.is_some() {
        return Ok(());
    }
    let specs: BTreeMap<SpaceId, SubspaceSpecs> = config
        .spaces
        .values()
        .map(|s| (s.id, SubspaceSpecs::of(s)))
        .collect();
    let mut after: Option<Vec<u8>> = None;
    let mut written = 0usize;
    loop {
        let window = store.scan_from(Table::Subspace, &[], after.as_deref(), BUILD_WINDOW)?;
        let Some((last, _)) = window.last() else {
            break;
        };
        after = Some(last.clone());
        for (k, v) in &window {
            let space = split_object_key(k).map(|(s, _, _)| s);
            if let Some(specs) = space.and_then(|s| specs.get(&s)) {
                maintain(store, specs, k, None, Some(v));
                written += 1;
            }
        }
    }
    if written > 0 {
        tracing::info!(
            entries = written,
            "subspace regions' entries written in value order (a store that predates them)"
        );
    }
    store.put(Table::Meta, BUILT, Some(vec![1]));
    Ok(())
}
