//! The source's side of a window: which of its objects it sends, and in what form.
//!
//! The joiner's last acknowledgement lists the digests of what it holds next (`held`); an
//! object whose digest is among them is sent as [`TransferEntry::Unchanged`], so a server that
//! rejoins with its data receives only what changed while it was away. Without that list (the
//! first window of a transfer) every object is sent whole.

use sha2::{Digest as _, Sha256};

use crate::config::RegionId;
use crate::protocol::{Digest, TransferEntry};
use crate::storage::{KeyValues, Store, StoreError, Table};

use super::super::record::{object_key, region_prefix, REGION_PREFIX_LEN};
use super::super::retry_records::transfer_bytes;
use super::TRANSFER_WINDOW_BYTES;

/// Most bytes of keys an acknowledgement lists (long keys make for fewer).
const HELD_BYTES: usize = TRANSFER_WINDOW_BYTES / 4;

/// What the joiner said it holds after the current place: (key, digest) in key order, and
/// whether that is all it holds there.
pub type Held = (Vec<(Vec<u8>, Digest)>, bool);

/// A window's entries: (key, object or digest), in key order.
pub type Entries = Vec<(Vec<u8>, TransferEntry)>;

/// The digest of an object as a transfer sends it (`objects_after`), or of a subspace entry.
pub fn digest(bytes: &[u8]) -> Digest {
    let full = Sha256::digest(bytes);
    let mut d = [0; 16];
    d.copy_from_slice(&full[..16]);
    d
}

/// The region's objects (in `table`: a subspace region's entries are in their own) after key
/// `after` (at most `max`): (key, bytes), an object with its dedupe records inline
/// (`retry_records::transfer_bytes`), a subspace entry as stored.
pub fn objects_after(
    store: &dyn Store,
    (table, region): (Table, RegionId),
    after: Option<&[u8]>,
    max: usize,
) -> Result<KeyValues, StoreError> {
    let prefix = region_prefix(region);
    let after = after.map(|c| object_key(region, c));
    let rows = store.scan_from(table, &prefix, after.as_deref(), max)?;
    let mut out = Vec::with_capacity(rows.len());
    for (k, v) in rows {
        let key = k[REGION_PREFIX_LEN..].to_vec();
        let v = match table {
            Table::Objects => transfer_bytes(store, region, &key, &v)?,
            _ => v,
        };
        out.push((key, v));
    }
    Ok(out)
}

/// What a joiner holds after `after`: the digests of its next objects (at most `max`, with
/// keys of at most [`HELD_BYTES`] together), and whether there are no more.
pub fn held_after(
    store: &dyn Store,
    region: (Table, RegionId),
    after: Option<&[u8]>,
    max: usize,
) -> Result<Held, StoreError> {
    let rows = objects_after(store, region, after, max + 1)?;
    let mut all = rows.len() <= max;
    let mut held = Vec::with_capacity(rows.len().min(max));
    let mut bytes = 0;
    for (k, v) in rows.into_iter().take(max) {
        if bytes > HELD_BYTES {
            all = false;
            break;
        }
        bytes += k.len() + 16;
        held.push((k, digest(&v)));
    }
    Ok((held, all))
}

/// A window as the source reads it.
pub struct Window {
    pub entries: Entries,
    /// The key it ends with (`None`: the region's end).
    pub through: Option<Vec<u8>>,
    /// Bytes of its keys and of its objects or digests (what the rate limit counts).
    pub bytes: usize,
}

/// The next window of `region` after key `after`. At most `max` objects and about [`TRANSFER_WINDOW_BYTES`] bytes
/// (at least one entry); it ends no later than the last key the joiner described in `held`,
/// when there is more after it, so that every object in the window is compared with the
/// joiner's copy.
pub fn read_window(
    store: &dyn Store,
    region: (Table, RegionId),
    after: Option<&[u8]>,
    max: usize,
    held: Option<&Held>,
) -> Result<Window, StoreError> {
    let mut rows = objects_after(store, region, after, max + 1)?;
    let mut through = (rows.len() > max).then(|| rows[max - 1].0.clone());
    rows.truncate(max);
    if let Some((list, false)) = held {
        if let Some((joiner_end, _)) = list.last() {
            if through.as_ref().is_none_or(|t| joiner_end < t) {
                through = Some(joiner_end.clone());
                rows.retain(|(k, _)| k <= joiner_end);
            }
        }
    }
    let mut entries = Vec::with_capacity(rows.len());
    let mut bytes = 0;
    for (key, value) in rows {
        if bytes > TRANSFER_WINDOW_BYTES {
            // Full: the window ends with the previous entry.
            through = entries.last().map(|(k, _): &(Vec<u8>, _)| k.clone());
            break;
        }
        // Only an object the joiner described is hashed (none, in a transfer to an empty
        // joiner).
        let described = held.and_then(|(list, _)| {
            list.binary_search_by(|(k, _)| k.as_slice().cmp(&key))
                .ok()
                .map(|i| list[i].1)
        });
        let entry = match described {
            Some(d) if d == digest(&value) => {
                bytes += key.len() + d.len();
                TransferEntry::Unchanged(d)
            }
            _ => {
                bytes += key.len() + value.len();
                TransferEntry::Object(value)
            }
        };
        entries.push((key, entry));
    }
    Ok(Window {
        entries,
        through,
        bytes,
    })
}
