//! Stopping the whole cluster with SIGKILL and starting it again on the same data
//! directories loses no acknowledged write.
#![cfg(not(madsim))]

mod support;

use hyperdex::admin::Admin;
use hyperdex::client::{Client, ClientOptions};
use hyperdex_model::{NumOp, Operation, Reply, Value};
use support::ProcCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_full_cluster_restart() {
    let mut cluster = ProcCluster::start("restart", 3);
    let admin = Admin::connect_addr(&cluster.addr(), ClientOptions::default())
        .await
        .expect("admin");
    admin
        .add_space(
            "space kv key k attributes int n, string s create 8 partitions tolerate 1 failure",
        )
        .await
        .expect("add space");
    let client = Client::connect_with(&cluster.addr(), ClientOptions::default())
        .await
        .expect("client");

    // 300 puts and 10 counters incremented 20 times each, all outstanding at once.
    let mut expected_n = std::collections::BTreeMap::new();
    for i in 0..300i64 {
        client.start(Operation::put(
            "kv",
            format!("key{i}").as_str(),
            vec![("n", Value::Int(i)), ("s", Value::string(format!("v{i}")))],
        ));
        expected_n.insert(format!("key{i}"), i);
    }
    for c in 0..10 {
        client.start(Operation::put("kv", format!("counter{c}").as_str(), vec![]));
    }
    while let Some((_, reply)) = client.loop_next().await {
        assert_eq!(reply, Reply::Success);
    }
    for _ in 0..20 {
        for c in 0..10 {
            client.start(Operation::atomic(
                NumOp::Add,
                "kv",
                format!("counter{c}").as_str(),
                vec![("n", Value::Int(1))],
            ));
        }
    }
    let mut acked = 0;
    while let Some((_, reply)) = client.loop_next().await {
        assert_eq!(reply, Reply::Success);
        acked += 1;
    }
    assert_eq!(acked, 200);
    drop(client);
    drop(admin);

    cluster.kill_all();
    cluster.start_coordinator();
    for i in 0..3 {
        cluster.start_daemon(i);
    }
    cluster.wait_for_daemons(3);

    let client = Client::connect_with(&cluster.addr(), ClientOptions::default())
        .await
        .expect("client after restart");
    for (k, n) in &expected_n {
        let o = client
            .get("kv", k.as_str())
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("{k} lost"));
        assert_eq!(o["n"], Value::Int(*n), "{k}");
        assert_eq!(o["s"], Value::string(format!("v{n}")), "{k}");
    }
    for c in 0..10 {
        let o = client
            .get("kv", format!("counter{c}").as_str())
            .await
            .expect("get")
            .expect("counter");
        assert_eq!(o["n"], Value::Int(20), "counter{c}");
    }
    assert_eq!(client.count("kv", vec![]).await.expect("count"), 310);
}
