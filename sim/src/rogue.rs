//! The rogue node: a process on the network that does not know the cluster secret and sends
//! every server what a hostile or broken peer would, for as long as the workload runs.
//!
//! Each step (every 20–200 ms of virtual time) it picks a server and one of:
//! - garbage bytes after a correct handshake, a wrong handshake, a frame cut short;
//! - a frame whose value nests far deeper than the decoder allows;
//! - a well-formed chain message (a write deleting a key at a low version, an ack, a transfer
//!   window) from a connection that did not introduce itself, or introduced itself as a
//!   daemon without the secret;
//! - a well-formed Register, Heartbeat, TransferComplete or admin command to the coordinator
//!   from such a connection.
//!
//! None of it may change the checked history, a replica or the configuration, or crash a
//! node: the run's checks say so. [`RogueLog`] counts what was sent.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyperdex::client::fetch_config;
use hyperdex::config::{Config, RegionId, ServerId};
use hyperdex::net::{Credentials, RpcConn};
use hyperdex::protocol::auth::{Role, Secret};
use hyperdex::protocol::frame::{encode_frame, hello};
use hyperdex::protocol::{
    AdminCommand, ChainAck, ChainMessage, ChainWrite, ClientRequest, CoordRequest, Envelope,
    Message, OpRequest, TransferData, TransferEntry, DEFAULT_MAX_FRAME,
};
use hyperdex::rt;
use hyperdex_model::{Operation, Value};
use madsim::rand::{thread_rng, Rng};
use tokio::io::AsyncWriteExt;

use crate::cluster::{COORDINATOR, COORDINATORS};

/// What the rogue sent, by kind.
#[derive(Clone, Debug, Default)]
pub struct RogueLog {
    pub sent: BTreeMap<&'static str, u64>,
}

const TIMEOUT: Duration = Duration::from_millis(300);

/// Sends to `targets` (every server's address) until `stop` is set.
pub async fn run(targets: Vec<String>, stop: Arc<AtomicBool>) -> RogueLog {
    let mut log = RogueLog::default();
    let mut config = Config::default();
    while !stop.load(Ordering::SeqCst) {
        rt::sleep(Duration::from_millis(thread_rng().gen_range(20..200))).await;
        if let Ok(c) = fetch_config(COORDINATOR, &Default::default()).await {
            config = c;
        }
        let to = targets[thread_rng().gen_range(0..targets.len())].clone();
        let what = match thread_rng().gen_range(0..6) {
            0 => raw(&to, garbage()).await,
            1 => raw(&to, nested_frame()).await,
            2 => raw(&to, truncated_frame()).await,
            3 => forged_chain(&to, &config, false).await,
            4 => forged_chain(&to, &config, true).await,
            _ => forged_coordinator(&config).await,
        };
        *log.sent.entry(what).or_default() += 1;
    }
    log
}

/// Connects and writes `bytes` as they are (after a correct handshake unless they replace
/// it), then hangs up.
async fn raw(to: &str, (what, handshake, bytes): (&'static str, bool, Vec<u8>)) -> &'static str {
    if let Ok(mut s) = rt::connect(to, TIMEOUT).await {
        let mut out = if handshake {
            hello().to_vec()
        } else {
            Vec::new()
        };
        out.extend(bytes);
        let _ = rt::timeout(TIMEOUT, s.write_all(&out)).await;
        let _ = rt::timeout(TIMEOUT, s.flush()).await;
        rt::sleep(Duration::from_millis(5)).await;
    }
    what
}

fn garbage() -> (&'static str, bool, Vec<u8>) {
    let n = thread_rng().gen_range(1..200);
    let bytes: Vec<u8> = (0..n).map(|_| thread_rng().gen()).collect();
    let handshake = thread_rng().gen_bool(0.7);
    (
        if handshake {
            "garbage"
        } else {
            "bad handshake"
        },
        handshake,
        bytes,
    )
}

fn frame_of(msg: Message) -> Vec<u8> {
    encode_frame(&Envelope { id: 1, msg }, DEFAULT_MAX_FRAME).unwrap_or_default()
}

fn nested_frame() -> (&'static str, bool, Vec<u8>) {
    let op = Operation::get("sim", Value::List(vec![]));
    let frame = frame_of(Message::ToDaemon(ClientRequest::Op(OpRequest {
        config_version: 1,
        client: 1,
        seq: 1,
        low_seq: 1,
        op,
        auth: Vec::new(),
        first_unix: 1_700_000_000,
    })));
    let depth = thread_rng().gen_range(9..50_000);
    // The key (an empty list, [5, 0]) then the empty list of macaroons ([0]) end it.
    let mut payload = frame[4..frame.len() - 3].to_vec();
    payload.extend([5u8, 1].repeat(depth));
    payload.extend([5, 0, 0]);
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend(payload);
    ("nested frame", true, out)
}

fn truncated_frame() -> (&'static str, bool, Vec<u8>) {
    let mut f = frame_of(Message::ToCoordinator(CoordRequest::GetConfig));
    let cut = thread_rng().gen_range(1..f.len());
    f.truncate(cut);
    ("truncated frame", true, f)
}

/// A well-formed chain message for a real region of the current configuration, from a
/// connection that is anonymous or claims (without the secret) to be one of the daemons.
async fn forged_chain(to: &str, config: &Config, claim: bool) -> &'static str {
    let Some(space) = config.spaces.values().next() else {
        return "nothing to forge yet";
    };
    let region = RegionId {
        space: space.id,
        index: thread_rng().gen_range(0..space.chains.len().max(1)) as u32,
    };
    let key = hyperdex::config::key_bytes(
        &space.schema,
        &Value::string(format!("c{}", thread_rng().gen_range(0..48))),
    )
    .unwrap_or_default();
    let msg = match thread_rng().gen_range(0..3) {
        0 => ChainMessage::Write(ChainWrite {
            config_version: config.version,
            region,
            key,
            // Low versions: members take only the next version of an object, and cold keys
            // are written seldom.
            version: thread_rng().gen_range(1..4),
            object: None,
            dedupe: None,
        }),
        1 => ChainMessage::Ack(ChainAck {
            config_version: config.version,
            region,
            key,
            version: thread_rng().gen_range(1..100),
        }),
        _ => ChainMessage::TransferData(TransferData {
            config_version: config.version,
            region,
            after: None,
            entries: vec![(key, TransferEntry::Object(vec![0; 8]))],
            through: None,
            held: Vec::new(),
        }),
    };
    let conn = if claim {
        let who = Credentials {
            role: Role::Server,
            server: Some(ServerId(thread_rng().gen_range(1..5))),
            secret: Secret::new(b"a guess at the cluster's secret").ok(),
            tls: None,
        };
        RpcConn::connect_as(to, DEFAULT_MAX_FRAME, TIMEOUT, &who).await
    } else {
        RpcConn::connect(to, DEFAULT_MAX_FRAME, TIMEOUT).await
    };
    if let Ok(c) = conn {
        let _ = c.send(Message::Chain(msg)).await;
        rt::sleep(Duration::from_millis(5)).await;
    }
    if claim {
        "chain message claiming to be a daemon"
    } else {
        "anonymous chain message"
    }
}

/// A raft vote request for term 1,000,000 from a made-up coordinator, to a real one.
fn forged_vote(config: &Config) -> Vec<u8> {
    use raft::eraftpb::{Message as RaftMessage, MessageType};
    let mut m = RaftMessage::default();
    m.set_msg_type(MessageType::MsgRequestVote);
    m.term = 1_000_000;
    m.from = thread_rng().gen();
    let ids: Vec<u64> = config.coordinators.keys().copied().collect();
    m.to = ids
        .get(thread_rng().gen_range(0..ids.len().max(1)))
        .copied()
        .unwrap_or(1);
    protobuf::Message::write_to_bytes(&m).unwrap_or_default()
}

/// A request that would change the configuration, from an anonymous connection.
async fn forged_coordinator(config: &Config) -> &'static str {
    let id = ServerId(thread_rng().gen_range(1..5));
    let req = match thread_rng().gen_range(0..9) {
        0 => CoordRequest::Register {
            id: Some(id),
            addr: "10.0.4.1:2012".into(),
        },
        1 => CoordRequest::Heartbeat {
            id,
            config_version: 1,
            joining: Vec::new(),
        },
        2 => CoordRequest::Admin(AdminCommand::ServerKill(id)),
        3 => CoordRequest::Admin(AdminCommand::RmSpace("sim".into())),
        4 => CoordRequest::TransferComplete {
            id,
            region: RegionId {
                space: hyperdex::config::SpaceId(1),
                index: 0,
            },
            since: 1,
        },
        5 => CoordRequest::Admin(AdminCommand::FaultTolerance {
            space: "sim".into(),
            tolerate: 0,
        }),
        // A log message claiming a huge term (it would depose the leader if taken), or
        // garbage.
        6 => CoordRequest::Raft(forged_vote(config)),
        7 => CoordRequest::Raft((0..64).map(|_| thread_rng().gen()).collect()),
        _ => CoordRequest::JoinCoordinator {
            id: thread_rng().gen(),
            addr: "10.0.4.1:1982".into(),
        },
    };
    let at = COORDINATORS[thread_rng().gen_range(0..COORDINATORS.len())];
    if let Ok(c) = RpcConn::connect(at, DEFAULT_MAX_FRAME, TIMEOUT).await {
        let _ = c.call(Message::ToCoordinator(req), TIMEOUT).await;
    }
    "forged coordinator request"
}
