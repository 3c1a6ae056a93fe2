//! The read cache: objects a head has read, kept so that later reads of them are answered by
//! the connection that received them, without a turn through the actor's queue (which may be
//! behind a batch of writes).
//!
//! The rule for when a cached object may answer a read is the replica's
//! ([`replica::cached`](super::replica::cached)); this module keeps the objects and the
//! actor's [`View`], both bounded and safe to share between tasks:
//!
//! - the actor publishes its view after each batch and, for the reads of that batch that
//!   leave at once, caches what they read;
//! - every write the actor stages goes through [`Invalidating`], which drops the cached
//!   object of its key first, so no cached object outlives the stored version it copies;
//! - a batch that may change more than the keys it names (a configuration, a peer that came
//!   back, a state transfer's message) empties the cache.
//!
//! The cache holds at most [`READ_CACHE_BYTES`] (the leading fields of each record, encoded,
//! and its key) and forgets the objects cached longest ago first.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

use crate::bugs::{planted, Bug};
use crate::config::Config;
use crate::limits::{READ_CACHE_BYTES, READ_CACHE_OBJECT_BYTES};
use crate::protocol::{ClientResponse, OpRequest};
use crate::rt;
use crate::storage::{KeyValues, LogWriter, Store, StoreError, Table};

use super::replica::cached::{self, Cached, Newest, View};
use super::replica::durable::object_key_of_pending;
use super::replica::Lease;

/// What an entry costs beyond its record and key.
const ENTRY_OVERHEAD: usize = 64;

/// Objects by object key, and the actor's view; see the module documentation.
pub struct ReadCache {
    view: RwLock<Arc<View>>,
    /// The newest configuration and lease the coordinator link has received.
    config: watch::Receiver<Arc<Config>>,
    lease: watch::Receiver<Option<Lease>>,
    objects: Mutex<Objects>,
}

#[derive(Default)]
struct Objects {
    /// Each object with the number it was cached as.
    map: BTreeMap<Vec<u8>, (u64, Arc<Cached>)>,
    /// Keys by the number they were cached as, oldest first; an entry whose number is not
    /// its key's in `map` was forgotten or cached again since.
    order: VecDeque<(u64, Vec<u8>)>,
    next: u64,
    bytes: usize,
}

impl Objects {
    fn remove(&mut self, key: &[u8]) {
        if let Some((_, c)) = self.map.remove(key) {
            self.bytes -= cost(key, &c);
        }
    }
}

fn cost(key: &[u8], c: &Cached) -> usize {
    key.len() + c.leading.len() + ENTRY_OVERHEAD
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ReadCache {
    /// A cache that answers nothing until the actor publishes a view with a lease;
    /// `config` and `lease` are the coordinator link's.
    pub fn new(
        view: View,
        config: watch::Receiver<Arc<Config>>,
        lease: watch::Receiver<Option<Lease>>,
    ) -> Arc<ReadCache> {
        Arc::new(ReadCache {
            view: RwLock::new(Arc::new(view)),
            config,
            lease,
            objects: Mutex::default(),
        })
    }

    /// The answer to `req` from the cache, received at `now`, if the replica's rule gives
    /// one (`None`: the actor answers it).
    pub fn answer(&self, req: &OpRequest, now: rt::Instant) -> Option<ClientResponse> {
        if req.op.is_mutation() {
            return None;
        }
        let view = self.view.read().unwrap_or_else(|e| e.into_inner()).clone();
        let newest = Newest {
            config_version: self.config.borrow().version,
            lease: *self.lease.borrow(),
        };
        let cached = |key: &[u8]| lock(&self.objects).map.get(key).map(|(_, c)| c.clone());
        cached::answer((&view, newest), req, (now, rt::unix_now()), cached)
    }

    /// Publishes the actor's view (if it says anything new).
    pub fn publish(&self, view: View) {
        let mut current = self.view.write().unwrap_or_else(|e| e.into_inner());
        if !current.same(&view) {
            *current = Arc::new(view);
        }
    }

    /// Caches what a read at the head found under `key`.
    pub fn insert(&self, key: Vec<u8>, c: Arc<Cached>) {
        let need = cost(&key, &c);
        if need > READ_CACHE_OBJECT_BYTES {
            return;
        }
        let mut guard = lock(&self.objects);
        let objects = &mut *guard;
        objects.remove(&key);
        while objects.bytes + need > READ_CACHE_BYTES {
            let Some((n, oldest)) = objects.order.pop_front() else {
                break;
            };
            if objects.map.get(&oldest).is_some_and(|(m, _)| *m == n) {
                objects.remove(&oldest);
            }
        }
        if objects.order.len() >= 2 * objects.map.len() + 1024 {
            // Mostly keys forgotten or cached again since: keep only the current ones.
            let map = &objects.map;
            objects
                .order
                .retain(|(n, k)| map.get(k).is_some_and(|(m, _)| m == n));
        }
        let n = objects.next;
        objects.next += 1;
        objects.order.push_back((n, key.clone()));
        objects.map.insert(key, (n, c));
        objects.bytes += need;
    }

    /// Forgets the object cached under `key`, if any.
    pub fn forget(&self, key: &[u8]) {
        lock(&self.objects).remove(key);
    }

    /// Forgets every cached object.
    pub fn clear(&self) {
        *lock(&self.objects) = Objects::default();
    }

    /// How many objects are cached, and the bytes they count for.
    pub fn size(&self) -> (usize, usize) {
        let objects = lock(&self.objects);
        (objects.map.len(), objects.bytes)
    }
}

/// A store that forgets the cached object of every key written through it (see the module
/// documentation): objects under their object key, pending writes under the object key and
/// a version. Deleting a pending write's record changes no stored object (its write was
/// committed, which stored the object, or dropped), so it forgets nothing.
pub struct Invalidating {
    pub inner: Box<dyn Store>,
    pub cache: Arc<ReadCache>,
}

impl Invalidating {
    fn forget(&self, table: Table, key: &[u8], value: Option<&[u8]>) {
        if planted(Bug::ReadCacheStale) {
            return;
        }
        match table {
            Table::Objects => self.cache.forget(key),
            Table::Pending if value.is_some() => {
                if let Some(object) = object_key_of_pending(key) {
                    self.cache.forget(object);
                }
            }
            _ => {}
        }
    }
}

impl Store for Invalidating {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }

    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        self.inner.scan_from(table, prefix, after, limit)
    }

    fn scan_prefix(&self, table: Table, prefix: &[u8]) -> Result<KeyValues, StoreError> {
        self.inner.scan_prefix(table, prefix)
    }

    fn put(&mut self, table: Table, key: &[u8], value: Option<Vec<u8>>) {
        self.forget(table, key, value.as_deref());
        self.inner.put(table, key, value);
    }

    fn delete_prefix(&mut self, table: Table, prefix: &[u8]) {
        if matches!(table, Table::Objects | Table::Pending) {
            self.cache.clear();
        }
        self.inner.delete_prefix(table, prefix);
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.inner.sync()
    }

    fn begin_sync(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.begin_sync()
    }

    fn log_writer(&self) -> Option<Box<dyn LogWriter>> {
        self.inner.log_writer()
    }

    fn staged_in(&self, table: Table) -> bool {
        self.inner.staged_in(table)
    }

    fn record_durable(&mut self) {
        self.inner.record_durable();
    }

    fn unsynced(&self, table: Table, key: &[u8]) -> bool {
        self.inner.unsynced(table, key)
    }

    fn checkpoint_due(&self) -> bool {
        self.inner.checkpoint_due()
    }

    fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.inner.checkpoint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerId;
    use crate::storage::MemStore;

    fn cache() -> Arc<ReadCache> {
        let config = Arc::new(Config::default());
        let view = View {
            me: ServerId(1),
            config: config.clone(),
            lease: None,
            lease_length: std::time::Duration::from_secs(1),
        };
        // The receivers go on reading the last value once their senders are gone.
        let (_, config) = watch::channel(config);
        let (_, lease) = watch::channel(None);
        ReadCache::new(view, config, lease)
    }

    fn object(bytes: usize) -> Arc<Cached> {
        Arc::new(Cached {
            config_version: 1,
            leading: vec![0; bytes],
        })
    }

    fn cached(cache: &ReadCache, key: &[u8]) -> bool {
        lock(&cache.objects).map.contains_key(key)
    }

    #[test]
    fn every_write_through_the_store_forgets_its_keys_object() {
        let cache = cache();
        let mut store = Invalidating {
            inner: Box::new(MemStore::new()),
            cache: cache.clone(),
        };
        for k in [&b"a"[..], b"b", b"c"] {
            cache.insert(k.to_vec(), object(10));
        }
        store.put(Table::Meta, b"a", Some(vec![1]));
        store.put(Table::Index, b"a", Some(vec![1]));
        assert!(cached(&cache, b"a"), "other tables leave it");
        store.put(Table::Objects, b"a", Some(vec![1]));
        assert!(!cached(&cache, b"a"), "a new object");
        // A pending write's key is its object key and its version.
        let pending = [b"b".as_slice(), &7u64.to_be_bytes()].concat();
        store.put(Table::Pending, &pending, None);
        assert!(cached(&cache, b"b"), "a pending write's record deleted");
        store.put(Table::Pending, &pending, Some(vec![1]));
        assert!(!cached(&cache, b"b"), "a pending write");
        assert!(cached(&cache, b"c"));
        store.delete_prefix(Table::Objects, b"x");
        assert_eq!(cache.size(), (0, 0), "a region deleted");
    }

    #[test]
    fn the_cache_keeps_its_bytes_bounded_and_forgets_the_oldest_first() {
        let cache = cache();
        cache.insert(b"huge".to_vec(), object(READ_CACHE_OBJECT_BYTES));
        assert_eq!(cache.size(), (0, 0), "too large to cache");
        let each = READ_CACHE_OBJECT_BYTES - 8 - ENTRY_OVERHEAD;
        let fit = READ_CACHE_BYTES / READ_CACHE_OBJECT_BYTES;
        for i in 0..fit as u64 + 10 {
            cache.insert(i.to_be_bytes().to_vec(), object(each));
            // The same key again replaces its entry, and counts as cached now.
            cache.insert(i.to_be_bytes().to_vec(), object(each));
            if i == 20 {
                cache.insert(0u64.to_be_bytes().to_vec(), object(each));
            }
        }
        let (objects, bytes) = cache.size();
        assert!(bytes <= READ_CACHE_BYTES, "{bytes}");
        assert_eq!(objects, fit);
        assert!(!cached(&cache, &1u64.to_be_bytes()), "the oldest went");
        assert!(cached(&cache, &0u64.to_be_bytes()), "cached again since");
        assert!(cached(&cache, &(fit as u64 + 9).to_be_bytes()));
        let order = lock(&cache.objects).order.len();
        assert!(
            order <= 2 * objects + 1024,
            "keys forgotten are dropped: {order}"
        );
    }
}
