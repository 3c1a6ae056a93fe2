//! Errors inside a process (as opposed to [`hyperdex_model::ReturnCode`]s, which are data
//! that travels to clients).

use crate::protocol::frame::FrameError;
use crate::storage::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot reach the coordinator at {addr}: {reason}")]
    Coordinator { addr: String, reason: String },
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
