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
use hyperdex::config::{RegionId, ServerId, SpaceId};
use hyperdex::macaroon::Macaroon;
use hyperdex::net::{Credentials, RpcConn};
use hyperdex::protocol::auth::{Role, Secret};
use hyperdex::protocol::frame::{encode_frame, hello};
use hyperdex::protocol::{
    AdminCommand, ChainMessage, ChainWrite, ClientRequest, CoordRequest, Envelope, Message,
    OpRequest, DEFAULT_MAX_FRAME,
};
use hyperdex_model::schema::SECRET_ATTRIBUTE;
use hyperdex_model::{NumOp, Operation, Reply, ReturnCode, Value};
use support::ProcCluster;

/// A `get` of `key` in `kv`, as a client's first request would carry it.
fn get_envelope(key: Value) -> Envelope {
    Envelope {
        id: 1,
        msg: Message::ToDaemon(ClientRequest::Op(OpRequest {
            config_version: 1,
            client: 1,
            seq: 1,
            low_seq: 1,
            op: Operation::get("kv", key),
            auth: Vec::new(),
            first_unix: 0,
        })),
    }
}

/// A `get` whose key is a list nested `depth` levels deep, as a whole frame.
fn nested_get_frame(depth: usize) -> Vec<u8> {
    let env = get_envelope(Value::List(vec![]));
    let frame = encode_frame(&env, DEFAULT_MAX_FRAME).expect("encode");
    // The key ends the operation: an empty list, bytes [5, 0], then the empty list of
    // macaroons, [0], and the time of the first attempt, [0]. Nest the key.
    let mut payload = frame[4..frame.len() - 4].to_vec();
    payload.extend([5u8, 1].repeat(depth));
    payload.extend([5, 0, 0, 0]);
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

const SECRET: &str = "the secret of the hostile test's cluster";

/// What a forger sends: requests that would change the cluster if they were obeyed.
fn forged_coordinator_requests() -> Vec<CoordRequest> {
    vec![
        CoordRequest::Register {
            id: None,
            addr: "127.0.0.1:9".into(),
        },
        CoordRequest::Heartbeat {
            id: ServerId(1),
            config_version: 1,
            joining: Vec::new(),
        },
        CoordRequest::TransferComplete {
            id: ServerId(1),
            region: RegionId {
                space: SpaceId(1),
                index: 0,
            },
            since: 1,
        },
        CoordRequest::Leave { id: ServerId(1) },
        CoordRequest::Admin(AdminCommand::RmSpace("kv".into())),
        CoordRequest::Admin(AdminCommand::ServerKill(ServerId(1))),
    ]
}

/// Requests that would change the cluster, from a connection that did not introduce itself,
/// are refused; so are introductions with a wrong secret, or none.
async fn refuse_forged_requests(coordinator: &str) {
    // To the coordinator, from a connection that did not introduce itself.
    let anonymous = RpcConn::connect(coordinator, DEFAULT_MAX_FRAME, Duration::from_secs(2))
        .await
        .expect("connect");
    for req in forged_coordinator_requests() {
        let name = req.name();
        let reply = anonymous
            .call(Message::ToCoordinator(req), Duration::from_secs(2))
            .await
            .expect("a reply");
        assert!(
            matches!(
                &reply,
                Message::Error {
                    code: ReturnCode::Unauthorized,
                    ..
                }
            ),
            "{name}: {reply:?}"
        );
    }
    // Introductions with a wrong secret, or none, are refused.
    for (role, secret) in [
        (Role::Server, Some("not the secret of this cluster at all")),
        (Role::Admin, Some("not the secret of this cluster at all")),
        (Role::Admin, None),
    ] {
        let who = Credentials {
            role,
            server: None,
            secret: secret.map(|s| Secret::new(s.as_bytes()).expect("secret")),
            tls: None,
        };
        let r =
            RpcConn::connect_as(coordinator, DEFAULT_MAX_FRAME, Duration::from_secs(2), &who).await;
        assert!(r.is_err(), "{role:?} with {secret:?} was let in");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_messages_without_the_secret_change_nothing() {
    let mut cluster = ProcCluster::start_with_secret("forged", 3, Some(SECRET));
    add_space(&cluster);
    let client = Client::connect_with(&cluster.addr(), ClientOptions::default())
        .await
        .expect("client");
    client
        .put("kv", "a", vec![("n", Value::Int(1))])
        .await
        .expect("put");
    let config = client.refresh().await.expect("config");
    let region = config
        .space("kv")
        .and_then(|s| s.region_of(&Value::string("a")))
        .expect("region");
    let chain = config.chain(region).to_vec();
    let addr_of = |id: ServerId| config.server(id).expect("server").addr.clone();
    let key =
        hyperdex::config::key_bytes(&config.space("kv").expect("kv").schema, &Value::string("a"))
            .expect("key");

    refuse_forged_requests(&cluster.addr()).await;

    // A chain write that would pin the key at the tail, from an anonymous connection, and
    // from a member (it knows the secret) that is not the tail's predecessor.
    let forged = ChainMessage::Write(ChainWrite {
        config_version: config.version,
        region,
        key: key.clone(),
        version: u64::MAX,
        object: Some([("n".to_string(), Value::Int(666))].into()),
        dedupe: None,
    });
    let tail = *chain.last().expect("a tail");
    let to_tail = RpcConn::connect(&addr_of(tail), DEFAULT_MAX_FRAME, Duration::from_secs(2))
        .await
        .expect("connect");
    assert!(to_tail
        .send(Message::Chain(forged.clone()))
        .await
        .expect("encodes"));
    let impostor = Credentials {
        role: Role::Server,
        server: Some(ServerId(999)),
        secret: Some(Secret::new(SECRET.as_bytes()).expect("secret")),
        tls: None,
    };
    let member = RpcConn::connect_as(
        &addr_of(tail),
        DEFAULT_MAX_FRAME,
        Duration::from_secs(2),
        &impostor,
    )
    .await
    .expect("a member is let in");
    assert!(member.send(Message::Chain(forged)).await.expect("encodes"));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Nothing changed: the configuration, and both replicas (the tail answers once the head
    // is gone).
    let after = client.refresh().await.expect("config");
    assert_eq!(after.version, config.version, "the configuration moved");
    assert!(after.space("kv").is_some());
    assert_eq!(
        client.get("kv", "a").await.expect("get").expect("a")["n"],
        Value::Int(1)
    );
    let head = cluster
        .daemons
        .iter()
        .position(|d| addr_of(chain[0]).ends_with(&format!(":{}", d.port)))
        .expect("the head's process");
    cluster.kill_daemon(head);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let c = client.refresh().await.expect("config");
        if c.chain(region).first() == Some(&tail) {
            break;
        }
        assert!(Instant::now() < deadline, "no failover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        client.get("kv", "a").await.expect("get").expect("a")["n"],
        Value::Int(1),
        "the tail's copy was changed"
    );
    put_get_within(&client, "b", Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_a_space_with_authorization_need_their_macaroon() {
    let cluster = ProcCluster::start("macaroon", 2);
    let out = cluster.hyperdex(
        &["add-space"],
        Some("space accounts key account attributes string name, int balance with authorization"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = Client::connect_with(&cluster.addr(), ClientOptions::default())
        .await
        .expect("client");
    let secret = "the password of this account";
    client
        .put(
            "accounts",
            "john",
            vec![
                ("balance", Value::Int(10)),
                (SECRET_ATTRIBUTE, Value::string(secret)),
            ],
        )
        .await
        .expect("created with its secret");
    let code = |r: Result<Option<hyperdex_model::Object>, hyperdex::client::ClientError>| {
        r.err().map(|e| e.code)
    };
    assert_eq!(
        code(client.get("accounts", "john").await),
        Some(ReturnCode::Unauthorized),
        "no macaroon"
    );
    let forged = Macaroon::create(b"", b"a guess at the password", b"").serialize();
    assert_eq!(
        code(client.with_auth(vec![forged]).get("accounts", "john").await),
        Some(ReturnCode::Unauthorized),
        "a macaroon from another secret"
    );
    let token = Macaroon::create(b"account john", secret.as_bytes(), b"").serialize();
    let holder = client.with_auth(vec![token.clone()]);
    let got = holder
        .get("accounts", "john")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got["balance"], Value::Int(10));
    assert!(
        !got.contains_key(SECRET_ATTRIBUTE),
        "the secret is never read back"
    );
    let read_only = Macaroon::create(b"", secret.as_bytes(), b"")
        .add_first_party_caveat(b"op = read")
        .serialize();
    let reader = client.with_auth(vec![read_only]);
    let add = Operation::atomic(
        NumOp::Add,
        "accounts",
        "john",
        vec![("balance", Value::Int(5))],
    );
    assert!(matches!(
        reader.call(add.clone()).await,
        Reply::Error(ReturnCode::Unauthorized, _)
    ));
    assert_eq!(holder.call(add).await, Reply::Success);
}

/// The daemon's open file descriptors.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Peers that send requests and never read the replies are closed once their replies back
/// up, and leave nothing open at the server once it has given up writing to them (after the
/// time a frame may take, 30 s): not even a writer stuck on the full socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_never_read_their_replies_leave_nothing_open() {
    let cluster = ProcCluster::start("unread", 1);
    add_space(&cluster);
    let daemon = cluster.daemon_addr(0);
    let pid = cluster.daemons[0].child.as_ref().expect("daemon").id();
    let requests = encode_frame(&get_envelope(Value::string("a")), DEFAULT_MAX_FRAME)
        .expect("encode")
        .repeat(10_000);
    let before = open_fds(pid);
    let peers: Vec<TcpStream> = (0..20)
        .map(|_| {
            let (daemon, requests) = (daemon.clone(), requests.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&daemon).expect("connect");
                s.set_write_timeout(Some(Duration::from_secs(1)))
                    .expect("timeout");
                s.write_all(&hello()).expect("hello");
                // Requests until the server stops reading them.
                while s.write_all(&requests).is_ok() {}
                s
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("peer"))
        .collect();
    // (Some may already be gone: each writer gives up 30 s after its peer stopped reading.)
    assert!(open_fds(pid) > before, "the peers are not connected");
    let deadline = Instant::now() + hyperdex::limits::FRAME_TIMEOUT + Duration::from_secs(15);
    while open_fds(pid) > before + 2 {
        assert!(
            Instant::now() < deadline,
            "{} descriptors open at the daemon, {before} before 20 peers that do not read",
            open_fds(pid)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let client = Client::connect_with(&cluster.addr(), ClientOptions::default())
        .await
        .expect("client");
    put_get_within(&client, "k", Duration::from_millis(500)).await;
    drop(peers);
}
