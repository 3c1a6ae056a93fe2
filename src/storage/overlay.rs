//! Writes staged since the last sync, over a store's durable contents: single keys put or
//! deleted, and whole key prefixes deleted without reading them (so deleting a region or a
//! space costs memory independent of its size).

use std::collections::BTreeMap;

use super::{KeyValues, Table};

pub type Staged = BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>;

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
        if let Some(v) = self.staged.get(&(table, key.to_vec())) {
            return Some(v.clone());
        }
        self.hides(table, key).then_some(None)
    }

    pub fn put(&mut self, table: Table, key: &[u8], value: Option<Vec<u8>>) {
        self.staged.insert((table, key.to_vec()), value);
    }

    /// Deletes every key under `prefix`, staged or durable.
    pub fn clear_prefix(&mut self, table: Table, prefix: &[u8]) {
        self.staged
            .retain(|(t, k), _| !(*t == table && k.starts_with(prefix)));
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
        (prefix, after): (&[u8], Option<&[u8]>),
        durable: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
        limit: usize,
    ) -> KeyValues {
        let durable = durable.filter(|(k, _)| !self.hides(table, k));
        merge_scan(
            durable,
            staged_range(&self.staged, table, prefix, after),
            limit,
        )
    }
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

/// Merges durable entries with staged writes (which win, `None` deleting), both in key
/// order, stopping at `limit` results.
fn merge_scan(
    mut durable: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
    mut staged: impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
    limit: usize,
) -> KeyValues {
    let mut out = Vec::new();
    let (mut d, mut s) = (durable.next(), staged.next());
    while out.len() < limit {
        let (take_staged, shadowed) = match (&d, &s) {
            (None, None) => break,
            (Some(_), None) => (false, false),
            (None, Some(_)) => (true, false),
            (Some((dk, _)), Some((sk, _))) => (sk <= dk, sk == dk),
        };
        if shadowed {
            d = durable.next();
        }
        if take_staged {
            if let Some((k, Some(v))) = s.take() {
                out.push((k, v));
            }
            s = staged.next();
        } else if let Some(entry) = d.take() {
            out.push(entry);
            d = durable.next();
        }
    }
    out
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
        Some(a) if a >= prefix => Bound::Excluded((table, a.to_vec())),
        _ => Bound::Included((table, prefix.to_vec())),
    };
    staged
        .range((lower, Bound::Unbounded))
        .take_while(move |((t, k), _)| *t == table && k.starts_with(prefix))
        .map(|((_, k), v)| (k.clone(), v.clone()))
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
