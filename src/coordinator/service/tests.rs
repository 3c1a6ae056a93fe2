use super::super::consensus::{Peers, Start};
use super::*;
use crate::net::Credentials;
use crate::storage::{KeyValues, MemStore, Store, StoreError, Table};
use std::sync::{Arc, Mutex};

/// A store whose disk can be made to refuse every sync.
struct FlakyDisk {
    inner: MemStore,
    broken: Arc<Mutex<bool>>,
}

impl Store for FlakyDisk {
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
    fn put(&mut self, table: Table, key: &[u8], value: Option<Vec<u8>>) {
        self.inner.put(table, key, value)
    }
    fn delete_prefix(&mut self, table: Table, prefix: &[u8]) {
        self.inner.delete_prefix(table, prefix)
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        if *self.broken.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(StoreError::Io("disk full".into()));
        }
        self.inner.sync()
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

/// A single coordinator's actor on `disk`.
fn service(disk: Box<dyn Store>) -> Service {
    let peers = Peers::new(Credentials::client(None), 1 << 20);
    let (consensus, cluster) = Consensus::open(
        disk,
        "127.0.0.1:1982",
        |_| Ok(Start::New(Cluster::new(7))),
        peers,
    )
    .expect("open");
    let (_, inbox) = mpsc::channel(1);
    Service::new(cluster, consensus, inbox, Timing::default())
}

#[test]
fn a_command_that_cannot_be_persisted_is_not_answered_and_stops_the_coordinator() {
    block_on(persisting_fails());
}

async fn persisting_fails() {
    let disk = MemStore::new();
    let broken = Arc::new(Mutex::new(false));
    let mut shared = service(Box::new(FlakyDisk {
        inner: disk.clone(),
        broken: broken.clone(),
    }));
    shared.drive().await;
    assert!(shared.leading, "a lone coordinator leads at once");
    shared
        .apply(Command::Register {
            id: None,
            addr: "127.0.0.1:2012".into(),
        })
        .await
        .expect("register");
    let before = shared.cluster.clone();

    *broken.lock().unwrap() = true;
    let err = shared
        .apply(Command::add_space("space kv key k attributes v").expect("a valid space"))
        .await
        .expect_err("the sync fails");
    assert_eq!(err.0, ReturnCode::AdminServerError);
    assert!(err.1.contains("disk full"), "{}", err.1);
    assert!(shared.broken.is_some(), "the coordinator goes on");

    // The process dies; what it wrote but never synced is gone.
    disk.crash();
    let mut reloaded = service(Box::new(disk.clone()));
    reloaded.drive().await;
    assert_eq!(reloaded.cluster, before);
    assert!(
        reloaded.cluster.config.spaces.is_empty(),
        "the refused space came back"
    );
}

#[test]
fn a_restarted_coordinator_replays_its_log() {
    block_on(async {
        let disk = MemStore::new();
        let mut first = service(Box::new(disk.clone()));
        first.drive().await;
        for i in 0..(super::super::consensus::COMPACT_EVERY + 10) {
            first
                .apply(Command::Register {
                    id: None,
                    addr: format!("127.0.0.1:{}", 3000 + i),
                })
                .await
                .expect("register");
        }
        let mut second = service(Box::new(disk.clone()));
        second.drive().await;
        assert_eq!(second.cluster, first.cluster);
        assert_eq!(second.cluster.config.coordinators.len(), 1);
    });
}
