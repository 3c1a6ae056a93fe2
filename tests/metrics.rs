//! `--metrics-listen`: the coordinator and each daemon serve Prometheus text on
//! `GET /metrics`; requests are counted by kind and return code.
#![cfg(not(madsim))]
#![allow(clippy::disallowed_methods)] // polls a real process with wall-clock deadlines

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyperdex::client::Client;
use hyperdex_model::Value;
use support::{free_port, temp_dir, BIN};

/// The status line and body of `request` sent to `port`.
fn http(port: u16, request: &str) -> (String, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (String::new(), String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(request.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

fn scrape(port: u16) -> String {
    http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").1
}

/// Scrapes `port` until `want` appears in the text (or panics after 15 s).
fn wait_for(port: u16, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = scrape(port);
        if text.contains(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {want} on port {port}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_serve_their_metrics() {
    let dir = temp_dir("metrics");
    let (coord, metrics) = (free_port(), free_port());
    let mut local = Command::new(BIN)
        .args(["local", "--daemons", "1", "--port", &coord.to_string()])
        .arg(format!("--metrics-listen=127.0.0.1:{metrics}"))
        .arg(format!("--data={}", dir.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hyperdex local");
    let text = wait_for(metrics, r#"hyperdex_servers{state="AVAILABLE"} 1"#);
    assert!(
        text.contains("# TYPE hyperdex_heartbeats counter"),
        "{text}"
    );

    let client = Client::connect_with(&format!("127.0.0.1:{coord}"), Default::default())
        .await
        .expect("client");
    let admin =
        hyperdex::admin::Admin::connect_addr(&format!("127.0.0.1:{coord}"), Default::default())
            .await
            .expect("admin");
    admin
        .add_space("space kv key k attributes int n")
        .await
        .expect("space");
    client
        .put("kv", "a", vec![("n", Value::Int(1))])
        .await
        .expect("put");
    assert!(client.get("kv", "b").await.expect("get").is_none());
    // Scraped while 300 more puts run: the count moves, and ends exact. The daemon's metrics
    // are on the next port.
    let writer = client.clone();
    let load = tokio::spawn(async move {
        for i in 0..300i64 {
            writer
                .put("kv", format!("k{i}").as_str(), vec![("n", Value::Int(i))])
                .await
                .expect("put");
        }
    });
    let mut seen = BTreeSet::new();
    while !load.is_finished() {
        let text = tokio::task::spawn_blocking(move || scrape(metrics + 1))
            .await
            .expect("scrape");
        if let Some(n) = text
            .lines()
            .find(|l| {
                l.starts_with(
                    r#"hyperdex_request_seconds_count{kind="put",code="HYPERDEX_CLIENT_SUCCESS"}"#,
                )
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
        {
            seen.insert(n);
        }
    }
    load.await.expect("load");
    assert!(
        seen.len() >= 2,
        "the count did not move during the load: {seen:?}"
    );
    let text = wait_for(
        metrics + 1,
        r#"hyperdex_request_seconds_count{kind="put",code="HYPERDEX_CLIENT_SUCCESS"} 301"#,
    );
    for want in [
        r#"hyperdex_request_seconds_count{kind="get",code="HYPERDEX_CLIENT_NOTFOUND"} 1"#,
        "hyperdex_lease_held 1",
        "hyperdex_pending_writes 0",
        "# TYPE hyperdex_store_sync_seconds histogram",
        "# TYPE hyperdex_connections gauge",
    ] {
        assert!(text.contains(want), "no {want}:\n{text}");
    }
    a_dropped_client_closes_its_connection(coord, metrics + 1, &text).await;
    let synced = text
        .lines()
        .find_map(|l| l.strip_prefix("hyperdex_store_sync_seconds_count "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .expect("a sync count");
    assert!(synced >= 1, "{synced}");
    assert_eq!(
        http(metrics, "GET /other HTTP/1.1\r\n\r\n").0,
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        http(metrics, "POST /metrics HTTP/1.1\r\n\r\n").0,
        "HTTP/1.1 400 Bad Request"
    );
    let _ = local.kill();
    let _ = local.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client that goes closes its connections: the count of open ones at the daemon whose
/// metrics are on `port` (`text`, scraped with one client connected) goes back.
async fn a_dropped_client_closes_its_connection(coord: u16, port: u16, text: &str) {
    let open = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("hyperdex_connections "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .expect("a count of connections")
    };
    let before = open(text);
    let other = Client::connect_with(&format!("127.0.0.1:{coord}"), Default::default())
        .await
        .expect("another client");
    other
        .put("kv", "z", vec![("n", Value::Int(0))])
        .await
        .expect("put");
    let during = tokio::task::spawn_blocking(move || scrape(port))
        .await
        .expect("scrape");
    assert_eq!(open(&during), before + 1, "{during}");
    drop(other);
    tokio::task::spawn_blocking(move || {
        wait_for(port, &format!("hyperdex_connections {before}\n"))
    })
    .await
    .expect("the dropped client's connection closes");
}
