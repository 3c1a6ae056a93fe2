//! Bad input gets a clear error and changes nothing; a misbehaving peer is disconnected
//! without disturbing anyone else; bad start-up conditions exit with a message, not a panic.
#![cfg(not(madsim))]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use hyperdex::client::{Client, ClientOptions};
use hyperdex::net::RpcConn;
use hyperdex::protocol::frame::hello;
use hyperdex::protocol::{ClientRequest, ClientResponse, CoordRequest, Message, OpRequest};
use hyperdex_model::{Operation, Reply, ReturnCode, Value};
use support::{free_port, temp_dir, ProcCluster, BIN};

/// Sends raw bytes and reports whether the server closed the connection.
fn closed_after(addr: &str, bytes: &[u8], then_hang_up: bool) -> bool {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    if then_hang_up {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut buf = [0u8; 64];
    // The server sends its own hello first; read until it closes.
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => total += n,
            // Closing with unread input sends a reset: closed too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
        if total > 1 << 20 {
            return false;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::too_many_lines,
    reason = "one case per kind of hostile input, against one cluster"
)]
async fn hostile_connections_are_dropped_and_others_are_unaffected() {
    let cluster = ProcCluster::start("hostile", 2);
    let out = cluster.hyperdex(&["add-space"], Some("space kv key k attributes int n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = Client::connect_with(&cluster.addr(), ClientOptions::default())
        .await
        .expect("client");
    client
        .put("kv", "a", vec![("n", Value::Int(1))])
        .await
        .expect("put");

    let config = client.config();
    let daemon = config
        .servers
        .values()
        .next()
        .expect("a daemon")
        .addr
        .clone();
    for addr in [cluster.addr(), daemon.clone()] {
        // Not our protocol at all.
        assert!(
            closed_after(&addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false),
            "{addr}"
        );
        // Our handshake, then a frame claiming 4 GiB.
        let mut huge = hello().to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(closed_after(&addr, &huge, false), "{addr}");
        // Our handshake, then a frame of garbage.
        let mut garbage = hello().to_vec();
        garbage.extend_from_slice(&8u32.to_be_bytes());
        garbage.extend_from_slice(&[0xff; 8]);
        assert!(closed_after(&addr, &garbage, false), "{addr}");
        // A truncated frame, then the connection ends.
        let mut truncated = hello().to_vec();
        truncated.extend_from_slice(&100u32.to_be_bytes());
        truncated.extend_from_slice(&[1, 2, 3]);
        assert!(closed_after(&addr, &truncated, true), "{addr}");
    }

    // The client connected before all this still works, on the same connections.
    client
        .put("kv", "b", vec![("n", Value::Int(2))])
        .await
        .expect("put after hostile peers");
    assert_eq!(
        client.get("kv", "a").await.expect("get").expect("a")["n"],
        Value::Int(1)
    );

    // A daemon validates what it is sent, whatever the client checked.
    let raw = RpcConn::connect(&daemon, 1 << 20, Duration::from_secs(2))
        .await
        .expect("raw");
    let cases = [
        (
            Operation::put("kv", "a", vec![("n", Value::string("one"))]),
            ReturnCode::WrongType,
        ),
        (
            Operation::put("kv", "a", vec![("nope", Value::Int(1))]),
            ReturnCode::UnknownAttr,
        ),
        (
            Operation::put("kv", "a", vec![("k", Value::string("x"))]),
            ReturnCode::DontUseKey,
        ),
        (
            Operation::put("kv", Value::Int(1), vec![]),
            ReturnCode::WrongType,
        ),
        (Operation::get("nospace", "a"), ReturnCode::UnknownSpace),
    ];
    for (op, want) in cases {
        let msg = Message::ToDaemon(ClientRequest::Op(OpRequest {
            config_version: config.version,
            client: 1,
            seq: 1,
            low_seq: 1,
            op: op.clone(),
            auth: Vec::new(),
            first_unix: hyperdex::rt::unix_now(),
        }));
        let got = raw.call(msg, Duration::from_secs(2)).await.expect("reply");
        let code = match got {
            Message::FromDaemon(ClientResponse::Reply(r)) => r.code(),
            other => panic!("{op:?}: {other:?}"),
        };
        // A request for a key this daemon does not head is redirected; otherwise the code
        // must be the validation error.
        assert!(
            code == want || code == ReturnCode::Reconfigure,
            "{op:?}: {code:?}"
        );
    }
    let got = raw
        .call(
            Message::ToCoordinator(CoordRequest::GetConfig),
            Duration::from_secs(2),
        )
        .await
        .expect("reply");
    assert!(
        matches!(
            got,
            Message::Error {
                code: ReturnCode::Garbage,
                ..
            }
        ),
        "{got:?}"
    );
    assert_eq!(
        client.get("kv", "a").await.expect("get").expect("a")["n"],
        Value::Int(1),
        "nothing changed"
    );
    assert_eq!(
        client.call(Operation::get("kv", "zzz")).await,
        Reply::NotFound
    );
}

#[test]
fn a_daemon_with_an_unusable_data_directory_exits_with_a_message() {
    let dir = temp_dir("baddata");
    let file = dir.join("not-a-directory");
    std::fs::write(&file, b"x").expect("file");
    let out = std::process::Command::new(BIN)
        .args(["daemon", "-f", "--listen-port", &free_port().to_string()])
        .arg(format!("--data={}", file.display()))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot use data directory") && err.contains("not a directory"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_daemon_without_a_coordinator_exits_with_a_message() {
    let dir = temp_dir("nocoord");
    let out = std::process::Command::new(BIN)
        .args(["daemon", "-f", "--coordinator-timeout", "1"])
        .arg(format!("--listen-port={}", free_port()))
        .arg(format!("--coordinator-port={}", free_port()))
        .arg(format!("--data={}", dir.display()))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the coordinator"), "{err}");
    assert!(
        err.contains("is `hyperdex coordinator` running there?"),
        "{err}"
    );
}

/// A coordinator told to join one that is not there keeps trying, and its log says why.
#[test]
#[allow(clippy::disallowed_methods)] // waits on a real process
fn a_coordinator_that_cannot_join_says_why() {
    let dir = temp_dir("join-nobody");
    let log = dir.join("coordinator.log");
    let out = std::fs::File::create(&log).expect("log");
    let mut child = std::process::Command::new(BIN)
        .args(["coordinator", "-f", "-l", "127.0.0.1", "-p"])
        .arg(free_port().to_string())
        .args(["-c", "127.0.0.1", "-P"])
        .arg(free_port().to_string())
        .arg("-D")
        .arg(&dir)
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("start");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut text = String::new();
    while std::time::Instant::now() < deadline && !text.contains("joining the coordinators") {
        std::thread::sleep(Duration::from_millis(200));
        text = std::fs::read_to_string(&log).unwrap_or_default();
    }
    let running = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();
    assert!(running, "it gave up: {text}");
    assert!(text.contains("joining the coordinators"), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
}
