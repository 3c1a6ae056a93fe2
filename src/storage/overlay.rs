//! Writes staged since the last sync, over a store's durable contents.

use std::collections::BTreeMap;

use super::{KeyValues, Table};

pub(super) type Staged = BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>;

/// Merges durable entries with staged writes (which win, `None` deleting), both in key
/// order, stopping at `limit` results.
pub(super) fn merge_scan(
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
pub(super) fn staged_range<'a>(
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
