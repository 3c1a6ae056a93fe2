//! The joiner's side of a window: making its copy of the window's key range equal to the
//! source's.
//!
//! A joiner keeps what it held of a region before the join (a restart, or an earlier
//! membership), but trusts none of it until a window covering the key has been applied: that
//! copy may miss writes made while it was away, or hold writes that were never committed (it
//! was head, stored a write and failed before passing it on; the chain then gave that
//! version to another write). Within a window's range `(after, through]` the joiner's copy
//! ends up as a full transfer would leave it:
//!
//! - an object sent whole replaces the joiner's copy, unless a write reached the joiner
//!   during this join (then the newer version stays and takes the older copy's retry
//!   records, see [`store_transferred`]);
//! - an object sent as unchanged is kept if the joiner's copy has that digest; if it has
//!   not (a write changed it since the joiner described it), the window is applied only up
//!   to the key before it, and the source resends from there;
//! - a key the joiner holds that the source does not is removed, unless it was written
//!   during this join (the source stores a write only when the joiner has acknowledged it,
//!   so it may not have it yet). Every key ever committed is on the source, as an object or
//!   a tombstone: a key it lacks was never committed (a write the joiner stored as tail whose
//!   commit the other members lost in a power failure, before anyone was answered).

use std::collections::{BTreeSet, VecDeque};

use crate::bugs::{planted, Bug};
use hyperdex_model::Object;

use crate::config::RegionId;
use crate::daemon::replica::{load_entry, stage_entry};
use crate::hyperspace::entry::Entry;
use crate::protocol::{TransferData, TransferEntry};
use crate::storage::{Store, StoreError, Table};

use super::super::record::{load, merge_older_records, object_key, stage};
use super::super::retry_records;
use super::window::{digest, objects_after};

/// The joiner's own objects are read this many at a time while a window is applied.
const CHUNK: usize = 1024;

/// What applying a window did.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// The joiner's copy now equals the source's up to this key.
    pub upto: Option<Vec<u8>>,
    /// Up to the region's end: the transfer is complete.
    pub complete: bool,
    /// Objects of the window taken (sent whole or kept unchanged).
    pub objects: u64,
    /// Bytes of objects sent whole.
    pub bytes: u64,
}

/// Applies window `t` to the joiner's copy; `live` are the keys after the window's start
/// that writes reached during this join.
pub fn apply_window(
    store: &mut dyn Store,
    t: &TransferData,
    table: Table,
    live: &BTreeSet<Vec<u8>>,
) -> Result<Applied, StoreError> {
    let region = t.region;
    let in_range = |k: &[u8]| t.through.as_deref().is_none_or(|end| k <= end);
    let mut done = Applied {
        upto: t.after.clone(),
        ..Applied::default()
    };
    let mut mine = Mine::new(table, t.after.clone());
    let mut incoming = t.entries.iter().peekable();
    loop {
        let own = mine.peek(store, region, &in_range)?.map(<[u8]>::to_vec);
        let (key, theirs, held) = match (own, incoming.peek()) {
            (None, None) => break,
            (Some(k), Some((ik, _))) if k < *ik => (k, None, mine.pop()),
            (Some(k), Some((ik, _))) if k == *ik => {
                (k, incoming.next().map(|(_, e)| e), mine.pop())
            }
            (_, Some((ik, e))) => {
                let (key, e) = (ik.clone(), Some(e));
                incoming.next();
                (key, e, None)
            }
            (Some(k), None) => (k, None, mine.pop()),
        };
        let written_live = live.contains(&key);
        let had = held.is_some();
        match (theirs, held) {
            (None, Some(_)) if written_live || planted(Bug::KeepStaleKeys) => {}
            (None, Some(_)) => {
                crate::probe!("transfer.stale_removed");
                tracing::debug!(%region, key = %String::from_utf8_lossy(&key), "transfer: removing a key the source lacks");
                match table {
                    Table::Objects => retry_records::remove(store, region, &key)?,
                    _ => store.put(table, &object_key(region, &key), None),
                }
            }
            (None, None) => {}
            (Some(TransferEntry::Object(bytes)), _) => {
                done.bytes += (key.len() + bytes.len()) as u64;
                match table {
                    Table::Subspace => store_entry(store, region, &key, bytes, written_live)?,
                    _ => store_object(store, region, &key, bytes, (written_live, had))?,
                }
            }
            (Some(TransferEntry::Unchanged(d)), Some((_, v))) if digest(&v) == *d => {
                crate::probe!("transfer.unchanged_kept");
            }
            (Some(TransferEntry::Unchanged(_)), Some(_)) if written_live => {
                // Written since the joiner described it: its copy is the source's plus later
                // writes of the chain, so it stays.
                crate::probe!("transfer.changed_live_kept");
            }
            (Some(TransferEntry::Unchanged(_)), _) => {
                // Held no longer (not possible without a write, which makes the key live):
                // resume before it.
                crate::probe!("transfer.unchanged_refused");
                return Ok(done);
            }
        }
        if theirs.is_some() {
            done.objects += 1;
        }
        done.upto = Some(key);
    }
    match &t.through {
        Some(end) => done.upto = Some(end.clone()),
        None => done.complete = true,
    }
    Ok(done)
}

/// Stores an object sent whole: over the joiner's copy (`had`: it holds one), or, if a write
/// reached the joiner during this join, only where newer.
fn store_object(
    store: &mut dyn Store,
    region: RegionId,
    key: &[u8],
    bytes: &[u8],
    (written_live, had): (bool, bool),
) -> Result<(), StoreError> {
    if written_live {
        return store_transferred(store, region, key, bytes);
    }
    match crate::daemon::record::decode(bytes) {
        Some(incoming) if had => stage(store, region, key, &incoming),
        // Nothing of the key to replace (a joiner that starts empty, say).
        Some(incoming) => retry_records::stage_new(store, region, key, &incoming),
        // Unreadable: the joiner's copy is not the source's, so it goes.
        None => retry_records::remove(store, region, key),
    }
}

/// Stores one transferred object, unless this server already holds a newer version (then
/// only the older copy's dedupe records are merged in).
pub fn store_transferred(
    store: &mut dyn Store,
    region: RegionId,
    kb: &[u8],
    bytes: &[u8],
) -> Result<(), StoreError> {
    let Ok(incoming) = crate::daemon::record::decode(bytes).ok_or(()) else {
        return Ok(());
    };
    let mut stored = load(store, region, kb)?;
    if incoming.version > stored.version {
        stage(store, region, kb, &incoming)?;
    } else if merge_older_records(&mut stored, &incoming) {
        // A write reached this joiner before the transfer did: the object is newer here, but
        // the records of earlier writes (which retries are matched against) come only with
        // the transfer.
        stage(store, region, kb, &stored)?;
    }
    Ok(())
}

/// Stores a subspace region's entry sent whole: over the joiner's, or, if an update reached
/// the joiner during this join, merged with it.
fn store_entry(
    store: &mut dyn Store,
    region: RegionId,
    key: &[u8],
    bytes: &[u8],
    written_live: bool,
) -> Result<(), StoreError> {
    let Ok(incoming) = postcard::from_bytes::<Entry<Object>>(bytes) else {
        store.put(Table::Subspace, &object_key(region, key), None);
        return Ok(());
    };
    let mut entry = match written_live {
        true => load_entry(store, region, key)?,
        false => Entry::new(),
    };
    entry.merge(incoming);
    stage_entry(store, region, key, &entry);
    Ok(())
}

/// The joiner's own objects in a window's range, read a chunk at a time.
struct Mine {
    table: Table,
    rows: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// The last key read from the store.
    after: Option<Vec<u8>>,
    exhausted: bool,
}

impl Mine {
    fn new(table: Table, after: Option<Vec<u8>>) -> Mine {
        Mine {
            table,
            rows: VecDeque::new(),
            after,
            exhausted: false,
        }
    }

    fn peek(
        &mut self,
        store: &dyn Store,
        region: RegionId,
        in_range: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Option<&[u8]>, StoreError> {
        if self.rows.is_empty() && !self.exhausted {
            let at = (self.table, region);
            let rows = objects_after(store, at, self.after.as_deref(), CHUNK)?;
            self.exhausted = rows.len() < CHUNK;
            self.after = rows.last().map(|(k, _)| k.clone());
            for row in rows {
                if in_range(&row.0) {
                    self.rows.push_back(row);
                } else {
                    self.exhausted = true;
                    break;
                }
            }
        }
        Ok(self.rows.front().map(|(k, _)| k.as_slice()))
    }

    fn pop(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        self.rows.pop_front()
    }
}
