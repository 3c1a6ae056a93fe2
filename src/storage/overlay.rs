//! Writes staged since the last sync, over a store's durable contents: single keys put or
//! deleted, and whole key prefixes deleted without reading them (so deleting a region or a
//! space costs memory independent of its size).

// The hash maps here are looked up and pruned, never iterated: what is listed in order comes
// from a `BTreeSet`, so no result depends on a hash map's order. Their hasher is std's,
// keyed at random (keys come from clients). They are `hashbrown`'s maps for `entry_ref`: a
// key not held yet is hashed once and copied only when it is inserted.
#![allow(clippy::disallowed_types)]

use std::collections::BTreeSet;
use std::hash::RandomState;
use std::sync::Arc;

use hashbrown::hash_map::EntryRef;

type HashMap<K, V> = hashbrown::HashMap<K, V, RandomState>;

use super::{KeyValues, Table};

/// One table's entries: found by hashing their key (a put or get of a key held costs no
/// key comparisons, which the long shared prefixes of a region's keys make slow), listed in
/// key order from a set of the same keys (one allocation per key, shared by both).
#[derive(Clone, Debug)]
pub struct Keyed<V> {
    values: HashMap<Arc<[u8]>, V>,
    order: BTreeSet<Arc<[u8]>>,
}

impl<V> Default for Keyed<V> {
    fn default() -> Self {
        Keyed {
            values: HashMap::default(),
            order: BTreeSet::new(),
        }
    }
}

impl<V> Keyed<V> {
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.values.get(key)
    }

    /// Sets `key`'s entry; rewriting a key already held allocates nothing.
    pub fn insert(&mut self, key: &[u8], value: V) {
        match self.values.entry_ref(key) {
            EntryRef::Occupied(mut slot) => {
                slot.insert(value);
            }
            EntryRef::Vacant(slot) => {
                let key: Arc<[u8]> = Arc::from(key);
                self.order.insert(key.clone());
                slot.insert_entry_with_key(key, value);
            }
        }
    }

    /// The entries from `lower` on, in key order.
    pub fn range<'a>(
        &'a self,
        lower: std::ops::Bound<&[u8]>,
    ) -> impl Iterator<Item = (&'a [u8], &'a V)> + 'a {
        self.order
            .range::<[u8], _>((lower, std::ops::Bound::Unbounded))
            .filter_map(move |k| Some((&**k, self.values.get(&**k)?)))
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.range(std::ops::Bound::Unbounded)
    }

    /// Drops every entry whose key starts with `prefix`.
    pub fn remove_prefix(&mut self, prefix: &[u8]) {
        let doomed: Vec<Arc<[u8]>> = self
            .order
            .range::<[u8], _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for k in doomed {
            self.order.remove(&k);
            self.values.remove(&k);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// One [`Keyed`] map of keys per table, so that a lookup borrows its key instead of copying
/// it into a `(table, key)` pair.
#[derive(Clone, Debug)]
pub struct ByTable<V>([Keyed<V>; Table::ALL.len()]);

impl<V> Default for ByTable<V> {
    fn default() -> Self {
        ByTable(std::array::from_fn(|_| Keyed::default()))
    }
}

impl<V> ByTable<V> {
    pub fn get(&self, table: Table, key: &[u8]) -> Option<&V> {
        self.0[table as usize].get(key)
    }

    pub fn insert(&mut self, table: Table, key: &[u8], value: V) {
        self.0[table as usize].insert(key, value);
    }

    /// One table's entries.
    pub fn table(&self, table: Table) -> &Keyed<V> {
        &self.0[table as usize]
    }

    pub fn table_mut(&mut self, table: Table) -> &mut Keyed<V> {
        &mut self.0[table as usize]
    }

    /// Every entry, table by table, each in key order.
    pub fn iter(&self) -> impl Iterator<Item = (Table, &[u8], &V)> {
        Table::ALL
            .iter()
            .flat_map(move |&t| self.table(t).iter().map(move |(k, v)| (t, k, v)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Keyed::is_empty)
    }
}

/// Keys with a write in a log record not yet durable, per table, and the newest such
/// record's sequence number: looked up and pruned, never listed.
#[derive(Debug, Default)]
pub struct Unsynced([HashMap<Vec<u8>, u64>; Table::ALL.len()]);

impl Unsynced {
    pub fn get(&self, table: Table, key: &[u8]) -> Option<u64> {
        self.0[table as usize].get(key).copied()
    }

    pub fn insert(&mut self, table: Table, key: &[u8], seq: u64) {
        *self.0[table as usize].entry_ref(key).or_insert(seq) = seq;
    }

    /// Forgets the keys whose newest write is in record `seq` or an earlier one (and the
    /// room a large record took: pruning costs as much as the room kept).
    pub fn durable_through(&mut self, seq: u64) {
        for map in &mut self.0 {
            map.retain(|_, s| *s > seq);
            if map.capacity() > 1024 && map.len() * 4 < map.capacity() {
                map.shrink_to(map.len() * 2);
            }
        }
    }
}

pub type Staged = ByTable<Option<Vec<u8>>>;

/// What a store has staged since its last sync.
#[derive(Debug, Default)]
pub struct Overlay {
    /// Single keys: `Some` puts, `None` deletes. Applied after `cleared`.
    pub staged: Staged,
    /// Prefixes deleted whole.
    pub cleared: Vec<(Table, Vec<u8>)>,
}

impl Overlay {
    /// What the overlay says of `key`: `Some(value)` if it decides it (`Some(None)`:
    /// deleted), `None` if the durable contents do.
    pub fn get(&self, table: Table, key: &[u8]) -> Option<Option<Vec<u8>>> {
        if let Some(v) = self.staged.get(table, key) {
            return Some(v.clone());
        }
        self.hides(table, key).then_some(None)
    }

    pub fn put(&mut self, table: Table, key: &[u8], value: Option<Vec<u8>>) {
        self.staged.insert(table, key, value);
    }

    /// Deletes every key under `prefix`, staged or durable.
    pub fn clear_prefix(&mut self, table: Table, prefix: &[u8]) {
        self.staged.table_mut(table).remove_prefix(prefix);
        self.cleared.push((table, prefix.to_vec()));
    }

    /// Whether a durable entry is deleted by a cleared prefix.
    pub fn hides(&self, table: Table, key: &[u8]) -> bool {
        self.cleared
            .iter()
            .any(|(t, p)| *t == table && key.starts_with(p))
    }

    pub fn is_empty(&self) -> bool {
        self.staged.is_empty() && self.cleared.is_empty()
    }

    /// Up to `limit` entries under `prefix` after `after`: `durable` (in key order) with
    /// the overlay applied.
    pub fn scan(
        &self,
        table: Table,
        range: (&[u8], Option<&[u8]>),
        durable: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
        limit: usize,
    ) -> KeyValues {
        self.over(table, range, durable).take(limit).collect()
    }

    /// The entries under `prefix` after `after` of `below` (in key order) with the overlay
    /// applied, read lazily: overlays stack (`b.over(.., a.over(.., durable))`).
    pub fn over<'a>(
        &'a self,
        table: Table,
        (prefix, after): (&'a [u8], Option<&[u8]>),
        below: impl Iterator<Item = (Vec<u8>, Vec<u8>)> + 'a,
    ) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + 'a {
        Merge {
            below: below.filter(move |(k, _)| !self.hides(table, k)).peekable(),
            staged: staged_range(&self.staged, table, prefix, after).peekable(),
        }
    }
}

/// `durable` with `overs` stacked on it, the first lowest.
pub fn stack<'a>(
    table: Table,
    range: (&'a [u8], Option<&'a [u8]>),
    overs: &[&'a Overlay],
    durable: Box<dyn Iterator<Item = (Vec<u8>, Vec<u8>)> + 'a>,
) -> Box<dyn Iterator<Item = (Vec<u8>, Vec<u8>)> + 'a> {
    overs.iter().fold(durable, |below, over| {
        Box::new(over.over(table, range, below))
    })
}

/// The first key after every key that starts with `prefix` (`None`: no such key).
pub(super) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Entries below merged with staged writes (which win, `None` deleting), both in key order.
struct Merge<D: Iterator, S: Iterator> {
    below: std::iter::Peekable<D>,
    staged: std::iter::Peekable<S>,
}

impl<D, S> Iterator for Merge<D, S>
where
    D: Iterator<Item = (Vec<u8>, Vec<u8>)>,
    S: Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
{
    type Item = (Vec<u8>, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (staged_first, shadowed) = match (self.below.peek(), self.staged.peek()) {
                (None, None) => return None,
                (Some(_), None) => (false, false),
                (None, Some(_)) => (true, false),
                (Some((dk, _)), Some((sk, _))) => (sk <= dk, sk == dk),
            };
            if shadowed {
                self.below.next();
            }
            if !staged_first {
                return self.below.next();
            }
            if let Some((k, Some(v))) = self.staged.next() {
                return Some((k, v));
            }
        }
    }
}

/// The staged writes of `table` under `prefix` after `after`, in key order.
fn staged_range<'a>(
    staged: &'a Staged,
    table: Table,
    prefix: &'a [u8],
    after: Option<&[u8]>,
) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> + 'a {
    use std::ops::Bound;
    let lower = match after {
        Some(a) if a >= prefix => Bound::Excluded(a),
        _ => Bound::Included(prefix),
    };
    staged
        .table(table)
        .range(lower)
        .take_while(move |(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.to_vec(), v.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_where_its_keys_do() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }
}
