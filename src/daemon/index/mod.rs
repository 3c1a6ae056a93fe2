//! Secondary indexes inside a daemon: for each indexed attribute of a space, the entries
//! `(region, value, key)` of every object this daemon stores, in value order, so a search with
//! an equality or range predicate on the attribute reads only the entries in the predicate's
//! bounds instead of every object of the region.
//!
//! **Consistency by construction.** Every write of an object, whatever path it comes by (a
//! chain write, a commit, a state transfer, a removed space), goes through [`Indexed`], a
//! [`Store`] that updates the entries in the same batch as the object: the old value's entry
//! goes, the new value's entry comes. Entries and objects are synced together, so a crash keeps
//! them in step. A search still checks every candidate against the object itself and its
//! predicates, and skips an entry whose value is no longer the object's: an index narrows a
//! search and never decides its result.
//!
//! **Building.** An index added to a space that holds data (`add-index`, or a daemon that never
//! built it) is built in the background, a batch of objects per tick ([`Builds`]); writes made
//! meanwhile maintain their entries as usual. Until the build is done, searches scan. The
//! daemon records a built index in its store (`index-built` + space + attribute), with the
//! entries, and forgets it (entries and record) as soon as a configuration no longer has it.
//!
//! Store layout (table [`Table::Index`]): space id (8 bytes), attribute position (2), region
//! index (4), the value's [`encode::sortable`] bytes, the key's bytes; the value is empty.

pub mod encode;
mod scan;
pub mod subspace;

use std::collections::BTreeMap;
use std::sync::Arc;

use hyperdex_model::value::Datatype;
use hyperdex_model::{Space, Value};

use crate::bugs::{planted, Bug};
use crate::config::{Config, RegionId, SpaceId};
use crate::storage::{KeyValues, Store, StoreError, Table};

use super::record::{StoredObject, REGION_PREFIX_LEN};

pub use scan::{plan, scan_region, split_entry, Plan};
use subspace::SubspaceSpecs;

/// Objects indexed per tick by a build.
pub const BUILD_BATCH: usize = 4096;

const BUILT: &[u8] = b"index-built";

/// An indexed attribute: its position among the space's non-key attributes, name and type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub pos: u16,
    pub attr: String,
    pub ty: Datatype,
}

/// The indexes of every space in a configuration (only attributes whose values have an order:
/// strings, ints, floats, timestamps; a document index is accepted and not used), and the
/// ordered attributes of their subspaces ([`subspace`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Specs {
    indexes: BTreeMap<SpaceId, Vec<Spec>>,
    subspaces: BTreeMap<SpaceId, SubspaceSpecs>,
}

impl Specs {
    pub fn of(config: &Config) -> Specs {
        let mut out = Specs::default();
        for space in config.spaces.values() {
            let specs = specs_of(&space.schema);
            if !specs.is_empty() {
                out.indexes.insert(space.id, specs);
            }
            let subspaces = SubspaceSpecs::of(space);
            if !subspaces.is_empty() {
                out.subspaces.insert(space.id, subspaces);
            }
        }
        out
    }

    pub fn space(&self, space: SpaceId) -> &[Spec] {
        self.indexes.get(&space).map_or(&[], Vec::as_slice)
    }

    fn has(&self, space: SpaceId, pos: u16) -> bool {
        self.space(space).iter().any(|s| s.pos == pos)
    }
}

/// The indexes of one space that this daemon keeps.
pub fn specs_of(schema: &Space) -> Vec<Spec> {
    schema
        .indexes
        .iter()
        .filter_map(|name| {
            let pos = schema.attributes.iter().position(|a| &a.name == name)?;
            let ty = schema.attributes[pos].datatype;
            orderable(ty).then(|| Spec {
                pos: pos as u16,
                attr: name.clone(),
                ty,
            })
        })
        .collect()
}

fn orderable(ty: Datatype) -> bool {
    matches!(
        ty,
        Datatype::String | Datatype::Int | Datatype::Float | Datatype::Timestamp(_)
    )
}

/// The prefix of one index's entries: space, attribute.
fn index_prefix(space: SpaceId, pos: u16) -> Vec<u8> {
    let mut k = space.0.to_be_bytes().to_vec();
    k.extend_from_slice(&pos.to_be_bytes());
    k
}

/// The prefix of one index's entries in one region.
pub fn region_entries(region: RegionId, pos: u16) -> Vec<u8> {
    let mut k = index_prefix(region.space, pos);
    k.extend_from_slice(&region.index.to_be_bytes());
    k
}

fn entry(region: RegionId, pos: u16, value: &[u8], key: &[u8]) -> Vec<u8> {
    let mut k = region_entries(region, pos);
    k.extend_from_slice(value);
    k.extend_from_slice(key);
    k
}

fn built_key(space: SpaceId, pos: u16) -> Vec<u8> {
    let mut k = BUILT.to_vec();
    k.extend_from_slice(&index_prefix(space, pos));
    k
}

/// Whether this daemon's index of `pos` in `space` covers every object it stores.
pub fn is_built(store: &dyn Store, space: SpaceId, pos: u16) -> Result<bool, StoreError> {
    Ok(store.get(Table::Meta, &built_key(space, pos))?.is_some())
}

/// The encoded value an object has for an index, if the object is live and has one.
fn indexed_value(stored: Option<&StoredObject>, spec: &Spec) -> Option<Vec<u8>> {
    let value: &Value = stored?.object.as_ref()?.get(&spec.attr)?;
    encode::sortable(value)
}

fn decode(bytes: Option<&[u8]>) -> Option<StoredObject> {
    super::record::decode(bytes?)
}

/// A store that keeps the index entries of the objects written through it in step with them.
pub struct Indexed<'a> {
    inner: &'a mut dyn Store,
    specs: Arc<Specs>,
}

impl<'a> Indexed<'a> {
    pub fn new(inner: &'a mut dyn Store, specs: Arc<Specs>) -> Indexed<'a> {
        Indexed { inner, specs }
    }

    fn maintain(&mut self, k: &[u8], new: Option<&[u8]>) {
        let Some((space, region, key)) = split_object_key(k) else {
            return;
        };
        let specs = self.specs.clone();
        let specs = specs.space(space);
        if specs.is_empty() {
            return;
        }
        // An unreadable old copy has no entries to remove that a search would not skip.
        let old = self.inner.get(Table::Objects, k).ok().flatten();
        let old = decode(old.as_deref());
        let new = decode(new);
        for spec in specs {
            let (was, is) = (
                indexed_value(old.as_ref(), spec),
                indexed_value(new.as_ref(), spec),
            );
            if was == is {
                continue;
            }
            if let Some(v) = &was {
                self.inner
                    .put(Table::Index, &entry(region, spec.pos, v, key), None);
                if planted(Bug::IndexMissesUpdate) {
                    continue;
                }
            }
            if let Some(v) = &is {
                self.inner.put(
                    Table::Index,
                    &entry(region, spec.pos, v, key),
                    Some(Vec::new()),
                );
            }
        }
    }
}

/// (space, region, key) of an object's store key.
fn split_object_key(k: &[u8]) -> Option<(SpaceId, RegionId, &[u8])> {
    if k.len() < REGION_PREFIX_LEN {
        return None;
    }
    let space = SpaceId(u64::from_be_bytes(k[..8].try_into().ok()?));
    let index = u32::from_be_bytes(k[8..12].try_into().ok()?);
    Some((space, RegionId { space, index }, &k[REGION_PREFIX_LEN..]))
}

impl Store for Indexed<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }

    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        self.inner.scan_from(table, prefix, after, limit)
    }

    fn put(&mut self, table: Table, key: &[u8], value: Option<Vec<u8>>) {
        if table == Table::Objects {
            self.maintain(key, value.as_deref());
        }
        if table == Table::Subspace {
            let specs = self.specs.clone();
            let space = split_object_key(key).map(|(s, _, _)| s);
            if let Some(specs) = space.and_then(|s| specs.subspaces.get(&s)) {
                let old = self.inner.get(Table::Subspace, key).ok().flatten();
                subspace::maintain(self.inner, specs, key, old.as_deref(), value.as_deref());
            }
        }
        self.inner.put(table, key, value);
    }

    fn delete_prefix(&mut self, table: Table, prefix: &[u8]) {
        // Whole spaces are deleted this way (a removed space): their entries go with them.
        debug_assert!(!matches!(table, Table::Objects | Table::Subspace) || prefix.len() <= 8);
        if matches!(table, Table::Objects | Table::Subspace) && prefix.len() <= 8 {
            self.inner.delete_prefix(Table::Index, prefix);
        }
        self.inner.delete_prefix(table, prefix);
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.inner.sync()
    }
}

/// Indexes being built on this daemon: where each build has got to (the store key of the last
/// object indexed).
#[derive(Debug, Default)]
pub struct Builds(BTreeMap<(SpaceId, u16), Option<Vec<u8>>>);

impl Builds {
    /// After a new configuration: indexes it no longer has are forgotten (entries and record);
    /// indexes it has that this daemon has not built start building from scratch (entries a
    /// crash left behind are removed first, as they may be stale).
    pub fn reconcile(&mut self, store: &mut dyn Store, specs: &Specs) -> Result<(), StoreError> {
        for (k, _) in store.scan_prefix(Table::Meta, BUILT)? {
            let Some((space, pos)) = split_built(&k) else {
                continue;
            };
            if !specs.has(space, pos) {
                store.put(Table::Meta, &k, None);
                store.delete_prefix(Table::Index, &index_prefix(space, pos));
            }
        }
        self.0.retain(|(space, pos), _| {
            let keep = specs.has(*space, *pos);
            if !keep {
                store.delete_prefix(Table::Index, &index_prefix(*space, *pos));
            }
            keep
        });
        for (space, list) in &specs.indexes {
            for spec in list {
                let id = (*space, spec.pos);
                if !self.0.contains_key(&id) && !is_built(store, *space, spec.pos)? {
                    store.delete_prefix(Table::Index, &index_prefix(*space, spec.pos));
                    self.0.insert(id, None);
                }
            }
        }
        Ok(())
    }

    /// One batch of every build in progress; a build that reaches the end of the space's
    /// objects records its index as built.
    pub fn step(&mut self, store: &mut dyn Store, specs: &Specs) -> Result<(), StoreError> {
        let mut done = Vec::new();
        for ((space, pos), cursor) in self.0.iter_mut() {
            let Some(spec) = specs.space(*space).iter().find(|s| s.pos == *pos) else {
                continue;
            };
            let prefix = space.0.to_be_bytes();
            let batch = store.scan_from(Table::Objects, &prefix, cursor.as_deref(), BUILD_BATCH)?;
            for (k, v) in &batch {
                let Some((_, region, key)) = split_object_key(k) else {
                    continue;
                };
                if let Some(value) = indexed_value(decode(Some(v)).as_ref(), spec) {
                    store.put(
                        Table::Index,
                        &entry(region, *pos, &value, key),
                        Some(Vec::new()),
                    );
                }
            }
            match batch.last() {
                Some((k, _)) if batch.len() == BUILD_BATCH => *cursor = Some(k.clone()),
                _ => {
                    crate::probe!("index.built");
                    store.put(Table::Meta, &built_key(*space, *pos), Some(vec![1]));
                    done.push((*space, *pos));
                }
            }
        }
        for id in done {
            self.0.remove(&id);
        }
        Ok(())
    }

    pub fn in_progress(&self) -> usize {
        self.0.len()
    }
}

fn split_built(k: &[u8]) -> Option<(SpaceId, u16)> {
    let rest = k.strip_prefix(BUILT)?;
    if rest.len() != 10 {
        return None;
    }
    let space = SpaceId(u64::from_be_bytes(rest[..8].try_into().ok()?));
    Some((space, u16::from_be_bytes([rest[8], rest[9]])))
}

#[cfg(test)]
mod subspace_tests;
#[cfg(test)]
mod tests;
