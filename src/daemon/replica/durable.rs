//! Pending writes on disk: every member but the tail keeps each chain write it holds in
//! [`Table::Pending`] from the moment it arrives (in the same batch, so under the same sync
//! as its forwarding's predecessor batch), until some time after the chain has acknowledged
//! it.
//!
//! **Why.** A member acknowledges a write upstream (the head: answers its client) only once
//! it holds the write durably. Without this table, "durably" meant the object stored when the
//! acknowledgement came back, one more sync after the successor's: the syncs of a chain added
//! up. With it, the write is durable at every member from the sync of the batch it arrived
//! in, which runs while the successors store it; the acknowledgement that comes back
//! commits the object (visible to reads from then on) and may leave **before** that commit is
//! synced, because what it vouches for is already on disk ([`Output::Durable`]). No reply
//! waits for the commit, so the actor syncs it with the next batch's record rather than
//! with one of its own (one sync per write at each member but the tail, not two); a read of
//! the key waits for that record.
//!
//! **Recovery.** A member that crashes after acknowledging, before its commit is synced,
//! holds the write only here. When it starts again, the first configuration it installs
//! promotes every pending record to a committed object ([`promote`]), as if its
//! acknowledgement had arrived: the chain acknowledged it, or it was never answered and its
//! outcome is unknown (its dedupe record comes with it, so a retry is answered from it). For
//! a server that rejoins, the transfer then brings its copy level as it does for a tail that
//! stored a write no one acknowledged; for the last member of a region whose other replicas
//! all failed, its copy is the region's, acknowledged writes included.
//!
//! **Forgetting.** A committed write's record is deleted a tick or two later
//! ([`Forget`]), never in the batch of its commit: the acknowledgement leaves early only while
//! the record's own write is durable, and a deletion staged in that batch would make it look
//! otherwise. A deletion that is lost in a crash leaves a record whose version is already
//! stored; [`promote`] drops it.
//!
//! Layout: the object's store key (region prefix and key bytes), then the version (8 bytes,
//! big-endian); the value is a layout byte ([`LAYOUT`]) and the chain write (postcard). A
//! version that changes [`ChainWrite`] must bump the layout byte and still read the old one:
//! a record is the only copy of an acknowledged write until its commit is synced.
//!
//! **Why the records of the versions committed are enough.** An acknowledgement names the
//! records of the versions it commits, not of the older versions those build on. A member
//! takes version `v + 1` of a key only when it holds `v` (pending or stored: the gap rule in
//! `chain`), and log records become durable in the order they were written; so once the
//! records it names are durable, so is everything their versions build on. Letting a member
//! accept writes with gaps would break this.
//!
//! [`Output::Durable`]: super::Output::Durable

use crate::bugs::{planted, Bug};
use crate::config::{Config, RegionId};
use crate::daemon::record::object_key;
use crate::daemon::retry_records::Writing;
use crate::protocol::{ChainWrite, ENCODE_CAPACITY};
use crate::storage::{Store, StoreError, Table};

/// The first byte of every record: the layout of what follows.
pub const LAYOUT: u8 = 1;

/// The [`Table::Pending`] key of version `version` of `key` in `region`.
pub fn pending_key(region: RegionId, key: &[u8], version: u64) -> Vec<u8> {
    let mut k = object_key(region, key);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// The object key a [`pending_key`] begins with (`None`: too short to be one).
pub fn object_key_of_pending(k: &[u8]) -> Option<&[u8]> {
    k.len().checked_sub(8).map(|end| &k[..end])
}

/// Keeps a write this member holds pending, durably from this batch's sync on.
pub fn keep(store: &mut dyn Store, w: &ChainWrite) {
    if planted(Bug::PendingNotKept) {
        return;
    }
    let mut bytes = Vec::with_capacity(ENCODE_CAPACITY);
    bytes.push(LAYOUT);
    let mut bytes = postcard::to_extend(w, bytes).unwrap_or_default();
    // Held in memory until the next checkpoint: no more than it needs.
    bytes.shrink_to_fit();
    store.put(Table::Pending, &record_key(w), Some(bytes));
}

/// Deletes the record of a pending write now (a write dropped, not committed).
pub fn drop_now(store: &mut dyn Store, w: &ChainWrite) {
    store.put(Table::Pending, &record_key(w), None);
}

/// The [`Table::Pending`] key of `w`'s record.
fn record_key(w: &ChainWrite) -> Vec<u8> {
    pending_key(w.region, &w.key, w.version)
}

/// Records of committed writes, deleted a tick after the one in which they were committed
/// (see the module docs): the two lists are swapped on every tick.
#[derive(Debug, Default)]
pub struct Forget {
    /// Committed since the last tick.
    fresh: Vec<Vec<u8>>,
    /// Committed before the last tick: deleted at the next one.
    due: Vec<Vec<u8>>,
}

impl Forget {
    pub fn later(&mut self, key: Vec<u8>) {
        self.fresh.push(key);
    }

    /// Deletes the records that are due and makes the fresh ones due.
    pub fn tick(&mut self, store: &mut dyn Store) {
        for k in self.due.drain(..) {
            store.put(Table::Pending, &k, None);
        }
        std::mem::swap(&mut self.due, &mut self.fresh);
    }
}

/// What [`promote`] did with the records a previous life left.
#[derive(Debug, Default)]
pub struct Promoted {
    /// Writes committed.
    pub committed: usize,
    /// Writes of spaces with subspaces, oldest first per key: committed like the others
    /// (the chain may have acknowledged them, so reads must see them), and also held pending
    /// again, their records kept, until the regions of the other subspaces hold them: the
    /// replica sends them on, or their updates if it is the tail (`subspace`). A record whose
    /// version is already stored is held again too, since its commit may be one an earlier
    /// promotion made before those regions had it.
    pub held: Vec<ChainWrite>,
}

/// Commits every pending record a previous life of this server left (see the module docs),
/// through `store` (which keeps the indexes in step), and deletes them; the writes of spaces
/// with subspaces are kept and returned to be held pending as well. Records of spaces that
/// `config` no longer has are only deleted.
pub fn promote(store: &mut dyn Store, config: &Config) -> Result<Promoted, StoreError> {
    let mut promoted = Promoted::default();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let window = store.scan_from(Table::Pending, &[], after.as_deref(), PROMOTE_WINDOW)?;
        let Some((last, _)) = window.last() else {
            break;
        };
        after = Some(last.clone());
        for (k, bytes) in window {
            match promote_one(store, config, &k, &bytes)? {
                Outcome::Dropped => {}
                Outcome::Committed => promoted.committed += 1,
                Outcome::Held(w) => promoted.held.push(*w),
            }
        }
    }
    if promoted.committed + promoted.held.len() > 0 {
        crate::probe!("replica.pending_promoted_at_start");
        tracing::info!(
            writes = promoted.committed,
            held = promoted.held.len(),
            "writes held pending before a restart committed (those of spaces with subspaces \
             held until the subspaces' regions have them)"
        );
    }
    Ok(promoted)
}

/// Records read at a time by [`promote`]: they hold whole objects.
const PROMOTE_WINDOW: usize = 1024;

/// What became of one record.
enum Outcome {
    Dropped,
    Committed,
    Held(Box<ChainWrite>),
}

/// Commits one pending record `k` (and deletes it), or returns it to be held pending.
fn promote_one(
    store: &mut dyn Store,
    config: &Config,
    k: &[u8],
    bytes: &[u8],
) -> Result<Outcome, StoreError> {
    if planted(Bug::PendingNotRecovered) {
        store.put(Table::Pending, k, None);
        return Ok(Outcome::Dropped);
    }
    let decoded = match bytes.split_first() {
        Some((&LAYOUT, rest)) => postcard::from_bytes::<ChainWrite>(rest).ok(),
        _ => None,
    };
    let Some(w) = decoded else {
        store.put(Table::Pending, k, None);
        tracing::error!(
            record = ?k,
            "a pending write record this version cannot read: dropped"
        );
        return Ok(Outcome::Dropped);
    };
    let Some(space) = config.space_by_id(w.region.space) else {
        store.put(Table::Pending, k, None);
        return Ok(Outcome::Dropped);
    };
    // A version already stored was committed with its retry record (the commit that
    // stored it took every pending version up to it): only its deletion was lost.
    let mut stored = Writing::load(store, w.region, &w.key)?;
    let subspaces = !space.schema.subspaces.is_empty();
    if w.version < stored.version || (w.version == stored.version && !subspaces) {
        store.put(Table::Pending, k, None);
        return Ok(Outcome::Dropped);
    }
    if w.version > stored.version {
        stored.absorb(store, &w)?;
        stored.stage(store)?;
    }
    if subspaces && !planted(Bug::PromotedNotHeld) {
        return Ok(Outcome::Held(Box::new(w)));
    }
    store.put(Table::Pending, k, None);
    Ok(Outcome::Committed)
}

#[cfg(test)]
mod tests {
    use hyperdex_model::{Operation, Reply, Value};

    use super::*;
    use crate::config::{key_bytes, Config};
    use crate::daemon::record::load;
    use crate::daemon::replica::{Input, Output, Replica};
    use crate::daemon::testnet::{head_of, op, Net};
    use crate::protocol::ChainMessage;

    fn pending_records(store: &dyn Store) -> usize {
        store.scan_prefix(Table::Pending, &[]).unwrap().len()
    }

    /// The head answers as soon as the tail acknowledges, before its own commit is synced;
    /// a crash then loses the commit, and the restarted head commits the write from its
    /// pending record, retry record included.
    #[test]
    fn an_answer_before_the_commit_is_synced_survives_a_crash() {
        let (mut net, config) = Net::new(
            2,
            "space s key k attributes int n create 1 partition tolerate 1 failure",
        );
        let (head, region) = head_of(&config, "a");
        let put = Operation::put("s", "a", vec![("n", Value::Int(5))]);
        net.input(head, op(&config, 1, 1, put.clone()));
        assert_eq!(
            pending_records(&net.replicas[&head].1),
            1,
            "kept on arrival"
        );
        // The tail stores the write and acknowledges it.
        assert!(net.deliver_one());
        let (from, to, ack) = net.in_flight.remove(0);
        assert_eq!(to, head);
        assert!(matches!(ack, ChainMessage::Ack(_)));
        // The head takes the acknowledgement; nothing it stages is synced.
        let now = net.now;
        let (replica, store) = net.replicas.get_mut(&head).unwrap();
        let outs = replica
            .step(store, now, Input::Chain { from, msg: ack })
            .unwrap();
        let [Output::Durable(reply, kept)] = outs.as_slice() else {
            panic!("one reply, vouched for by the pending record: {outs:?}")
        };
        assert!(matches!(**reply, Output::Reply(1, _)));
        assert_eq!(kept, &vec![pending_key(region, &key_of("a", &config), 1)]);
        assert!(
            kept.iter().all(|k| !store.unsynced(Table::Pending, k)),
            "the record it vouches for is durable: the reply may leave now"
        );
        assert!(store.unsynced(
            Table::Objects,
            &crate::daemon::record::object_key(region, &key_of("a", &config))
        ));
        // A power failure before the commit's sync.
        store.crash();
        let kb = key_of("a", &config);
        assert_eq!(load(store, region, &kb).unwrap().version, 0, "commit lost");
        // The head starts again on its disk: the first configuration promotes the record.
        let mut again = Replica::<u32>::new(head, Config::default());
        again
            .step(store, now, Input::Config(config.clone()))
            .unwrap();
        let stored = load(store, region, &kb).unwrap();
        assert_eq!(stored.version, 1);
        assert_eq!(stored.object.unwrap()["n"], Value::Int(5));
        assert_eq!(stored.dedupe.len(), 1, "its retry record came with it");
        assert_eq!(pending_records(store), 0);
    }

    /// A committed write's record goes at the second tick after its commit, not the first.
    #[test]
    fn records_are_forgotten_after_a_tick() {
        let (mut net, config) = Net::new(
            3,
            "space s key k attributes int n create 1 partition tolerate 2 failures",
        );
        let (head, _) = head_of(&config, "a");
        let put = Operation::put("s", "a", vec![("n", Value::Int(5))]);
        net.input(head, op(&config, 1, 1, put));
        net.deliver_all();
        assert_eq!(net.replies, vec![(1, Reply::Success)]);
        let ids: Vec<_> = net.replicas.keys().copied().collect();
        let held = |net: &Net| -> usize {
            ids.iter()
                .map(|i| pending_records(&net.replicas[i].1))
                .sum()
        };
        assert_eq!(held(&net), 2, "head and middle keep it; the tail stores it");
        for &id in &ids {
            net.input(id, Input::Tick);
        }
        assert_eq!(held(&net), 2, "not at the first tick");
        for &id in &ids {
            net.input(id, Input::Tick);
        }
        assert_eq!(held(&net), 0);
    }

    /// Records are promoted a window at a time, every one of them, and removed spaces'
    /// records only deleted.
    #[test]
    fn promotion_takes_every_record_in_windows() {
        let (_, config) = Net::new(1, "space s key k attributes int n create 4 partitions");
        let space = config.space("s").unwrap();
        let mut store = crate::storage::MemStore::new();
        let n = PROMOTE_WINDOW * 2 + 7;
        for i in 0..n {
            let key = key_of(&format!("k{i}"), &config);
            let mut object = hyperdex_model::Object::new();
            object.insert("n".into(), Value::Int(i as i64));
            keep(
                &mut store,
                &write(space.region_of_bytes(&key), key, 1, Some(object)),
            );
        }
        let removed = RegionId {
            space: crate::config::SpaceId(999),
            index: 0,
        };
        for version in [1, 2] {
            keep(&mut store, &write(removed, b"x".to_vec(), version, None));
        }
        store.sync().unwrap();
        assert_eq!(promote(&mut store, &config).unwrap().committed, n);
        assert_eq!(pending_records(&store), 0);
        for i in [0, PROMOTE_WINDOW, n - 1] {
            let key = key_of(&format!("k{i}"), &config);
            let stored = load(&store, space.region_of_bytes(&key), &key).unwrap();
            assert_eq!(stored.object.unwrap()["n"], Value::Int(i as i64));
        }
    }

    /// A chain write without a retry record.
    fn write(
        region: RegionId,
        key: Vec<u8>,
        version: u64,
        object: Option<hyperdex_model::Object>,
    ) -> ChainWrite {
        ChainWrite {
            config_version: 1,
            region,
            key,
            version,
            object,
            dedupe: None,
        }
    }

    fn key_of(k: &str, config: &Config) -> Vec<u8> {
        key_bytes(&config.space("s").unwrap().schema, &Value::string(k)).unwrap()
    }
}
