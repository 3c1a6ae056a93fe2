//! The conversation between daemons: chain replication and state transfer.
//!
//! Every message carries the sender's configuration version; a receiver acts only on messages
//! of its own version (see `daemon::replica`). These messages are one-way (envelope id 0).

use hyperdex_model::{Object, Reply};
use serde::{Deserialize, Serialize};

use crate::config::RegionId;

/// A client's identity for exactly-once retries, drawn once per client from `rt`.
pub type ClientId = u64;

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

/// A message from one daemon to another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ChainMessage {
    Write(ChainWrite),
    Ack(ChainAck),
    TransferData(TransferData),
    TransferAck(TransferAck),
}

impl ChainMessage {
    /// The configuration version the sender had.
    pub fn config_version(&self) -> u64 {
        match self {
            ChainMessage::Write(w) => w.config_version,
            ChainMessage::Ack(a) => a.config_version,
            ChainMessage::TransferData(t) => t.config_version,
            ChainMessage::TransferAck(a) => a.config_version,
        }
    }

    /// The region the message is about.
    pub fn region(&self) -> RegionId {
        match self {
            ChainMessage::Write(w) => w.region,
            ChainMessage::Ack(a) => a.region,
            ChainMessage::TransferData(t) => t.region,
            ChainMessage::TransferAck(a) => a.region,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ChainMessage::Write(_) => "ChainWrite",
            ChainMessage::Ack(_) => "ChainAck",
            ChainMessage::TransferData(_) => "TransferData",
            ChainMessage::TransferAck(_) => "TransferAck",
        }
    }
}
