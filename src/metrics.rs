//! Metrics in Prometheus's text format, served on `GET /metrics` by `--metrics-listen`.
//!
//! Each server (a coordinator, a daemon) has its own [`Metrics`]: a registry of counters,
//! gauges and histograms whose names start with `hyperdex_`. Recording is a few atomic
//! operations; the async code records (the actor after each batch, the listener per
//! connection), the state machines never do. [`serve`] answers scrapes on a listener of its
//! own, so a slow scraper never delays a request (a scrape is one request line and headers,
//! at most 8 KiB, read within 5 s).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use hyperdex_model::{Existence, Func, Operation};

use crate::rt;

/// A request's kind (`put`, `get`, `search`...) and the code it was answered with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub kind: &'static str,
    pub code: &'static str,
}

/// A server state (`AVAILABLE`, `FAILED`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

fn seconds() -> Histogram {
    // 25 µs to about 6.5 s.
    Histogram::new(exponential_buckets(25e-6, 2.0, 19))
}

/// Every metric a server keeps.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by kind and return code, with the time from receipt to answer.
    pub requests: Family<RequestLabels, Histogram>,
    /// The histograms of `requests` found so far, by their labels: a request's kind and code
    /// are each one of a few names, so a short list finds one without hashing the labels.
    request_handles: RwLock<Vec<(RequestLabels, Histogram)>>,
    /// Time of each store sync (one per batch: the group commit).
    pub sync_seconds: Histogram,
    /// Inputs per actor batch (writes sharing one sync).
    pub batch_inputs: Histogram,
    /// Events waiting for the actor.
    pub queue_depth: Gauge,
    /// Writes in flight through this daemon (sent down a chain, not yet acknowledged).
    pub pending_writes: Gauge,
    /// The configuration version in force here.
    pub config_version: Gauge,
    /// 1 while this daemon holds a lease on its configuration.
    pub lease_held: Gauge,
    /// Regions this daemon is being filled with, and how far (objects and bytes received).
    pub joining_regions: Gauge,
    pub transfer_objects: Gauge,
    pub transfer_bytes: Gauge,
    /// Open connections accepted by this server.
    pub connections: Gauge,
    /// Coordinator: servers by state, and heartbeats received.
    pub servers: Family<StateLabels, Gauge>,
    pub heartbeats: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("hyperdex");
        let requests =
            Family::<RequestLabels, Histogram>::new_with_constructor(seconds as fn() -> Histogram);
        registry.register(
            "request_seconds",
            "Requests answered, by kind and return code: time from receipt to answer",
            requests.clone(),
        );
        let sync_seconds = seconds();
        registry.register(
            "store_sync_seconds",
            "Time of each store sync (one per batch of inputs)",
            sync_seconds.clone(),
        );
        let batch_inputs = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "actor_batch_inputs",
            "Inputs handled per batch, sharing one sync",
            batch_inputs.clone(),
        );
        let mut gauge = |name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let queue_depth = gauge("actor_queue_depth", "Events waiting for the actor");
        let pending_writes = gauge(
            "pending_writes",
            "Writes in flight through this daemon, not yet acknowledged down the chain",
        );
        let config_version = gauge("config_version", "Configuration version in force");
        let lease_held = gauge(
            "lease_held",
            "1 while the daemon holds a lease on its configuration",
        );
        let joining_regions = gauge(
            "joining_regions",
            "Regions this daemon is being filled with",
        );
        let transfer_objects = gauge(
            "transfer_objects",
            "Objects compared or received in the joins in progress",
        );
        let transfer_bytes = gauge(
            "transfer_bytes",
            "Bytes received whole in the joins in progress",
        );
        let connections = gauge("connections", "Open connections accepted by this server");
        let servers = Family::<StateLabels, Gauge>::default();
        registry.register("servers", "Servers by state (coordinator)", servers.clone());
        let heartbeats = Counter::default();
        registry.register(
            "heartbeats",
            "Heartbeats received (coordinator)",
            heartbeats.clone(),
        );
        Arc::new(Metrics {
            registry,
            requests,
            sync_seconds,
            batch_inputs,
            request_handles: RwLock::default(),
            queue_depth,
            pending_writes,
            config_version,
            lease_held,
            joining_regions,
            transfer_objects,
            transfer_bytes,
            connections,
            servers,
            heartbeats,
        })
    }

    /// Records a request answered after `seconds`.
    pub fn request(&self, kind: &'static str, code: &'static str, seconds: f64) {
        // The names are static: the same name is nearly always the same pointer.
        let same = |a: &str, b: &str| std::ptr::eq(a, b) || a == b;
        let found = |handles: &[(RequestLabels, Histogram)]| {
            handles
                .iter()
                .find(|(l, _)| std::ptr::eq(l.kind, kind) && std::ptr::eq(l.code, code))
                .or_else(|| {
                    handles
                        .iter()
                        .find(|(l, _)| same(l.kind, kind) && same(l.code, code))
                })
                .map(|(_, h)| h.observe(seconds))
                .is_some()
        };
        if self.request_handles.read().is_ok_and(|h| found(&h)) {
            return;
        }
        let labels = RequestLabels { kind, code };
        let histogram = self.requests.get_or_create(&labels).clone();
        histogram.observe(seconds);
        if let Ok(mut handles) = self.request_handles.write() {
            if !handles.iter().any(|(l, _)| *l == labels) {
                handles.push((labels, histogram));
            }
        }
    }

    /// Every metric in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The kind a request is counted under: the HyperDex call it most likely came from.
pub fn kind(op: &Operation) -> &'static str {
    match op {
        Operation::Get { .. } => "get",
        Operation::GetPartial { .. } => "get_partial",
        Operation::Write { write, .. } if write.erase && write.checks.is_empty() => "del",
        Operation::Write { write, .. } if write.erase => "cond_del",
        Operation::Write { write, .. } if !write.checks.is_empty() => "cond_write",
        Operation::Write { write, .. } if write.existence == Existence::MustNotExist => {
            "put_if_not_exist"
        }
        Operation::Write { write, .. }
            if write.funcs.iter().all(|f| matches!(f.func, Func::Set(_))) =>
        {
            "put"
        }
        Operation::Write { .. } => "atomic",
        Operation::Search { .. } => "search",
        Operation::SortedSearch { .. } => "sorted_search",
        Operation::Count { .. } => "count",
        Operation::GroupWrite { .. } => "group_write",
        Operation::GroupDel { .. } => "group_del",
        _ => "other",
    }
}

/// The most a scrape request may be; its headers are read and ignored.
const MAX_REQUEST: usize = 8 << 10;

/// Answers `GET /metrics` on `listener` (404 for another path, 400 for anything but a GET),
/// each connection on a task of its own, until the process ends.
pub async fn serve(listener: rt::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            rt::sleep(Duration::from_millis(100)).await;
            continue;
        };
        rt::spawn(answer(stream, metrics.clone()));
    }
}

async fn answer(mut stream: rt::TcpStream, metrics: Arc<Metrics>) {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    if rt::timeout(Duration::from_secs(5), read).await.is_none() {
        return;
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let words: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let (status, body) = match words[..] {
        [b"GET", b"/metrics", ..] => ("200 OK", metrics.render()),
        [b"GET", ..] => ("404 Not Found", "not found: try /metrics\n".to_string()),
        _ => ("400 Bad Request", "only GET /metrics\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_starts_with_hyperdex_and_requests_are_counted_by_kind_and_code() {
        let m = Metrics::new();
        m.request("put", "SUCCESS", 0.001);
        m.request("put", "SUCCESS", 0.002);
        m.request("get", "NOTFOUND", 0.0001);
        // Labels that share a kind or a code with one already seen are counted apart.
        m.request("put", "NOTFOUND", 0.0001);
        m.request("get", "SUCCESS", 0.0001);
        m.request("get", "SUCCESS", 0.0001);
        m.request("get", "SUCCESS", 0.0001);
        // Names of the same content at another address are the same labels.
        let put: &'static str = Box::leak(String::from("put").into_boxed_str());
        m.request(put, "SUCCESS", 0.003);
        m.config_version.set(7);
        m.servers
            .get_or_create(&StateLabels {
                state: "AVAILABLE".into(),
            })
            .set(3);
        let text = m.render();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert!(line.starts_with("hyperdex_"), "{line}");
        }
        assert!(
            text.contains(r#"hyperdex_request_seconds_count{kind="put",code="SUCCESS"} 3"#),
            "{text}"
        );
        assert!(text.contains(r#"hyperdex_request_seconds_count{kind="get",code="NOTFOUND"} 1"#));
        assert!(text.contains(r#"hyperdex_request_seconds_count{kind="put",code="NOTFOUND"} 1"#));
        assert!(text.contains(r#"hyperdex_request_seconds_count{kind="get",code="SUCCESS"} 3"#));
        assert!(text.contains("hyperdex_config_version 7"));
        assert!(text.contains(r#"hyperdex_servers{state="AVAILABLE"} 3"#));
    }
}
