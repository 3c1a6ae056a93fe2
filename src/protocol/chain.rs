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
    /// When the head ordered the write (seconds since the Unix epoch, its clock); records are
    /// dropped `record::RECORD_HORIZON` after the newest record of their object.
    pub unix: u64,
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

/// A short fingerprint of an object's stored bytes (the first 16 bytes of their SHA-256): a
/// joiner's copy with the same digest as the source's is the same object, records included.
pub type Digest = [u8; 16];

/// One object of a transfer window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferEntry {
    /// The encoded stored object.
    Object(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The joiner said it holds a copy with this digest, and the source's copy has it too.
    Unchanged(Digest),
}

/// A window of a region's objects, streamed from a chain member to the server joining it:
/// every object the source holds with a key in `(after, through]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransferData {
    pub config_version: u64,
    pub region: RegionId,
    /// The window starts after this key (at the region's start when `None`).
    pub after: Option<Vec<u8>>,
    /// (key bytes, object), in key order.
    pub entries: Vec<(Vec<u8>, TransferEntry)>,
    /// The window ends with this key; `None`: at the region's end (the last window).
    pub through: Option<Vec<u8>>,
    /// Writes of keys in the window that the source stores but still holds pending until the
    /// regions of the space's other subspaces hold them (committed by a restarted member
    /// before those regions had them): the joiner, the region's new tail, holds them too.
    pub held: Vec<ChainWrite>,
}

/// The source of a transfer asks the joiner where it is and what it holds (before its
/// first window, so that objects the joiner already holds cross as digests from the start).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferQuery {
    pub config_version: u64,
    pub region: RegionId,
}

/// The joiner holds the region up to `upto`; `done` once the last window is in. The answer
/// to a window and to a [`TransferQuery`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferAck {
    pub config_version: u64,
    pub region: RegionId,
    pub upto: Option<Vec<u8>>,
    pub done: bool,
    /// What the joiner holds after `upto` (from an earlier life, or written during the
    /// transfer): its next objects' keys and digests, in key order, so that the source sends
    /// only what differs.
    pub held: Vec<(Vec<u8>, Digest)>,
    /// `held` lists everything the joiner holds after `upto`.
    pub held_all: bool,
}

/// A message from one daemon to another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ChainMessage {
    Write(ChainWrite),
    Ack(ChainAck),
    TransferData(TransferData),
    TransferAck(TransferAck),
    TransferQuery(TransferQuery),
    /// Down a subspace region's chain, from the key region's tail.
    Update(SubspaceUpdate),
    /// Up a subspace region's chain.
    Updated(SubspaceAck),
    /// From a subspace region's head to the key region's tail.
    UpdateDone(SubspaceAck),
    /// From a subspace region's member to a key region's head.
    SettleQuery(SettleQuery),
    SettleAnswer(SettleAnswer),
}

/// "Which version of these keys have you committed?", from a member of subspace region
/// `subspace` to the head of key region `region` (so it may forget what only searches that
/// began before that version needed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleQuery {
    pub config_version: u64,
    pub region: RegionId,
    pub subspace: RegionId,
    pub keys: Vec<Vec<u8>>,
}

/// The versions a key region's head has committed, of the keys a [`SettleQuery`] asked about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleAnswer {
    pub config_version: u64,
    pub region: RegionId,
    pub subspace: RegionId,
    pub versions: Vec<(Vec<u8>, u64)>,
}

/// One write of a key, as a region of another subspace learns it (value-dependent chaining;
/// `hyperspace::entry`): the key region's tail sends it to the head of the region holding the
/// new object and to that of the region holding the old one, and each passes it down its chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubspaceUpdate {
    pub config_version: u64,
    /// The subspace region.
    pub region: RegionId,
    /// The canonical key bytes.
    pub key: Vec<u8>,
    pub version: u64,
    /// The object after the write, if it lies in this region (`None`: deleted, or moved to
    /// another region).
    pub object: Option<Object>,
}

/// "Every member of the subspace region from the sender on has taken in this update."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubspaceAck {
    pub config_version: u64,
    pub region: RegionId,
    pub key: Vec<u8>,
    pub version: u64,
    /// Whether the update carried the object (what a member checks it holds before passing
    /// the acknowledgement on).
    pub object: bool,
}

impl ChainMessage {
    /// The configuration version the sender had.
    pub fn config_version(&self) -> u64 {
        match self {
            ChainMessage::Write(w) => w.config_version,
            ChainMessage::Ack(a) => a.config_version,
            ChainMessage::TransferData(t) => t.config_version,
            ChainMessage::TransferAck(a) => a.config_version,
            ChainMessage::TransferQuery(q) => q.config_version,
            ChainMessage::Update(u) => u.config_version,
            ChainMessage::Updated(a) | ChainMessage::UpdateDone(a) => a.config_version,
            ChainMessage::SettleQuery(q) => q.config_version,
            ChainMessage::SettleAnswer(a) => a.config_version,
        }
    }

    /// The region the message is about.
    pub fn region(&self) -> RegionId {
        match self {
            ChainMessage::Write(w) => w.region,
            ChainMessage::Ack(a) => a.region,
            ChainMessage::TransferData(t) => t.region,
            ChainMessage::TransferAck(a) => a.region,
            ChainMessage::TransferQuery(q) => q.region,
            ChainMessage::Update(u) => u.region,
            ChainMessage::Updated(a) | ChainMessage::UpdateDone(a) => a.region,
            ChainMessage::SettleQuery(q) => q.region,
            ChainMessage::SettleAnswer(a) => a.region,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ChainMessage::Write(_) => "ChainWrite",
            ChainMessage::Ack(_) => "ChainAck",
            ChainMessage::TransferData(_) => "TransferData",
            ChainMessage::TransferAck(_) => "TransferAck",
            ChainMessage::TransferQuery(_) => "TransferQuery",
            ChainMessage::Update(_) => "SubspaceUpdate",
            ChainMessage::Updated(_) => "SubspaceUpdated",
            ChainMessage::UpdateDone(_) => "SubspaceUpdateDone",
            ChainMessage::SettleQuery(_) => "SettleQuery",
            ChainMessage::SettleAnswer(_) => "SettleAnswer",
        }
    }
}
