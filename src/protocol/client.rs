//! The conversation between a client and a daemon: single-key operations and searches, sent
//! to the head of a region, and their answers.

use hyperdex_model::{Check, Object, Operation, Reply};
use serde::{Deserialize, Serialize};

use super::chain::ClientId;
use crate::config::RegionId;

/// A single-key operation, sent to the head of the key's region. The same request (client id
/// and sequence number) is sent again on every retry, so the head can answer it once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpRequest {
    pub config_version: u64,
    pub client: ClientId,
    pub seq: u64,
    /// The client's lowest sequence number still waiting for an answer.
    pub low_seq: u64,
    pub op: Operation,
    /// Serialized macaroons for a space `with authorization`: the first grants access, the
    /// others discharge its third-party caveats (see `daemon::authorize`).
    pub auth: Vec<String>,
    /// When the client first sent this request (seconds since the Unix epoch, its clock):
    /// a request older than `record::RETRY_WINDOW` is not applied as new (its record may be
    /// gone), see `daemon::record`.
    pub first_unix: u64,
}

/// Search the regions of `space` that the receiver heads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    pub config_version: u64,
    pub space: String,
    pub regions: Vec<RegionId>,
    pub checks: Vec<Check>,
    /// Resume after this region and key (the previous page's `next`); from the start when
    /// `None`.
    pub after: Option<(RegionId, Vec<u8>)>,
    /// Count the matches only, without returning them.
    pub count_only: bool,
    /// When not empty: look up only these keys (canonical bytes, at most
    /// `daemon::search::RESOLVE_KEYS`) in the one key region named, instead of scanning it;
    /// a page then ends after a key (`after` names it), never inside the list.
    pub keys: Vec<Vec<u8>>,
}

/// What a client asks a daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientRequest {
    Op(OpRequest),
    Search(SearchRequest),
}

/// What a daemon answers a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientResponse {
    Reply(Reply),
    /// A page of search results: matching objects with their keys (none for a count), how
    /// many matched, and where the next page starts (`None`: done).
    Page {
        objects: Vec<Object>,
        count: u64,
        next: Option<(RegionId, Vec<u8>)>,
    },
}

impl ClientRequest {
    pub fn name(&self) -> &'static str {
        match self {
            ClientRequest::Op(_) => "Op",
            ClientRequest::Search(_) => "Search",
        }
    }
}

impl ClientResponse {
    pub fn name(&self) -> &'static str {
        match self {
            ClientResponse::Reply(_) => "Reply",
            ClientResponse::Page { .. } => "Page",
        }
    }
}
