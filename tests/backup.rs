//! `hyperdex backup DIR` and `hyperdex restore DIR` on a running cluster: a backup holds every
//! object of every space (every datatype, indexes kept), leaves the cluster writable, and a
//! restore into a cluster without those spaces gives back the same objects.
#![cfg(not(madsim))]

mod support;

use std::collections::BTreeSet;

use hyperdex::admin::Admin;
use hyperdex::client::{Client, ClientOptions};
use hyperdex_model::{Object, Value};
use support::{temp_dir, ProcCluster};

const KV: &str = "space kv key k attributes int n, string t, set(int) s, map(string, float) m, \
                  document d index n create 8 partitions tolerate 1 failure";

async fn everything(client: &Client, space: &str) -> Vec<Object> {
    client.search_all(space, &[]).await.expect("search")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_every_object() {
    let cluster = ProcCluster::start("backup", 3);
    let admin = Admin::connect_addr(&cluster.addr(), ClientOptions::default())
        .await
        .expect("admin");
    admin.add_space(KV).await.expect("kv");
    admin
        .add_space("space empty key k attributes string v")
        .await
        .expect("empty");
    let client = Client::connect_with(&cluster.addr(), ClientOptions::default())
        .await
        .expect("client");
    for i in 0..600i64 {
        let doc = hyperdex_model::Document::parse(format!(r#"{{"i": {i}}}"#).as_bytes()).unwrap();
        client
            .put(
                "kv",
                format!("key{i}").as_str(),
                vec![
                    ("n", Value::Int(i % 17)),
                    ("t", Value::String(vec![0, 255, (i % 256) as u8])),
                    (
                        "s",
                        Value::Set(BTreeSet::from([Value::Int(i), Value::Int(-i)])),
                    ),
                    (
                        "m",
                        Value::Map([(Value::string("x"), Value::Float(i as f64 / 3.0))].into()),
                    ),
                    ("d", Value::Document(doc)),
                ],
            )
            .await
            .expect("put");
    }
    for i in (0..600i64).step_by(7) {
        client
            .write(hyperdex_model::Operation::del(
                "kv",
                format!("key{i}").as_str(),
            ))
            .await
            .expect("del");
    }
    let before = everything(&client, "kv").await;
    assert_eq!(before.len(), 600 - 86);

    let dir = temp_dir("backup-dir");
    let d = dir.join("b1");
    let out = cluster.hyperdex(&["backup", d.to_str().unwrap()], None);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("space kv 514"), "{report}");
    assert!(report.contains("space empty 0"), "{report}");
    // Writable again.
    client
        .put("kv", "after", vec![("n", Value::Int(1))])
        .await
        .expect("writable after the backup");
    // A backup never overwrites another.
    let out = cluster.hyperdex(&["backup", d.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    // Restoring over existing spaces is refused.
    let out = cluster.hyperdex(&["restore", d.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    admin.rm_space("kv").await.expect("rm kv");
    admin.rm_space("empty").await.expect("rm empty");
    let out = cluster.hyperdex(&["restore", d.to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let after = everything(&client, "kv").await;
    assert_eq!(after, before, "the restored objects differ");
    let config = admin.config().await.expect("config");
    assert_eq!(
        config.space("kv").expect("kv").schema.indexes,
        vec!["n".to_string()]
    );
    assert!(config.space("empty").is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
