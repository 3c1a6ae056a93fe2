//! What travels between processes: typed messages, serialized with postcard, in
//! length-prefixed frames behind a version handshake.
//!
//! A connection starts with each side sending eight bytes, [`MAGIC`] then [`VERSION`]
//! (big-endian u32); a side that reads anything else closes the connection. After that, each
//! frame is a 4-byte big-endian length and that many bytes of a postcard-encoded [`Envelope`].
//! Frames longer than the receiver's cap (default [`DEFAULT_MAX_FRAME`], 16 MiB) are refused
//! and the connection is closed; decoding never panics, whatever the bytes (see the property
//! tests in `frame`).
//!
//! Requests and replies are matched by the envelope's `id`, which the requester chooses;
//! chain messages between daemons are one-way and use id 0.

pub mod frame;

use hyperdex_model::{Check, Object, Operation, Reply, ReturnCode};
use serde::{Deserialize, Serialize};

use crate::config::{Config, RegionId, ServerId};

/// The first four bytes of every connection.
pub const MAGIC: [u8; 4] = *b"HDRS";
/// The protocol version; a peer speaking another version is refused.
pub const VERSION: u32 = 1;
/// Default cap on one frame's length.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// A client's identity for exactly-once retries, drawn once per client from `rt`.
pub type ClientId = u64;

/// One message with the id that matches a reply to its request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: u64,
    pub msg: Message,
}

/// Remembered with an object so that a retried request is answered, not applied again.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dedupe {
    pub client: ClientId,
    pub seq: u64,
    /// Every request of this client below this sequence number has been answered, so its
    /// records can go.
    pub low_seq: u64,
    pub reply: Reply,
}

/// A new version of one object travelling down its region's chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChainWrite {
    pub config_version: u64,
    pub region: RegionId,
    /// The canonical key bytes.
    pub key: Vec<u8>,
    /// Per-key version assigned by the head; versions of a key increase by one per write.
    pub version: u64,
    /// The whole new object, or `None` for a delete.
    pub object: Option<Object>,
    pub dedupe: Option<Dedupe>,
}

/// "Every server after me has durably stored versions up to `version` of `key`."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainAck {
    pub config_version: u64,
    pub region: RegionId,
    pub key: Vec<u8>,
    pub version: u64,
}

/// A window of a region's objects, streamed from a chain member to the server joining it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransferData {
    pub config_version: u64,
    pub region: RegionId,
    /// Entries are the region's objects with keys after this one (all, when `None`).
    pub after: Option<Vec<u8>>,
    /// (key bytes, encoded stored object), in key order.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// The region has no objects after these.
    pub last: bool,
}

/// The joiner has stored everything up to `upto`; `done` once the last window is in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferAck {
    pub config_version: u64,
    pub region: RegionId,
    pub upto: Option<Vec<u8>>,
    pub done: bool,
}

/// Administrative requests to the coordinator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AdminCommand {
    /// A space description, parsed by the coordinator.
    AddSpace(String),
    RmSpace(String),
    ListSpaces,
    /// Succeeds once no region is short of replicas that could be filled.
    WaitUntilStable,
    ServerKill(ServerId),
    ServerForget(ServerId),
    /// Change how many failures a space tolerates.
    FaultTolerance {
        space: String,
        tolerate: u32,
    },
}

/// What an admin request returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AdminOutput {
    Done,
    Spaces(Vec<String>),
    /// Not stable yet: the caller should ask again.
    NotStable(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    // Requests to the coordinator.
    /// Fetch the current configuration.
    GetConfig,
    /// A daemon announces itself; `id` is `Some` when it restarts on an existing data
    /// directory.
    Register {
        id: Option<ServerId>,
        addr: String,
    },
    /// A daemon is alive and has configuration `config_version`.
    Heartbeat {
        id: ServerId,
        config_version: u64,
    },
    Admin(AdminCommand),
    /// A daemon has received every object of a region it is joining.
    TransferComplete {
        id: ServerId,
        region: RegionId,
        /// The join this completes (`Joiner::since`): a late report of an earlier join of
        /// the same region must not complete a newer one.
        since: u64,
    },

    // Replies from the coordinator.
    Config(Config),
    Registered {
        id: ServerId,
        config: Config,
    },
    /// The newer configuration, if the daemon is behind.
    HeartbeatReply {
        config: Option<Config>,
    },
    AdminReply(Result<AdminOutput, (ReturnCode, String)>),

    // Client requests to daemons.
    /// A single-key operation, sent to the head of the key's region.
    Op {
        config_version: u64,
        client: ClientId,
        seq: u64,
        /// The client's lowest sequence number still waiting for an answer.
        low_seq: u64,
        op: Operation,
    },
    /// Search the regions of `space` that the receiver heads.
    Search {
        config_version: u64,
        space: String,
        regions: Vec<RegionId>,
        checks: Vec<Check>,
    },

    // Daemon replies to clients.
    Reply(Reply),
    /// Search results: matching objects with their keys.
    Objects(Vec<Object>),

    // Between daemons (one-way).
    ChainWrite(ChainWrite),
    ChainAck(ChainAck),
    TransferData(TransferData),
    TransferAck(TransferAck),

    /// The request could not be handled at all (undecodable, wrong kind, ...).
    Error {
        code: ReturnCode,
        message: String,
    },
}

impl Message {
    /// A short name for the message's kind, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Message::GetConfig => "GetConfig",
            Message::Register { .. } => "Register",
            Message::Heartbeat { .. } => "Heartbeat",
            Message::Admin(_) => "Admin",
            Message::Config(_) => "Config",
            Message::Registered { .. } => "Registered",
            Message::HeartbeatReply { .. } => "HeartbeatReply",
            Message::AdminReply(_) => "AdminReply",
            Message::Op { .. } => "Op",
            Message::Search { .. } => "Search",
            Message::Reply(_) => "Reply",
            Message::Objects(_) => "Objects",
            Message::ChainWrite(_) => "ChainWrite",
            Message::ChainAck(_) => "ChainAck",
            Message::TransferData(_) => "TransferData",
            Message::TransferAck(_) => "TransferAck",
            Message::TransferComplete { .. } => "TransferComplete",
            Message::Error { .. } => "Error",
        }
    }
}
