//! How a daemon stores objects: the stored record (version, value, dedupe records), the key
//! layout in the store, and the rules for merging dedupe records.
//!
//! Every object is stored under its region's prefix followed by the key's canonical bytes, so
//! one region's objects are contiguous (state transfer and search scan a region at a time).
//! The simulation's audit reads replicas through [`load`] and [`region_prefix`].

use hyperdex_model::Object;
use serde::Deserialize;

use crate::bugs::{planted, Bug};
use crate::config::RegionId;
use crate::limits::RECORD_HORIZON_SECS;
use crate::protocol::Dedupe;
use crate::storage::{Store, StoreError, Table};

pub use super::layout::{decode, decode_apart, encode_apart, is_live};

/// At most this many dedupe records are read for each object (the oldest go first; up to
/// `retry_records::COMPACTION_SLACK` more may be stored until a write compacts them). Below
/// that, a client's records go only when the client says it has their answers (`low_seq`).
/// (64 in the simulation, so that a key written by one fresh client after another reaches
/// the limit within a run: see `hyperdex_sim::fresh`.)
pub const DEDUPE_RECORDS: usize = if cfg!(madsim) { 64 } else { 1024 };

/// An object as stored: its version, its value (`None`: deleted) and recent dedupe records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredObject {
    pub version: u64,
    pub object: Option<Object>,
    pub dedupe: Vec<Dedupe>,
}

/// The store prefix of a region's objects: space id (8 bytes) then region index (4 bytes),
/// both big-endian, so that a region's objects are contiguous in key order (transfers and
/// searches scan one region at a time).
pub fn region_prefix(region: RegionId) -> Vec<u8> {
    prefixed(region, &[])
}

/// [`region_prefix`] followed by `parts`, with room for 8 more bytes (a version, a client
/// id) before it grows.
pub fn prefixed(region: RegionId, parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len()).sum::<usize>();
    let mut k = Vec::with_capacity(REGION_PREFIX_LEN + len + 8);
    k.extend_from_slice(&region.space.0.to_be_bytes());
    k.extend_from_slice(&region.index.to_be_bytes());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// Length of [`region_prefix`].
pub const REGION_PREFIX_LEN: usize = 12;

/// The store key of an object: its region's prefix, then the key's bytes.
pub fn object_key(region: RegionId, key: &[u8]) -> Vec<u8> {
    prefixed(region, &[key])
}

/// Reads a stored object with every dedupe record it keeps (`retry_records::load_full`); a
/// missing or unreadable record reads as "never written".
pub fn load(store: &dyn Store, region: RegionId, key: &[u8]) -> Result<StoredObject, StoreError> {
    super::retry_records::load_full(store, region, key)
}

/// The bytes of an object's record, if it has one.
fn stored_bytes(
    store: &dyn Store,
    region: RegionId,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    store.get(Table::Objects, &object_key(region, key))
}

/// A stored object without its dedupe records (what a read needs), decoded from the
/// record's first two fields (both layouts begin with them), and the bytes of those two
/// fields ([`decode_leading`] reads them again); reads as [`load`] would, the records left
/// out.
pub fn load_without_records(
    store: &dyn Store,
    region: RegionId,
    key: &[u8],
) -> Result<(StoredObject, Vec<u8>), StoreError> {
    let Some(mut bytes) = stored_bytes(store, region, key)? else {
        return Ok((StoredObject::default(), Vec::new()));
    };
    let Ok((leading, rest)) = postcard::take_from_bytes::<Leading>(&bytes) else {
        return Ok((StoredObject::default(), Vec::new()));
    };
    let stored = StoredObject {
        version: leading.version,
        object: leading.object,
        dedupe: Vec::new(),
    };
    let used = bytes.len() - rest.len();
    bytes.truncate(used);
    Ok((stored, bytes))
}

/// The object (`None`: deleted or never written) whose leading fields are `bytes`, as
/// [`load_without_records`] returns them; `None` when they are no such fields.
pub fn decode_leading(bytes: &[u8]) -> Option<Option<Object>> {
    if bytes.is_empty() {
        return Some(None);
    }
    postcard::from_bytes::<Leading>(bytes)
        .ok()
        .map(|l| l.object)
}

/// The fields every layout of a stored object begins with.
#[derive(Deserialize)]
struct Leading {
    version: u64,
    object: Option<Object>,
}

/// The version of a stored object (0: never written), read from the first field of its
/// record without decoding the object or its dedupe records.
pub fn stored_version(store: &dyn Store, region: RegionId, key: &[u8]) -> Result<u64, StoreError> {
    Ok(stored_bytes(store, region, key)?
        .filter(|b| is_live(b).is_some())
        .and_then(|b| postcard::from_bytes::<u64>(&b).ok())
        .unwrap_or(0))
}

/// Stages an object with exactly the dedupe records `obj` holds
/// (`retry_records::stage_full`).
pub fn stage(
    store: &mut dyn Store,
    region: RegionId,
    key: &[u8],
    obj: &StoredObject,
) -> Result<(), StoreError> {
    super::retry_records::stage_full(store, region, key, obj)
}

/// Puts the dedupe records of an older copy of an object before the records of this one,
/// dropping those that this copy's records say their clients no longer need. Returns whether
/// anything was added.
pub fn merge_older_records(stored: &mut StoredObject, older: &StoredObject) -> bool {
    let mut merged: Vec<Dedupe> = older
        .dedupe
        .iter()
        .filter(|r| {
            !stored
                .dedupe
                .iter()
                .any(|s| s.client == r.client && s.seq == r.seq)
        })
        .filter(|r| {
            !stored
                .dedupe
                .iter()
                .any(|s| s.client == r.client && r.seq < s.low_seq)
        })
        .cloned()
        .collect();
    if merged.is_empty() {
        return false;
    }
    let before = stored.dedupe.clone();
    merged.append(&mut stored.dedupe);
    let excess = merged.len().saturating_sub(DEDUPE_RECORDS);
    if excess > 0 {
        // The oldest go, as in every other cut to the limit (the older copy's records are
        // not all older than this copy's: heads' clocks differ).
        super::retry_records::sort_records(&mut merged);
        merged.drain(..excess);
    }
    stored.dedupe = merged;
    drop_expired(stored);
    stored.dedupe != before
}

/// Drops the records written more than [`RECORD_HORIZON_SECS`] before the object's newest
/// one. No retry can need them: a head refuses a request first sent more than
/// `RETRY_WINDOW_SECS` ago (by its own clock, within `CLOCK_SKEW_SECS` of the client's),
/// and the horizon is longer than that window plus the skew between any two of the clocks
/// involved (the client's, the head that wrote the record, the head that gets the retry).
/// The rule depends only on the records, so every replica holding the same records drops the
/// same ones; a deleted object ends as its version alone.
pub fn drop_expired(stored: &mut StoredObject) {
    let newest = newest_of(&stored.dedupe);
    let before = stored.dedupe.len();
    stored.dedupe.retain(|r| visible(r, newest));
    if stored.dedupe.len() < before {
        crate::probe!("record.expired_dropped");
    }
}

/// The newest known time among `records` (0: none).
pub fn newest_of(records: &[Dedupe]) -> u64 {
    records
        .iter()
        .map(|d| d.unix)
        .filter(|t| *t != UNKNOWN_TIME)
        .max()
        .unwrap_or(0)
}

/// Whether a record is kept, given the newest record time of its object (0: none): it has no
/// time, or it is within [`horizon`] of the newest.
pub fn visible(d: &Dedupe, newest: u64) -> bool {
    d.unix == UNKNOWN_TIME || d.unix.saturating_add(horizon()) >= newest
}

/// How long after its object's newest record a record is kept ([`RECORD_HORIZON_SECS`]).
pub fn horizon() -> u64 {
    if planted(Bug::ShortRecordHorizon) {
        1
    } else {
        RECORD_HORIZON_SECS
    }
}

/// The time of a record stored before records carried one: never dropped by age.
pub const UNKNOWN_TIME: u64 = u64::MAX;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::layout::StoredObjectV1;
    use crate::daemon::retry_records::Writing;
    use hyperdex_model::Reply;

    #[test]
    fn a_joiner_keeps_the_records_of_writes_it_got_by_transfer_only() {
        let mut stored = StoredObject {
            version: 5,
            object: None,
            dedupe: vec![Dedupe {
                client: 8,
                seq: 1,
                low_seq: 1,
                reply: Reply::Success,
                unix: 1_700_000_000,
            }],
        };
        let older = StoredObject {
            version: 4,
            object: None,
            dedupe: vec![
                Dedupe {
                    client: 7,
                    seq: 2,
                    low_seq: 2,
                    reply: Reply::Success,
                    unix: 1_700_000_000,
                },
                Dedupe {
                    client: 8,
                    seq: 1,
                    low_seq: 1,
                    reply: Reply::Success,
                    unix: 1_700_000_000,
                },
                Dedupe {
                    client: 9,
                    seq: 3,
                    low_seq: 3,
                    reply: Reply::Success,
                    unix: 1_700_000_000,
                },
            ],
        };
        stored.dedupe.push(Dedupe {
            client: 9,
            seq: 5,
            low_seq: 5,
            reply: Reply::Success,
            unix: 1_700_000_000,
        });
        assert!(merge_older_records(&mut stored, &older));
        let ids: Vec<(u64, u64)> = stored.dedupe.iter().map(|d| (d.client, d.seq)).collect();
        // Client 7's record arrives; client 9's seq 3 is gone (its client is past seq 5).
        assert_eq!(ids, vec![(7, 2), (8, 1), (9, 5)]);
        assert!(
            !merge_older_records(&mut stored, &older),
            "nothing new the second time"
        );
    }

    #[test]
    fn merging_beyond_the_limit_keeps_the_newest_records() {
        let record = |client, unix| Dedupe {
            client,
            seq: 1,
            low_seq: 1,
            reply: Reply::Success,
            unix,
        };
        let t = 1_700_000_000;
        let mut stored = StoredObject {
            version: 9,
            object: None,
            dedupe: (1..=DEDUPE_RECORDS as u64).map(|c| record(c, t)).collect(),
        };
        let older = StoredObject {
            version: 8,
            object: None,
            dedupe: vec![record(5000, t + 10)],
        };
        assert!(merge_older_records(&mut stored, &older));
        assert_eq!(stored.dedupe.len(), DEDUPE_RECORDS);
        assert!(stored.dedupe.iter().any(|d| d.client == 5000));
        assert!(
            !stored.dedupe.iter().any(|d| d.client == 1),
            "the oldest goes"
        );
    }

    /// Adds `d` to the object under `k` as a chain member does; the sequence numbers of the
    /// records then kept, in the order they read.
    fn add(store: &mut crate::storage::MemStore, d: &Dedupe) -> (bool, Vec<u64>) {
        let mut w = Writing::load(store, REGION, b"k").unwrap();
        let added = w.add_record(store, d).unwrap();
        w.stage(store).unwrap();
        let stored = load(store, REGION, b"k").unwrap();
        (added, stored.dedupe.iter().map(|d| d.seq).collect())
    }

    const REGION: RegionId = RegionId {
        space: crate::config::SpaceId(3),
        index: 1,
    };

    #[test]
    fn a_late_record_the_client_no_longer_needs_is_not_added_back() {
        let record = |seq, low_seq| Dedupe {
            client: 7,
            seq,
            low_seq,
            reply: Reply::Success,
            unix: 1_700_000_000,
        };
        let mut store = crate::storage::MemStore::new();
        assert_eq!(add(&mut store, &record(138, 127)), (true, vec![138]));
        // A retransmission of an older write of the same client arrives late.
        assert_eq!(add(&mut store, &record(126, 120)), (false, vec![138]));
        // One it may still retry is kept.
        assert_eq!(add(&mut store, &record(130, 127)), (true, vec![130, 138]));
    }

    fn timed(seq: u64, unix: u64) -> Dedupe {
        Dedupe {
            client: 7,
            seq,
            low_seq: 0,
            reply: Reply::Success,
            unix,
        }
    }

    #[test]
    fn records_go_a_horizon_after_the_newest_one_and_a_delete_ends_as_its_version() {
        let t = 1_800_000_000;
        let h = RECORD_HORIZON_SECS;
        let mut store = crate::storage::MemStore::new();
        let first = StoredObject {
            version: 3,
            object: None,
            dedupe: vec![timed(1, t), timed(2, t + 5), timed(3, UNKNOWN_TIME)],
        };
        stage(&mut store, REGION, b"k", &first).unwrap();
        // Records without a time read first.
        let all = add(&mut store, &timed(4, t + h));
        assert_eq!(all, (true, vec![3, 1, 2, 4]), "all within the horizon");
        let later = add(&mut store, &timed(5, t + h + 1));
        assert_eq!(
            later,
            (true, vec![3, 2, 4, 5]),
            "the oldest timed record went"
        );
        let last = add(&mut store, &timed(6, t + 10 * h));
        assert_eq!(last, (true, vec![3, 6]), "a record without a time stays");
        // A transfer's older records are dropped by the same rule.
        let stored = load(&store, REGION, b"k").unwrap();
        let mut incoming = stored.clone();
        let older = StoredObject {
            version: 2,
            object: None,
            dedupe: vec![timed(9, t)],
        };
        assert!(!merge_older_records(&mut incoming, &older));
        assert_eq!(incoming, stored);
    }

    #[test]
    fn liveness_reads_from_the_first_fields_as_decoding_would() {
        let live = StoredObject {
            version: 300,
            object: Some([("n".to_string(), hyperdex_model::Value::Int(1))].into()),
            dedupe: vec![timed(1, 1_800_000_000)],
        };
        let deleted = StoredObject {
            version: u64::MAX,
            object: None,
            dedupe: Vec::new(),
        };
        for s in [live, deleted, StoredObject::default()] {
            let bytes = postcard::to_allocvec(&s).unwrap();
            assert_eq!(is_live(&bytes), Some(s.object.is_some()), "{s:?}");
            let v1 = StoredObjectV1 {
                version: s.version,
                object: s.object.clone(),
                dedupe: Vec::new(),
            };
            let bytes = postcard::to_allocvec(&v1).unwrap();
            assert_eq!(
                is_live(&bytes),
                Some(s.object.is_some()),
                "the earlier layout"
            );
        }
        assert_eq!(is_live(&[]), None);
        assert_eq!(is_live(&[5, 7]), None);
    }

    #[test]
    fn a_stored_version_reads_as_loading_the_object_would() {
        let mut store = crate::storage::MemStore::new();
        let region = RegionId {
            space: crate::config::SpaceId(3),
            index: 1,
        };
        assert_eq!(
            stored_version(&store, region, b"k").unwrap(),
            0,
            "never written"
        );
        let objects = [
            StoredObject {
                version: 300,
                object: Some([("n".to_string(), hyperdex_model::Value::Int(1))].into()),
                dedupe: vec![timed(1, 1_800_000_000)],
            },
            StoredObject {
                version: u64::MAX,
                object: None,
                dedupe: Vec::new(),
            },
        ];
        for s in objects {
            stage(&mut store, region, b"k", &s).unwrap();
            assert_eq!(stored_version(&store, region, b"k").unwrap(), s.version);
            assert_eq!(load(&store, region, b"k").unwrap(), s);
            let without = StoredObject {
                dedupe: Vec::new(),
                ..s.clone()
            };
            let (read, leading) = load_without_records(&store, region, b"k").unwrap();
            assert_eq!(read, without);
            assert_eq!(decode_leading(&leading), Some(s.object.clone()));
            let v1 = StoredObjectV1 {
                version: s.version,
                object: s.object.clone(),
                dedupe: Vec::new(),
            };
            let bytes = postcard::to_allocvec(&v1).unwrap();
            store.put(Table::Objects, &object_key(region, b"k"), Some(bytes));
            let (read, leading) = load_without_records(&store, region, b"k").unwrap();
            assert_eq!(read, without);
            assert_eq!(decode_leading(&leading), Some(s.object.clone()));
            assert_eq!(stored_version(&store, region, b"k").unwrap(), s.version);
        }
        // Bytes that are no stored object read as never written, as `load` reads them.
        store.put(Table::Objects, &object_key(region, b"k"), Some(vec![5, 7]));
        assert_eq!(stored_version(&store, region, b"k").unwrap(), 0);
        assert_eq!(load(&store, region, b"k").unwrap().version, 0);
        let none = load_without_records(&store, region, b"k").unwrap();
        assert_eq!(none, (StoredObject::default(), Vec::new()));
        assert_eq!(decode_leading(&none.1), Some(None));
        assert_eq!(decode_leading(&[5, 7]), None);
    }
}
