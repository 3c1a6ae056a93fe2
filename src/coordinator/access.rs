//! Who may ask the coordinator what, and the costly part of a request done before the
//! coordinator's state is touched.

use hyperdex_model::ReturnCode;

use super::state::{self, Command};
use crate::config::ServerId;
use crate::protocol::auth::{Peer, Role};
use crate::protocol::{AdminCommand, CoordRequest, Message};

/// A request with its costly part done before the coordinator's lock is taken: a space
/// description is parsed and checked here, so one huge description cannot hold up
/// heartbeats.
pub enum Prepared {
    Request(CoordRequest),
    /// A message of the replicated log, for the log rather than the service.
    Raft(Vec<u8>),
    AddSpace(Result<Command, state::CommandError>),
}

/// Whether `peer` may make `request`: anyone may read the configuration; only daemons
/// register, send heartbeats and report transfers, each under its own id; only admin tools
/// change the configuration. With a cluster secret, a role is one its holder has proven.
pub fn allowed(request: &CoordRequest, peer: &Peer) -> Result<(), String> {
    let server = |id: Option<ServerId>| {
        if peer.role != Role::Server {
            return Err(format!("{} is for daemons", request.name()));
        }
        if peer.server != id {
            return Err(format!(
                "{} for server {} on a connection of server {}",
                request.name(),
                id.map_or("(new)".into(), |i| i.to_string()),
                peer.server.map_or("(new)".into(), |i| i.to_string()),
            ));
        }
        Ok(())
    };
    match request {
        CoordRequest::GetConfig => Ok(()),
        CoordRequest::Register { id, .. } => server(*id),
        CoordRequest::Heartbeat { id, .. }
        | CoordRequest::TransferComplete { id, .. }
        | CoordRequest::Leave { id } => server(Some(*id)),
        CoordRequest::Admin(
            AdminCommand::ListSpaces | AdminCommand::WaitUntilStable | AdminCommand::Transfers,
        ) => Ok(()),
        CoordRequest::Admin(_) | CoordRequest::Raft(_) | CoordRequest::JoinCoordinator { .. }
            if peer.role == Role::Admin =>
        {
            Ok(())
        }
        CoordRequest::Raft(_) | CoordRequest::JoinCoordinator { .. } => {
            Err("messages between coordinators need an admin connection (and the cluster secret, if the cluster has one)".into())
        }
        CoordRequest::Admin(_) => {
            Err("administrative changes need an admin connection (and the cluster secret, if the cluster has one)".into())
        }
    }
}

/// Prepares a message for [`Shared::handle`], or answers it at once.
pub fn prepare(msg: Message, peer: &Peer) -> Result<Prepared, Box<Message>> {
    if let Message::ToCoordinator(r) = &msg {
        if let Err(why) = allowed(r, peer) {
            tracing::warn!(?peer, "refused {}: {why}", r.name());
            return Err(Box::new(Message::Error {
                code: ReturnCode::Unauthorized,
                message: why,
            }));
        }
    }
    match msg {
        Message::ToCoordinator(CoordRequest::Admin(AdminCommand::AddSpace(text))) => {
            Ok(Prepared::AddSpace(Command::add_space(&text)))
        }
        Message::ToCoordinator(CoordRequest::Raft(bytes)) => Ok(Prepared::Raft(bytes)),
        Message::ToCoordinator(r) => Ok(Prepared::Request(r)),
        other => Err(Box::new(Message::Error {
            code: ReturnCode::AdminGarbage,
            message: format!("the coordinator does not handle {}", other.name()),
        })),
    }
}
