//! The conversation with the coordinator: daemons register and send heartbeats, clients fetch
//! the configuration, admin tools change it.

use hyperdex_model::ReturnCode;
use serde::{Deserialize, Serialize};

use crate::config::{Config, RegionId, ServerId};

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
    /// The state transfers in progress, as the joiners last reported them.
    Transfers,
    /// Read-only mode on (writes refused with READONLY) or off; in force once answered.
    ReadOnly(bool),
    /// A secondary index on an attribute; daemons build it in the background and searches use
    /// it once built.
    AddIndex {
        space: String,
        attribute: String,
    },
    /// Removes the index with this identifier (see `SpaceConfig::indexes`).
    RmIndex(u64),
    /// Takes the coordinator with this id (`Config::coordinators`) out of the replicated log.
    RmCoordinator(u64),
}

/// How far a daemon has got in filling a region it joins (sent with its heartbeats).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinProgress {
    pub region: RegionId,
    /// The join (`Joiner::since`).
    pub since: u64,
    /// Objects and bytes received so far in this join.
    pub objects: u64,
    pub bytes: u64,
}

/// A state transfer in progress, as `show-config` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransferReport {
    pub region: RegionId,
    /// The joining server.
    pub server: ServerId,
    pub objects: u64,
    pub bytes: u64,
    /// Objects received per second since the coordinator first heard of this transfer.
    pub objects_per_sec: f64,
    /// Estimated seconds left, from the size of the space's regions whose transfers have
    /// completed (`None` until one has).
    pub eta_secs: Option<f64>,
}

/// What an admin request returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AdminOutput {
    Done,
    Spaces(Vec<String>),
    /// Not stable yet: the caller should ask again.
    NotStable(String),
    Transfers(Vec<TransferReport>),
}

/// What the coordinator is asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CoordRequest {
    /// Fetch the current configuration.
    GetConfig,
    /// A daemon announces itself; `id` is `Some` when it restarts on an existing data
    /// directory.
    Register {
        id: Option<ServerId>,
        addr: String,
    },
    /// A daemon is alive and has configuration `config_version`; how far its joins are.
    Heartbeat {
        id: ServerId,
        config_version: u64,
        joining: Vec<JoinProgress>,
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
    /// A daemon stopping on purpose (SIGTERM): it has stopped answering clients and closed its
    /// store, so it may be taken out of its chains at once instead of after the failure
    /// timeout.
    Leave {
        id: ServerId,
    },
    /// A message of the coordinators' replicated log (raft, protobuf-encoded), one-way.
    Raft(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A coordinator started with `--connect` asks to join the replicated log.
    JoinCoordinator {
        id: u64,
        addr: String,
    },
}

/// The code of the refusal a server gets while an operator's `server-kill` or `server-forget`
/// fences it: not final, since a killed server registers again once the failure detector has
/// declared it failed.
pub const FENCED: ReturnCode = ReturnCode::AdminInterrupted;

/// What the coordinator answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CoordResponse {
    Config(Config),
    Registered {
        id: ServerId,
        config: Config,
    },
    /// The newer configuration, if the daemon is behind, and the coordinator's wall clock
    /// (seconds since the Unix epoch) for the daemon to check its own against.
    HeartbeatReply {
        config: Option<Config>,
        unix: u64,
    },
    AdminReply(Result<AdminOutput, (ReturnCode, String)>),
    /// This coordinator does not lead the replicated log; ask the leader (its address, when
    /// known).
    NotLeader {
        leader: Option<String>,
    },
    /// A joining coordinator is in the log; these are the coordinators it can reach.
    Joined {
        coordinators: std::collections::BTreeMap<u64, String>,
    },
}

impl CoordRequest {
    pub fn name(&self) -> &'static str {
        match self {
            CoordRequest::GetConfig => "GetConfig",
            CoordRequest::Register { .. } => "Register",
            CoordRequest::Heartbeat { .. } => "Heartbeat",
            CoordRequest::Admin(_) => "Admin",
            CoordRequest::TransferComplete { .. } => "TransferComplete",
            CoordRequest::Leave { .. } => "Leave",
            CoordRequest::Raft(_) => "Raft",
            CoordRequest::JoinCoordinator { .. } => "JoinCoordinator",
        }
    }
}

impl CoordResponse {
    pub fn name(&self) -> &'static str {
        match self {
            CoordResponse::Config(_) => "Config",
            CoordResponse::Registered { .. } => "Registered",
            CoordResponse::HeartbeatReply { .. } => "HeartbeatReply",
            CoordResponse::AdminReply(_) => "AdminReply",
            CoordResponse::NotLeader { .. } => "NotLeader",
            CoordResponse::Joined { .. } => "Joined",
        }
    }
}
