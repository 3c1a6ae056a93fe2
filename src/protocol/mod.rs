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
//!
//! A [`Message`] belongs to one of three conversations, each in its own module: with the
//! coordinator ([`coordinator`]), between a client and a daemon ([`client`]), and between
//! daemons ([`chain`]). A server handles only the conversations it takes part in and answers
//! anything else with [`Message::Error`].

pub mod auth;
pub mod chain;
pub mod client;
pub mod coordinator;
pub mod frame;
pub mod samples;

use hyperdex_model::ReturnCode;
use serde::{Deserialize, Serialize};

pub use chain::{
    ChainAck, ChainMessage, ChainWrite, ClientId, Dedupe, Digest, SettleAnswer, SettleQuery,
    SubspaceAck, SubspaceUpdate, TransferAck, TransferData, TransferEntry, TransferQuery,
};
pub use client::{ClientRequest, ClientResponse, OpRequest, SearchRequest};
pub use coordinator::{AdminCommand, AdminOutput, CoordRequest, CoordResponse};

/// The first four bytes of every connection.
pub const MAGIC: [u8; 4] = *b"HDRS";
/// The protocol version; a peer speaking another version is refused.
pub const VERSION: u32 = 4;
/// Default cap on one frame's length.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// Bytes an encoder reserves up front: most frames, chain writes and stored entries fit, so
/// they are encoded without growing their buffer again and again.
pub const ENCODE_CAPACITY: usize = 256;

/// One message with the id that matches a reply to its request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: u64,
    pub msg: Message,
}

/// Everything that travels between processes, by conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// A request to the coordinator.
    ToCoordinator(CoordRequest),
    /// The coordinator's answer.
    FromCoordinator(CoordResponse),
    /// A client's request to a daemon.
    ToDaemon(ClientRequest),
    /// A daemon's answer to a client.
    FromDaemon(ClientResponse),
    /// Between daemons (one-way).
    Chain(ChainMessage),
    /// The handshake that says (and, with a cluster secret, proves) who opened a connection.
    Auth(auth::AuthMessage),
    /// The request could not be handled at all (undecodable, wrong kind, ...).
    Error { code: ReturnCode, message: String },
}

impl Message {
    /// A short name for the message's kind, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Message::ToCoordinator(m) => m.name(),
            Message::FromCoordinator(m) => m.name(),
            Message::ToDaemon(m) => m.name(),
            Message::FromDaemon(m) => m.name(),
            Message::Chain(m) => m.name(),
            Message::Auth(m) => m.name(),
            Message::Error { .. } => "Error",
        }
    }
}
