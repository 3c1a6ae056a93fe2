//! Hostile networks against real processes: frames built to overflow a stack, thousands of
//! connections that stall or idle. Every server keeps serving, and a normal client is not
//! slowed down.
#![cfg(not(madsim))]
#![allow(clippy::disallowed_methods)] // tests read the wall clock on purpose

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hyperdex::client::{Client, ClientOptions};
use hyperdex::protocol::frame::{encode_frame, hello};
use hyperdex::protocol::{ClientRequest, Envelope, Message, OpRequest, DEFAULT_MAX_FRAME};
use hyperdex_model::{Operation, Value};
use support::ProcCluster;

/// A `get` whose key is a list nested `depth` levels deep, as a whole frame.
fn nested_get_frame(depth: usize) -> Vec<u8> {
    let env = Envelope {
        id: 1,
        msg: Message::ToDaemon(ClientRequest::Op(OpRequest {
            config_version: 1,
            client: 1,
            seq: 1,
            low_seq: 1,
            op: Operation::get("kv", Value::List(vec![])),
        })),
    };
    let frame = encode_frame(&env, DEFAULT_MAX_FRAME).expect("encode");
    // The key is the last field: an empty list, bytes [5, 0]. Nest it.
    let mut payload = frame[4..frame.len() - 2].to_vec();
    payload.extend([5u8, 1].repeat(depth));
    payload.extend([5, 0]);
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend(payload);
    out
}

/// Connects, exchanges handshakes, sends `bytes`, and waits for the server to close.
fn send_and_wait_for_close(addr: &str, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(&hello()).expect("hello");
    let mut theirs = [0u8; 8];
    s.read_exact(&mut theirs).expect("server hello");
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("{addr} neither answered nor closed: {e}"),
        }
    }
}

async fn put_get_within(client: &Client, key: &str, bound: Duration) {
    let start = Instant::now();
    client
        .put("kv", key, vec![("n", Value::Int(1))])
        .await
        .expect("put");
    let put = start.elapsed();
    let start = Instant::now();
    let got = client.get("kv", key).await.expect("get").expect("found");
    let get = start.elapsed();
    assert_eq!(got["n"], Value::Int(1));
    assert!(put < bound && get < bound, "put took {put:?}, get {get:?}");
}

fn add_space(cluster: &ProcCluster) {
    let out = cluster.hyperdex(&["add-space"], Some("space kv key k attributes int n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_nested_a_million_deep_crash_no_server() {
    let mut cluster = ProcCluster::start("nested", 2);
    add_space(&cluster);
    for depth in [100_000, 1_000_000] {
        let frame = nested_get_frame(depth);
        for addr in [
            cluster.addr(),
            cluster.daemon_addr(0),
            cluster.daemon_addr(1),
        ] {
            send_and_wait_for_close(&addr, &frame);
        }
    }
    assert!(cluster.all_alive(), "a server died");
    let client = Client::connect_with(&cluster.addr(), ClientOptions::default())
        .await
        .expect("client");
    put_get_within(&client, "after", Duration::from_secs(5)).await;
}

/// Opens `n` connections to `addrs` in turn; with `stall`, each handshakes and starts a
/// 16 MiB frame it never finishes, otherwise it only connects.
fn open_many(addrs: &[String], n: usize, stall: bool) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(&addrs[i % addrs.len()]).expect("connect");
            if stall {
                let mut started = hello().to_vec();
                started.extend((DEFAULT_MAX_FRAME as u32).to_be_bytes());
                started.extend([0u8; 3]);
                s.write_all(&started).expect("start a frame");
            }
            s
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_idle_connections_do_not_slow_a_client() {
    let mut cluster = ProcCluster::start("stalled", 2);
    add_space(&cluster);
    let addrs = vec![
        cluster.addr(),
        cluster.daemon_addr(0),
        cluster.daemon_addr(1),
    ];
    let stalled = open_many(&addrs, 2_000, true);
    let idle = open_many(&addrs, 5_000, false);
    // Give the servers a moment to accept them all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = Client::connect_with(&cluster.addr(), ClientOptions::default())
        .await
        .expect("client");
    for i in 0..20 {
        put_get_within(&client, &format!("k{i}"), Duration::from_millis(100)).await;
    }
    assert!(cluster.all_alive(), "a server died");
    drop((stalled, idle));
}
