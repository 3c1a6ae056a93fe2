//! How a daemon stores objects: the stored record (version, value, dedupe records), the key
//! layout in the store, and the rules for merging dedupe records.
//!
//! Every object is stored under its region's prefix followed by the key's canonical bytes, so
//! one region's objects are contiguous (state transfer and search scan a region at a time).
//! The simulation's audit reads replicas through [`load`] and [`region_prefix`].

use hyperdex_model::Object;
use serde::{Deserialize, Serialize};

use crate::config::RegionId;
use crate::protocol::{ChainWrite, Dedupe};
use crate::storage::{Store, StoreError, Table};

/// At most this many dedupe records are kept with each object (the oldest go first). Below
/// that, a client's records go only when the client says it has their answers (`low_seq`).
pub const DEDUPE_RECORDS: usize = 1024;

/// An object as stored: its version, its value (`None`: deleted) and recent dedupe records.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredObject {
    pub version: u64,
    pub object: Option<Object>,
    pub dedupe: Vec<Dedupe>,
}

/// The store prefix of a region's objects: space id (8 bytes) then region index (4 bytes),
/// both big-endian, so that a region's objects are contiguous in key order (transfers and
/// searches scan one region at a time).
pub fn region_prefix(region: RegionId) -> Vec<u8> {
    let mut k = region.space.0.to_be_bytes().to_vec();
    k.extend_from_slice(&region.index.to_be_bytes());
    k
}

/// Length of [`region_prefix`].
pub const REGION_PREFIX_LEN: usize = 12;

/// The store key of an object: its region's prefix, then the key's bytes.
pub fn object_key(region: RegionId, key: &[u8]) -> Vec<u8> {
    let mut k = region_prefix(region);
    k.extend_from_slice(key);
    k
}

/// Reads a stored object; a missing or unreadable record reads as "never written".
pub fn load(store: &dyn Store, region: RegionId, key: &[u8]) -> Result<StoredObject, StoreError> {
    Ok(store
        .get(Table::Objects, &object_key(region, key))?
        .and_then(|b| postcard::from_bytes(&b).ok())
        .unwrap_or_default())
}

pub fn stage(store: &mut dyn Store, region: RegionId, key: &[u8], obj: &StoredObject) {
    let bytes = postcard::to_allocvec(obj).unwrap_or_default();
    store.put(Table::Objects, &object_key(region, key), Some(bytes));
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
    merged.append(&mut stored.dedupe);
    let excess = merged.len().saturating_sub(DEDUPE_RECORDS);
    merged.drain(..excess);
    stored.dedupe = merged;
    true
}

/// Applies a chain write to a stored object: new version, new value, one more dedupe record.
pub fn absorb(stored: &mut StoredObject, w: &ChainWrite) {
    stored.version = w.version;
    stored.object = w.object.clone();
    if let Some(d) = &w.dedupe {
        add_record(stored, d);
    }
}

/// Adds a write's dedupe record (once). Writes can reach a server out of order after a
/// reconfiguration or a retransmission; the value of an older one is already superseded, but
/// its record must still be kept, or a retry of it would be applied again.
pub fn add_record(stored: &mut StoredObject, d: &Dedupe) -> bool {
    // Held already, or no longer needed: a later request of the same client said it has
    // every answer below its low sequence number (a late retransmission brings such records).
    if stored
        .dedupe
        .iter()
        .any(|r| r.client == d.client && d.seq < r.low_seq)
    {
        crate::probe!("record.below_low_seq_skipped");
        return false;
    }
    if stored
        .dedupe
        .iter()
        .any(|r| r.client == d.client && r.seq == d.seq)
    {
        return false;
    }
    // The client has the answers below its low sequence number: those records go.
    stored
        .dedupe
        .retain(|r| r.client != d.client || r.seq >= d.low_seq);
    stored.dedupe.push(d.clone());
    let excess = stored.dedupe.len().saturating_sub(DEDUPE_RECORDS);
    stored.dedupe.drain(..excess);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
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
                },
                Dedupe {
                    client: 8,
                    seq: 1,
                    low_seq: 1,
                    reply: Reply::Success,
                },
                Dedupe {
                    client: 9,
                    seq: 3,
                    low_seq: 3,
                    reply: Reply::Success,
                },
            ],
        };
        stored.dedupe.push(Dedupe {
            client: 9,
            seq: 5,
            low_seq: 5,
            reply: Reply::Success,
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
    fn a_late_record_the_client_no_longer_needs_is_not_added_back() {
        let record = |seq, low_seq| Dedupe {
            client: 7,
            seq,
            low_seq,
            reply: Reply::Success,
        };
        let mut stored = StoredObject::default();
        assert!(add_record(&mut stored, &record(138, 127)));
        // A retransmission of an older write of the same client arrives late.
        assert!(!add_record(&mut stored, &record(126, 120)));
        let seqs: Vec<u64> = stored.dedupe.iter().map(|d| d.seq).collect();
        assert_eq!(seqs, vec![138]);
        // One it may still retry is kept.
        assert!(add_record(&mut stored, &record(130, 127)));
    }
}
