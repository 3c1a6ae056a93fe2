//! Unit tests of `retry_records`: inline and apart, one client's entry per write, the count
//! limit, expiry, replacement, and what a transfer sends.

use super::*;
use crate::config::SpaceId;
use crate::storage::MemStore;
use hyperdex_model::Reply;

const REGION: RegionId = RegionId {
    space: SpaceId(4),
    index: 2,
};
const T: u64 = 1_800_000_000;
/// Enough clients for a key's records to go apart.
const MANY: u64 = INLINE_RECORDS as u64 + 1;

fn record(client: u64, seq: u64, unix: u64) -> Dedupe {
    Dedupe {
        client,
        seq,
        low_seq: seq,
        reply: Reply::Success,
        unix,
    }
}

/// One write of `key` by `d`'s client, as a chain member stores it.
fn write(store: &mut MemStore, key: &[u8], d: Dedupe) {
    let mut w = Writing::load(store, REGION, key).unwrap();
    w.version += 1;
    assert!(w.add_record(store, &d).unwrap());
    w.stage(store).unwrap();
}

fn clients(store: &MemStore, key: &[u8]) -> Vec<(u64, u64)> {
    let stored = load_full(store, REGION, key).unwrap();
    stored.dedupe.iter().map(|d| (d.client, d.seq)).collect()
}

fn entries(store: &MemStore, key: &[u8]) -> usize {
    let prefix = records_prefix(REGION, key);
    store.scan_prefix(Table::Records, &prefix).unwrap().len()
}

/// The object's entry: its inline records and its summary.
fn entry(store: &MemStore, key: &[u8]) -> (usize, Summary) {
    let bytes = store.get(Table::Objects, &object_key(REGION, key));
    let (stored, summary) = decode_apart(&bytes.unwrap().unwrap()).unwrap();
    (stored.dedupe.len(), summary)
}

#[test]
fn a_few_records_stay_inline_and_more_go_apart() {
    let mut store = MemStore::new();
    for c in 1..MANY {
        write(&mut store, b"k", record(c, 1, T));
    }
    assert_eq!(entry(&store, b"k").0, INLINE_RECORDS);
    assert_eq!(entries(&store, b"k"), 0);
    write(&mut store, b"k", record(MANY, 1, T));
    assert_eq!(entry(&store, b"k").0, 0, "no longer inline");
    assert_eq!(entry(&store, b"k").1.count, MANY);
    assert_eq!(entries(&store, b"k"), MANY as usize);
    assert_eq!(clients(&store, b"k").len(), MANY as usize);
    // An object stored before records were kept apart (no summary) reads the same way.
    let old = StoredObject {
        version: 3,
        object: None,
        dedupe: vec![record(1, 1, T), record(2, 1, T + 1)],
    };
    let bytes = postcard::to_allocvec(&old).unwrap();
    store.put(Table::Objects, &object_key(REGION, b"j"), Some(bytes));
    assert_eq!(clients(&store, b"j"), vec![(1, 1), (2, 1)]);
    write(&mut store, b"j", record(3, 1, T + 2));
    assert_eq!(clients(&store, b"j"), vec![(1, 1), (2, 1), (3, 1)]);
    assert_eq!(entry(&store, b"j").0, 3);
}

#[test]
fn a_write_rewrites_the_records_of_its_own_client_only() {
    let mut store = MemStore::new();
    for c in 1..=MANY {
        write(&mut store, b"k", record(c, 10, T));
    }
    store.sync().unwrap();
    let prefix = records_prefix(REGION, b"k");
    write(&mut store, b"k", record(2, 11, T + 1));
    for c in 1..=MANY {
        let staged = store.unsynced(Table::Records, &client_key(&prefix, c));
        assert_eq!(staged, c == 2, "client {c}");
    }
    // The client's earlier record went (its request 11 says it has answer 10).
    let left = clients(&store, b"k");
    assert_eq!(left.len(), MANY as usize);
    assert_eq!(left.last(), Some(&(2, 11)));
    let w = Writing::load(&store, REGION, b"k").unwrap();
    assert_eq!(w.version, MANY + 1);
    assert_eq!((w.summary.count, w.newest()), (MANY, Some(T + 1)));
}

#[test]
fn a_retry_finds_its_record_and_a_late_one_below_low_seq_is_not_added() {
    for n in [1, MANY] {
        let mut store = MemStore::new();
        for c in 0..n {
            write(&mut store, b"k", record(7 + c, 5, T));
        }
        let mut w = Writing::load(&store, REGION, b"k").unwrap();
        w.read_client(&store, 7).unwrap();
        assert!(w.find(7, 5).is_some(), "{n} clients");
        assert!(w.find(7, 4).is_none());
        let late = Dedupe {
            low_seq: 1,
            ..record(7, 3, T)
        };
        assert!(!w.add_record(&store, &late).unwrap(), "below low_seq 5");
        assert!(!w.add_record(&store, &record(7, 5, T)).unwrap(), "held");
    }
}

#[test]
fn the_count_limit_is_kept_by_compacting_now_and_then() {
    let mut store = MemStore::new();
    let most = MOST_STORED as u64;
    for c in 0..most {
        write(&mut store, b"k", record(c, 1, T + c / 100));
    }
    assert_eq!(entries(&store, b"k"), most as usize, "within the slack");
    assert_eq!(check_region(&store, REGION), Ok(most as usize));
    // Read, as a transfer or the audit reads them: the newest `DEDUPE_RECORDS` (whichever member
    // compacted when).
    let read = clients(&store, b"k");
    assert_eq!(read.len(), DEDUPE_RECORDS);
    assert_eq!(read[0], (most - DEDUPE_RECORDS as u64, 1));
    store.sync().unwrap();
    write(&mut store, b"k", record(most, 1, T + 20));
    let left = clients(&store, b"k");
    assert_eq!(left.len(), DEDUPE_RECORDS);
    assert_eq!(entries(&store, b"k"), DEDUPE_RECORDS);
    // The oldest went first.
    assert_eq!(left[0], (most + 1 - DEDUPE_RECORDS as u64, 1));
    assert_eq!(left.last(), Some(&(most, 1)));
    assert_eq!(entry(&store, b"k").1.count, DEDUPE_RECORDS as u64);
    assert_eq!(check_region(&store, REGION), Ok(DEDUPE_RECORDS));
    // The compaction rewrote only what changed: the entries of the dropped clients
    // (deleted) and of the writing one.
    let prefix = records_prefix(REGION, b"k");
    let staged = |c: u64| store.unsynced(Table::Records, &client_key(&prefix, c));
    assert!(staged(0) && staged(most - DEDUPE_RECORDS as u64) && staged(most));
    assert!(!staged(most - 1) && !staged(most + 1 - DEDUPE_RECORDS as u64));
}

#[test]
fn the_audit_finds_entries_its_object_does_not_count() {
    let mut store = MemStore::new();
    for c in 1..=MANY {
        write(&mut store, b"k", record(c, 1, T));
    }
    assert_eq!(check_region(&store, REGION), Ok(MANY as usize));
    let stray = client_key(&records_prefix(REGION, b"k"), 999);
    let one = postcard::to_allocvec(&vec![record(999, 1, T)]).unwrap();
    store.put(Table::Records, &stray, Some(one.clone()));
    assert!(check_region(&store, REGION)
        .unwrap_err()
        .contains("its entries hold"));
    store.put(Table::Records, &stray, None);
    let orphan = client_key(&records_prefix(REGION, b"gone"), 1);
    store.put(Table::Records, &orphan, Some(one));
    assert!(check_region(&store, REGION)
        .unwrap_err()
        .contains("no object"));
    store.put(Table::Records, &orphan, None);
    remove(&mut store, REGION, b"k").unwrap();
    assert_eq!(check_region(&store, REGION), Ok(0));
}

#[test]
fn the_audit_finds_a_key_holding_more_records_than_it_may() {
    let mut store = MemStore::new();
    let most = MOST_STORED as u64;
    for c in 0..most {
        write(&mut store, b"k", record(c, 1, T));
    }
    assert_eq!(check_region(&store, REGION), Ok(MOST_STORED));
    // One entry more, counted by its object: what a write that never compacts leaves.
    let extra = client_key(&records_prefix(REGION, b"k"), most);
    let one = postcard::to_allocvec(&vec![record(most, 1, T)]).unwrap();
    store.put(Table::Records, &extra, Some(one));
    let key = object_key(REGION, b"k");
    let bytes = store.get(Table::Objects, &key).unwrap().unwrap();
    let (stored, mut summary) = decode_apart(&bytes).unwrap();
    summary.count += 1;
    let bytes = encode_apart(stored.version, &stored.object, &stored.dedupe, &summary);
    store.put(Table::Objects, &key, Some(bytes));
    assert!(check_region(&store, REGION)
        .unwrap_err()
        .contains("more than the"));
}

#[test]
fn expired_records_are_not_read_and_a_later_write_removes_them() {
    let mut store = MemStore::new();
    let h = horizon();
    for c in 1..=MANY {
        write(&mut store, b"k", record(c, 1, T + c / MANY));
    }
    write(&mut store, b"k", record(100, 1, T + h));
    assert_eq!(clients(&store, b"k").len(), MANY as usize + 1);
    write(&mut store, b"k", record(101, 1, T + h + 1));
    // Every record at T expired; the one at T + 1 (client MANY) is within the horizon.
    let left = vec![(MANY, 1), (100, 1), (101, 1)];
    assert_eq!(clients(&store, b"k"), left);
    assert_eq!(entries(&store, b"k"), MANY as usize + 2, "not yet removed");
    // A quarter of the horizon later, a write compacts the key (and its few records go
    // inline).
    write(&mut store, b"k", record(102, 1, T + h + h / 4 + 2));
    assert_eq!(clients(&store, b"k"), vec![(100, 1), (101, 1), (102, 1)]);
    assert_eq!(entries(&store, b"k"), 0);
    let (inline, summary) = entry(&store, b"k");
    assert_eq!(
        (inline, summary.count, summary.newest),
        (3, 0, T + h + h / 4 + 2)
    );
    // Inline, an expired record goes at the next write.
    write(&mut store, b"k", record(103, 1, T + 3 * h));
    assert_eq!(clients(&store, b"k"), vec![(103, 1)]);
}

#[test]
fn an_object_replacing_an_earlier_copy_replaces_its_records() {
    let mut store = MemStore::new();
    for c in 1..=MANY {
        write(&mut store, b"k", record(c, 1, T));
    }
    let mut w = Writing::fresh(REGION, b"k");
    w.version = 1;
    assert!(w.add_record(&store, &record(99, 1, T)).unwrap());
    w.stage(&mut store).unwrap();
    assert_eq!(clients(&store, b"k"), vec![(99, 1)]);
    assert_eq!(entries(&store, b"k"), 0);
    for c in 1..=MANY {
        write(&mut store, b"k", record(c, 2, T));
    }
    remove(&mut store, REGION, b"k").unwrap();
    assert_eq!(entries(&store, b"k"), 0);
    assert_eq!(
        load_full(&store, REGION, b"k").unwrap(),
        StoredObject::default()
    );
}

#[test]
fn a_transfer_sends_the_same_bytes_for_the_same_object_and_records() {
    for n in [3, MANY] {
        let (mut one, mut other) = (MemStore::new(), MemStore::new());
        for c in (0..n).rev() {
            write(&mut one, b"k", record(c, 1, T + c % 3));
        }
        // The other server got the object whole (a transfer), in another order.
        let full = load_full(&one, REGION, b"k").unwrap();
        let mut shuffled = full.clone();
        shuffled.dedupe.reverse();
        stage_full(&mut other, REGION, b"k", &shuffled).unwrap();
        let bytes = |s: &MemStore| {
            let entry = s.get(Table::Objects, &object_key(REGION, b"k")).unwrap();
            transfer_bytes(s, REGION, b"k", &entry.unwrap()).unwrap()
        };
        assert_eq!(bytes(&one), bytes(&other), "{n} clients");
        // Stored before records were kept apart, in another order, it is sent the same.
        let mut legacy = MemStore::new();
        let old = postcard::to_allocvec(&shuffled).unwrap();
        legacy.put(Table::Objects, &object_key(REGION, b"k"), Some(old));
        assert_eq!(bytes(&legacy), bytes(&one), "{n} clients, stored inline");
        assert_eq!(super::super::record::decode(&bytes(&one)), Some(full));
    }
}

/// Every entry of every table, in key order.
fn contents(store: &MemStore) -> Vec<(Table, Vec<u8>, Vec<u8>)> {
    let mut all = Vec::new();
    for &t in Table::ALL.iter() {
        for (k, v) in store.scan_prefix(t, &[]).unwrap() {
            all.push((t, k, v));
        }
    }
    all
}

#[test]
fn staging_a_write_last_stores_what_staging_it_does() {
    let late = T + 3 * horizon();
    // (clients that wrote the key, a fresh write replacing what is stored, the new record's
    // time): records inline, inline and going apart, apart, apart and replaced, apart and
    // compacted (expired). The new record is another client's.
    let cases = [
        (3, false, T + 1),
        (INLINE_RECORDS as u64, false, T + 1),
        (MANY + 2, false, T + 1),
        (MANY + 2, true, T + 1),
        (MANY + 2, false, late),
    ];
    for (clients, fresh, unix) in cases {
        let stores = [MemStore::new(), MemStore::new()];
        for (last, store) in stores.iter().enumerate() {
            let mut store = store.clone();
            for c in 1..=clients {
                write(&mut store, b"k", record(c, 1, T));
            }
            let mut w = match fresh {
                true => Writing::fresh(REGION, b"k"),
                false => Writing::load(&store, REGION, b"k").unwrap(),
            };
            w.version += 7;
            assert!(w.add_record(&store, &record(clients + 1, 1, unix)).unwrap());
            match last {
                0 => w.stage(&mut store).unwrap(),
                _ => w.stage_last(&mut store).unwrap(),
            }
        }
        let staged = contents(&stores[0]);
        assert!(staged.iter().any(|(t, _, _)| *t == Table::Objects));
        assert_eq!(
            staged,
            contents(&stores[1]),
            "{clients} clients, fresh {fresh}, at {unix}"
        );
    }
}
