//! Replica behaviour as data-driven scripts: each file in `src/daemon/testscripts/` is one
//! scenario, a command per line; the harness runs it on a hand-wired network of replicas
//! (`testnet`) and prints every message hop, configuration and reply. The output is kept as
//! an insta snapshot (`snapshots/replica_script_<name>.snap`), so a change to the protocol
//! reads as a diff of what crosses the wire.
//!
//! Commands (`#` starts a comment):
//!
//! ```text
//! cluster N <space description>   N servers s1..sN and one space named s
//! put W KEY [ATTR=INT ...] [seq=N]  client request (waiter W) to the head of KEY's region
//! add W KEY ATTR=INT [seq=N]      atomic_add
//! get W KEY | del W KEY [seq=N]   read, delete
//! stale W KEY                     a get stamped with the previous configuration version
//! deliver [N]                     deliver the N oldest messages in flight (all by default)
//! drop [N]                        lose the N oldest messages in flight (1 by default)
//! fail sN                         the coordinator declares sN failed; the others install it
//! restart sN                      sN restarts on its disk and registers again (a joiner)
//! tick sN                         a tick: resend pending writes and transfer windows
//! advance MS                      move virtual time forward
//! store sN KEY                    what sN has stored for KEY
//! ```
//!
//! Sequence numbers count up per script unless `seq=N` is given (a retry reuses one). Every
//! request comes from client 7.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use hyperdex_model::value::decode;
use hyperdex_model::{NumOp, Object, Operation, Value};

use super::replica::{Input, Replica};
use super::testnet::{op, Net};
use crate::config::{Config, RegionId, ServerId};
use crate::coordinator::state::{Cluster, Command};
use crate::protocol::{ChainMessage, TransferEntry};
use crate::storage::MemStore;

/// One scenario being run.
struct Script {
    net: Net,
    cluster: Cluster,
    down: Vec<ServerId>,
    seq: u64,
    out: String,
}

fn key_text(kb: &[u8]) -> String {
    decode(kb).map_or_else(|_| format!("{kb:02x?}"), |v| v.to_string())
}

fn object_text(o: &Object) -> String {
    let fields: Vec<String> = o.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{{}}}", fields.join(", "))
}

fn server(s: &str) -> ServerId {
    ServerId(s.trim_start_matches('s').parse().expect("a server sN"))
}

/// A chain message as one line.
fn message_text(m: &ChainMessage) -> String {
    match m {
        ChainMessage::Write(w) => {
            let value = w
                .object
                .as_ref()
                .map_or_else(|| "deleted".to_string(), object_text);
            let by = w
                .dedupe
                .as_ref()
                .map(|d| format!(" (client {} seq {})", d.client, d.seq))
                .unwrap_or_default();
            format!(
                "ChainWrite r{} {} v{} {value}{by} @c{}",
                w.region.index,
                key_text(&w.key),
                w.version,
                w.config_version
            )
        }
        ChainMessage::Update(u) => {
            let value = u
                .object
                .as_ref()
                .map_or_else(|| "not here".to_string(), object_text);
            format!(
                "SubspaceUpdate r{} {} v{} {value} @c{}",
                u.region.index,
                key_text(&u.key),
                u.version,
                u.config_version
            )
        }
        ChainMessage::Updated(a) | ChainMessage::UpdateDone(a) => format!(
            "{} r{} {} v{} @c{}",
            m.name(),
            a.region.index,
            key_text(&a.key),
            a.version,
            a.config_version
        ),
        ChainMessage::SettleQuery(q) => format!(
            "SettleQuery r{} for r{}: {} key(s) @c{}",
            q.region.index,
            q.subspace.index,
            q.keys.len(),
            q.config_version
        ),
        ChainMessage::SettleAnswer(a) => format!(
            "SettleAnswer r{} for r{}: {} key(s) @c{}",
            a.region.index,
            a.subspace.index,
            a.versions.len(),
            a.config_version
        ),
        ChainMessage::Ack(a) => format!(
            "ChainAck r{} {} v{} @c{}",
            a.region.index,
            key_text(&a.key),
            a.version,
            a.config_version
        ),
        ChainMessage::TransferData(t) => {
            let keys: Vec<String> = t
                .entries
                .iter()
                .map(|(k, e)| match e {
                    TransferEntry::Object(_) => key_text(k),
                    TransferEntry::Unchanged(_) => format!("={}", key_text(k)),
                })
                .collect();
            format!(
                "TransferData r{} after {} [{}] through {} @c{}",
                t.region.index,
                t.after.as_deref().map_or("the start".into(), key_text),
                keys.join(" "),
                t.through.as_deref().map_or("the end".into(), key_text),
                t.config_version
            )
        }
        ChainMessage::TransferQuery(q) => {
            format!("TransferQuery r{} @c{}", q.region.index, q.config_version)
        }
        ChainMessage::TransferAck(a) => {
            let held: Vec<String> = a.held.iter().map(|(k, _)| key_text(k)).collect();
            format!(
                "TransferAck r{} upto {}{} held [{}]{} @c{}",
                a.region.index,
                a.upto.as_deref().map_or("nothing".into(), key_text),
                if a.done { " done" } else { "" },
                held.join(" "),
                if a.held_all { "" } else { "..." },
                a.config_version
            )
        }
    }
}

impl Script {
    fn new(servers: usize, space: &str) -> Script {
        let (net, _) = Net::with_window(servers, space, 2);
        let mut cluster = Cluster::new(1);
        for i in 0..servers {
            cluster
                .apply(&Command::Register {
                    id: None,
                    addr: format!("s{i}"),
                })
                .expect("register");
        }
        cluster
            .apply(&Command::add_space(space).expect("a valid space"))
            .expect("space");
        let mut s = Script {
            net,
            cluster,
            down: Vec::new(),
            seq: 0,
            out: String::new(),
        };
        s.print_config();
        s
    }

    fn config(&self) -> &Config {
        &self.cluster.config
    }

    fn print_config(&mut self) {
        let c = self.cluster.config.clone();
        let _ = writeln!(self.out, "  config v{}", c.version);
        for space in c.spaces.values() {
            for (i, chain) in space.chains.iter().enumerate() {
                let members: Vec<String> = chain.iter().map(|m| format!("s{m}")).collect();
                let joining = space.joining[i]
                    .map(|j| format!(" (s{} joining)", j.server))
                    .unwrap_or_default();
                let _ = writeln!(self.out, "    r{i}: {}{joining}", members.join(" -> "));
            }
        }
    }

    /// Installs the coordinator's configuration on every server that is up.
    fn publish(&mut self) {
        self.print_config();
        let config = self.cluster.config.clone();
        let up: Vec<ServerId> = self
            .net
            .replicas
            .keys()
            .copied()
            .filter(|s| !self.down.contains(s))
            .collect();
        let before = self.net.in_flight.len();
        for s in up {
            self.net.install(s, &config);
        }
        self.flush(Some(before));
    }

    /// Prints what the last inputs produced (replies and messages put in flight since
    /// `from`), and transfer reports.
    fn flush(&mut self, from: Option<usize>) {
        for (w, r) in std::mem::take(&mut self.net.replies) {
            let _ = writeln!(self.out, "  client <- {r:?} (waiter {w})");
        }
        for (w, r) in std::mem::take(&mut self.net.objects) {
            let _ = writeln!(self.out, "  client <- {r:?} (waiter {w})");
        }
        let start = from.unwrap_or(self.net.in_flight.len());
        for (_, to, m) in &self.net.in_flight[start.min(self.net.in_flight.len())..] {
            let _ = writeln!(self.out, "  queued for s{to}: {}", message_text(m));
        }
        for (who, region) in std::mem::take(&mut self.net.transfers_done) {
            let _ = writeln!(self.out, "  s{who} has all of r{}", region.index);
            self.report_done(who, region);
        }
    }

    /// A joiner's report reaches the coordinator, which makes it a full member.
    fn report_done(&mut self, who: ServerId, region: RegionId) {
        let Some(j) = self.cluster.config.joiner(region) else {
            return;
        };
        let cmd = Command::TransferComplete {
            server: who,
            region,
            since: j.since,
        };
        if self.cluster.apply(&cmd).is_ok() {
            self.publish();
        }
    }

    fn request(&mut self, waiter: u32, op_: Operation, words: &[&str]) {
        let seq = words
            .iter()
            .find_map(|w| w.strip_prefix("seq="))
            .map(|n| n.parse().expect("seq=N"))
            .unwrap_or_else(|| {
                self.seq += 1;
                self.seq
            });
        let key = op_.key().cloned().expect("a key");
        let region = self
            .config()
            .space("s")
            .and_then(|s| s.region_of(&key))
            .expect("a region");
        let head = self.config().chain(region)[0];
        let _ = writeln!(
            self.out,
            "  s{head} <- client 7 seq {seq} (waiter {waiter})"
        );
        let input = op(self.config(), waiter, seq, op_);
        self.step(head, input);
    }

    fn step(&mut self, to: ServerId, input: Input<u32>) {
        let before = self.net.in_flight.len();
        self.net.input(to, input);
        self.flush(Some(before));
    }

    fn deliver(&mut self, n: usize) {
        for _ in 0..n {
            if self.net.in_flight.is_empty() {
                break;
            }
            let (from, to, msg) = self.net.in_flight.remove(0);
            if self.down.contains(&to) {
                let _ = writeln!(self.out, "  lost (s{to} is down): {}", message_text(&msg));
                continue;
            }
            let _ = writeln!(self.out, "  s{to} receives {}", message_text(&msg));
            self.step(to, Input::Chain { from, msg });
        }
    }

    fn fail(&mut self, s: ServerId) {
        self.down.push(s);
        self.cluster.apply(&Command::ServerFailed(s)).expect("fail");
        self.publish();
    }

    fn restart(&mut self, s: ServerId) {
        self.down.retain(|d| *d != s);
        let (r, store): &mut (Replica<u32>, MemStore) =
            self.net.replicas.get_mut(&s).expect("a server");
        store.crash();
        *r = Replica::new(s, Config::default()).with_transfers(2, 0);
        self.cluster
            .apply(&Command::Register {
                id: Some(s),
                addr: format!("s{}", s.0 - 1),
            })
            .expect("register");
        self.publish();
    }

    fn store(&mut self, s: ServerId, key: &str) {
        let space = self.config().space("s").expect("space s").clone();
        let kb = crate::config::key_bytes(&space.schema, &Value::string(key)).expect("key");
        let region = space.region_of_bytes(&kb);
        let stored = super::record::load(&self.net.replicas[&s].1, region, &kb).expect("load");
        let value = stored
            .object
            .as_ref()
            .map_or_else(|| "nothing".to_string(), object_text);
        let records: Vec<String> = stored
            .dedupe
            .iter()
            .map(|d| format!("{}/{}", d.client, d.seq))
            .collect();
        let _ = writeln!(
            self.out,
            "  s{} has {key} v{} {value} records [{}]",
            s.0,
            stored.version,
            records.join(" ")
        );
    }

    fn run(&mut self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let arg = |i: usize| {
            *words
                .get(i)
                .unwrap_or_else(|| panic!("{line}: argument {i}"))
        };
        let waiter = || arg(1).parse::<u32>().expect("a waiter number");
        let attrs = |from: usize| -> Vec<(&str, Value)> {
            words[from..]
                .iter()
                .filter(|w| !w.starts_with("seq="))
                .filter_map(|w| w.split_once('='))
                .map(|(a, v)| {
                    (
                        a,
                        v.parse::<i64>()
                            .map_or_else(|_| Value::string(v), Value::Int),
                    )
                })
                .collect()
        };
        match arg(0) {
            "put" => self.request(waiter(), Operation::put("s", arg(2), attrs(3)), &words),
            "add" => {
                let op_ = Operation::atomic(NumOp::Add, "s", arg(2), attrs(3));
                self.request(waiter(), op_, &words)
            }
            "get" => self.request(waiter(), Operation::get("s", arg(2)), &words),
            "del" => self.request(waiter(), Operation::del("s", arg(2)), &words),
            "stale" => {
                let mut input = op(self.config(), waiter(), 0, Operation::get("s", arg(2)));
                if let Input::Op { req, .. } = &mut input {
                    req.config_version -= 1;
                }
                let key = Value::string(arg(2));
                let region = self.config().space("s").and_then(|s| s.region_of(&key));
                let head = self.config().chain(region.expect("region"))[0];
                self.step(head, input);
            }
            "deliver" => self.deliver(words.get(1).map_or(usize::MAX, |n| n.parse().expect("N"))),
            "drop" => {
                for _ in 0..words.get(1).map_or(1, |n| n.parse().expect("N")) {
                    if !self.net.in_flight.is_empty() {
                        let (_, to, m) = self.net.in_flight.remove(0);
                        let _ =
                            writeln!(self.out, "  lost on the way to s{to}: {}", message_text(&m));
                    }
                }
            }
            "fail" => self.fail(server(arg(1))),
            "restart" => self.restart(server(arg(1))),
            "tick" => self.step(server(arg(1)), Input::Tick),
            "advance" => self
                .net
                .advance(Duration::from_millis(arg(1).parse().expect("milliseconds"))),
            "store" => self.store(server(arg(1)), arg(2)),
            other => panic!("unknown command {other:?} in {line:?}"),
        }
    }
}

/// Runs one script and returns its transcript.
fn run_script(text: &str) -> String {
    let mut script: Option<Script> = None;
    let mut out = String::new();
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if raw.trim_start().starts_with('#') {
            let _ = writeln!(out, "{}", raw.trim());
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let _ = writeln!(out, "> {line}");
        if let Some(rest) = line.strip_prefix("cluster ") {
            let (n, space) = rest.split_once(' ').expect("cluster N SPACE");
            let s = Script::new(n.parse().expect("N"), space);
            out.push_str(&s.out);
            script = Some(Script {
                out: String::new(),
                ..s
            });
            continue;
        }
        let s = script.as_mut().expect("a cluster first");
        s.run(line);
        out.push_str(&std::mem::take(&mut s.out));
    }
    out
}

#[test]
fn replica_scripts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/daemon/testscripts");
    let mut scripts: BTreeMap<String, String> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("testscripts") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "txt") {
            let name = path
                .file_stem()
                .expect("name")
                .to_string_lossy()
                .to_string();
            scripts.insert(name, std::fs::read_to_string(&path).expect("script"));
        }
    }
    assert!(scripts.len() >= 5, "the scenarios are missing: {scripts:?}");
    for (name, text) in scripts {
        let transcript = run_script(&text);
        insta::with_settings!({snapshot_path => "../../snapshots", prepend_module_to_snapshot => false, description => name.clone()}, {
            insta::assert_snapshot!(format!("replica_script_{name}"), transcript);
        });
    }
}
