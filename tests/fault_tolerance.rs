//! Changing a space's fault tolerance on a running cluster: new replicas are filled by state
//! transfer, extra ones leave from the tail, and no object is lost either way.
#![cfg(not(madsim))]

mod support;

use std::time::Duration;

use hyperdex::admin::Admin;
use hyperdex::client::{Client, ClientOptions};
use hyperdex_model::{Operation, Reply, Value};
use support::ProcCluster;

async fn chain_lengths(admin: &Admin) -> Vec<usize> {
    let config = admin.config().await.expect("config");
    let space = config.space("kv").expect("space kv");
    space.chains.iter().map(Vec::len).collect()
}

async fn check_all(client: &Client, n: i64) {
    for i in 0..n {
        let o = client
            .get("kv", format!("key{i}").as_str())
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("key{i} lost"));
        assert_eq!(o["n"], Value::Int(i), "key{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tolerance_changes_move_replicas_without_losing_objects() {
    let mut cluster = ProcCluster::start("fault-tolerance", 3);
    let admin = Admin::connect_addr(&cluster.addr(), ClientOptions::default())
        .await
        .expect("admin");
    admin
        .add_space("space kv key k attributes int n create 8 partitions tolerate 0 failures")
        .await
        .expect("add space");
    let client = Client::connect_with(&cluster.addr(), ClientOptions::default())
        .await
        .expect("client");
    for i in 0..200i64 {
        client.start(Operation::put(
            "kv",
            format!("key{i}").as_str(),
            vec![("n", Value::Int(i))],
        ));
    }
    while let Some((_, reply)) = client.loop_next().await {
        assert_eq!(reply, Reply::Success);
    }
    assert!(chain_lengths(&admin).await.iter().all(|&l| l == 1));

    // Up to three replicas, through the command line.
    let out = cluster.hyperdex(&["fault-tolerance", "kv", "2"], None);
    assert!(out.status.success(), "{out:?}");
    admin
        .wait_until_stable(Duration::from_secs(60))
        .await
        .expect("stable at tolerate 2");
    assert!(chain_lengths(&admin).await.iter().all(|&l| l == 3));
    check_all(&client, 200).await;

    // Down to two: the tails leave at once, and writes go on.
    admin.fault_tolerance("kv", 1).await.expect("tolerate 1");
    assert!(chain_lengths(&admin).await.iter().all(|&l| l == 2));
    for i in 200..300i64 {
        client
            .put("kv", format!("key{i}").as_str(), vec![("n", Value::Int(i))])
            .await
            .unwrap_or_else(|e| panic!("put key{i}: {e}"));
    }

    // One failure is now tolerated: every object is still there after a SIGKILL.
    cluster.kill_daemon(0);
    check_all(&client, 300).await;

    // Bad requests are refused and change nothing.
    let before = admin.config().await.expect("config");
    let err = admin
        .fault_tolerance("nope", 1)
        .await
        .expect_err("no space");
    assert!(err.message.contains("nope"), "{err:?}");
    let out = cluster.hyperdex(&["fault-tolerance", "kv", "1000"], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at most"),
        "{out:?}"
    );
    let after = admin.config().await.expect("config");
    assert_eq!(before.spaces, after.spaces);
}
