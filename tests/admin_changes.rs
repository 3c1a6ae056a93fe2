//! Administrative changes are in force once acknowledged: after `rm-space` returns, a client
//! that had the space gets UNKNOWNSPACE; `server-kill` of a live server returns only once the
//! server was taken out of every chain, and the objects it held are served by the rest.
#![cfg(not(madsim))]
#![allow(clippy::disallowed_methods)] // wall-clock measurement of a real-process test

mod support;

use std::time::{Duration, Instant};

use hyperdex::admin::Admin;
use hyperdex::client::{Client, ClientOptions};
use hyperdex::config::ServerState;
use hyperdex_model::{ReturnCode, Value};
use support::ProcCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_changes_are_in_force_when_acknowledged() {
    let cluster = ProcCluster::start("admin-changes", 3);
    let admin = Admin::connect_addr(&cluster.addr(), ClientOptions::default())
        .await
        .expect("admin");
    admin
        .add_space("space kv key k attributes int n create 4 partitions tolerate 1 failure")
        .await
        .expect("add space");
    admin
        .add_space("space gone key k attributes int n")
        .await
        .expect("add space");
    let client = Client::connect_with(&cluster.addr(), ClientOptions::default())
        .await
        .expect("client");
    for i in 0..40i64 {
        client
            .put("kv", format!("key{i}").as_str(), vec![("n", Value::Int(i))])
            .await
            .expect("put");
    }
    client
        .put("gone", "a", vec![("n", Value::Int(1))])
        .await
        .expect("put");

    // The client still has the configuration with the space in it.
    admin.rm_space("gone").await.expect("rm space");
    let err = client
        .get("gone", "a")
        .await
        .expect_err("the space is gone");
    assert_eq!(err.code, ReturnCode::UnknownSpace, "{err:?}");

    // Kill the head of region 0 while it is running.
    let config = admin.config().await.expect("config");
    let head = config.space("kv").expect("kv").chains[0][0];
    let started = Instant::now();
    admin.server_kill(head.0).await.expect("server kill");
    let took = started.elapsed();
    // The daemon is still running, so it may already have registered again (its next heartbeat
    // after the kill learns it was declared failed); it then comes back as a joiner, at a
    // chain's tail. Either way it heads no chain any more.
    let config = admin.config().await.expect("config");
    let server = config.server(head).expect("the server is still known");
    if server.state == ServerState::Available {
        let i = (0..3)
            .find(|&i| cluster.daemon_addr(i) == server.addr)
            .expect("a daemon of the cluster");
        let log = std::fs::read_to_string(cluster.dir.join(format!("daemon{}.log", i + 1)))
            .unwrap_or_default();
        assert!(
            log.contains("declared this server failed; registering again"),
            "server {head} is available but was never declared failed:\n{log}"
        );
    }
    let space = config.space("kv").expect("kv");
    assert!(
        space.chains.iter().all(|c| c.first() != Some(&head)),
        "server {head} still heads a chain: {config}"
    );
    // Fenced until its lease ran out: at least a lease, within a few failure timeouts.
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(10),
        "server-kill took {took:?}"
    );
    for i in 0..40i64 {
        let o = client
            .get("kv", format!("key{i}").as_str())
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("key{i} lost"));
        assert_eq!(o["n"], Value::Int(i));
    }
}

/// A space the client does not know is looked up at the coordinator; when the coordinator
/// cannot be reached, the answer is COORDFAIL (nothing known), never UNKNOWNSPACE (a
/// definite answer about a space that may exist).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_space_with_the_coordinator_down_is_coordfail() {
    let mut cluster = ProcCluster::start("coordfail-lookup", 1);
    let opts = ClientOptions {
        timeout: Duration::from_secs(2),
        attempt_timeout: Duration::from_millis(500),
        ..ClientOptions::default()
    };
    let client = Client::connect_with(&cluster.addr(), opts)
        .await
        .expect("client");
    cluster.kill_coordinator();
    let err = client
        .get("later", "k")
        .await
        .expect_err("no answer about a space nobody could look up");
    assert_eq!(err.code, ReturnCode::CoordFail, "{err:?}");
}

/// A live daemon that an operator forgets stops, saying why, instead of running on outside
/// the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_daemon_stops_and_says_why() {
    let mut cluster = ProcCluster::start("forget-live", 3);
    let admin = Admin::connect_addr(&cluster.addr(), ClientOptions::default())
        .await
        .expect("admin");
    admin
        .add_space("space kv key k attributes int n create 4 partitions tolerate 1 failure")
        .await
        .expect("add space");
    admin
        .wait_until_stable(Duration::from_secs(30))
        .await
        .expect("stable");
    let addr = cluster.daemon_addr(0);
    let config = admin.config().await.expect("config");
    let id = config
        .servers
        .values()
        .find(|s| s.addr == addr)
        .expect("the daemon is registered")
        .id;
    admin.server_forget(id.0).await.expect("server-forget");
    let deadline = Instant::now() + Duration::from_secs(15);
    let child = cluster.daemons[0].child.as_mut().expect("running");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the forgotten daemon is still running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "{status:?}");
    let log = std::fs::read_to_string(cluster.dir.join("daemon1.log")).unwrap_or_default();
    assert!(
        log.contains("not part of this cluster (was it forgotten?)"),
        "the log says why:\n{log}"
    );
}
