//! Writes staged since the last sync, over a store's durable contents: single keys put or
//! deleted, and whole key prefixes deleted without reading them (so deleting a region or a
//! space costs memory independent of its size).

use std::collections::BTreeMap;

use super::{KeyValues, Table};

/// One ordered map of keys per table, so that a lookup borrows its key instead of copying
/// it into a `(table, key)` pair, and rewriting a key already held allocates nothing.
#[derive(Clone, Debug)]
pub struct ByTable<V>([BTreeMap<Vec<u8>, V>; Table::ALL.len()]);

impl<V> Default for ByTable<V> {
    fn default() -> Self {
        ByTable(std::array::from_fn(|_| BTreeMap::new()))
    }
}

impl<V> ByTable<V> {
    pub fn get(&self, table: Table, key: &[u8]) -> Option<&V> {
        self.0[table as usize].get(key)
    }

    pub fn insert(&mut self, table: Table, key: &[u8], value: V) {
        let map = &mut self.0[table as usize];
        match map.get_mut(key) {
            Some(slot) => *slot = value,
            None => {
                map.insert(key.to_vec(), value);
            }
        }
    }

    /// One table's keys, in order.
    pub fn table(&self, table: Table) -> &BTreeMap<Vec<u8>, V> {
        &self.0[table as usize]
    }

    pub fn table_mut(&mut self, table: Table) -> &mut BTreeMap<Vec<u8>, V> {
        &mut self.0[table as usize]
    }

    /// Every entry, table by table, each in key order.
    pub fn iter(&self) -> impl Iterator<Item = (Table, &Vec<u8>, &V)> {
        Table::ALL
            .iter()
            .flat_map(move |&t| self.table(t).iter().map(move |(k, v)| (t, k, v)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(BTreeMap::is_empty)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        for map in &mut self.0 {
            map.retain(|_, v| keep(v));
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
        self.staged
            .table_mut(table)
            .retain(|k, _| !k.starts_with(prefix));
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
        .range::<[u8], _>((lower, Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
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
