//! The admin client: spaces and servers, through the coordinator.

use std::time::Duration;

use hyperdex_model::ReturnCode;

use crate::client::{ClientError, ClientOptions, ClientResult};
use crate::config::{Config, ServerId};
use crate::coordinators::Coordinators;
use crate::net::Credentials;
use crate::protocol::auth::Role;
use crate::protocol::coordinator::TransferReport;
use crate::protocol::{AdminCommand, AdminOutput, CoordRequest, CoordResponse, Message};
use crate::rt;

/// A connection to the coordinator for administration.
pub struct Admin {
    conn: Coordinators,
    opts: ClientOptions,
}

impl Admin {
    pub async fn connect(host: &str, port: u16) -> ClientResult<Admin> {
        let addrs = crate::coordinators::with_port(host, port);
        Admin::connect_addr(&addrs, ClientOptions::default()).await
    }

    /// Connects to the coordinators at `addr` (`host:port`, or several separated by commas).
    pub async fn connect_addr(addr: &str, opts: ClientOptions) -> ClientResult<Admin> {
        let who = Credentials {
            role: Role::Admin,
            server: None,
            secret: opts.secret.clone(),
            tls: opts.tls.clone(),
        };
        let conn = Coordinators::new(addr, who, opts.max_frame, opts.attempt_timeout);
        let admin = Admin { conn, opts };
        // Reach the leader now, so a wrong address fails here rather than at the first call,
        // and learn the other coordinators.
        let config = admin.config().await.map_err(|e| {
            ClientError::new(
                ReturnCode::AdminCoordFail,
                format!("cannot reach the coordinator: {}", e.message),
            )
        })?;
        admin.conn.learn(&config);
        Ok(admin)
    }

    async fn call(&self, msg: Message) -> ClientResult<Message> {
        self.conn
            .call(msg, self.opts.timeout)
            .await
            .map_err(|e| ClientError::new(ReturnCode::AdminCoordFail, e.to_string()))
    }

    async fn admin(&self, cmd: AdminCommand) -> ClientResult<AdminOutput> {
        match self
            .call(Message::ToCoordinator(CoordRequest::Admin(cmd)))
            .await?
        {
            Message::FromCoordinator(CoordResponse::AdminReply(Ok(out))) => Ok(out),
            Message::FromCoordinator(CoordResponse::AdminReply(Err((code, message)))) => {
                Err(ClientError { code, message })
            }
            other => Err(ClientError::new(
                ReturnCode::AdminInternal,
                format!("unexpected reply {}", other.name()),
            )),
        }
    }

    /// Adds a space from its description.
    pub async fn add_space(&self, description: &str) -> ClientResult<()> {
        self.admin(AdminCommand::AddSpace(description.to_string()))
            .await
            .map(|_| ())
    }

    pub async fn rm_space(&self, name: &str) -> ClientResult<()> {
        self.admin(AdminCommand::RmSpace(name.to_string()))
            .await
            .map(|_| ())
    }

    pub async fn list_spaces(&self) -> ClientResult<Vec<String>> {
        match self.admin(AdminCommand::ListSpaces).await? {
            AdminOutput::Spaces(s) => Ok(s),
            other => Err(ClientError::new(
                ReturnCode::AdminInternal,
                format!("unexpected {other:?}"),
            )),
        }
    }

    /// The state transfers in progress, as the joining daemons last reported them.
    pub async fn transfers(&self) -> ClientResult<Vec<TransferReport>> {
        match self.admin(AdminCommand::Transfers).await? {
            AdminOutput::Transfers(t) => Ok(t),
            other => Err(ClientError::new(
                ReturnCode::AdminInternal,
                format!("unexpected {other:?}"),
            )),
        }
    }

    /// Waits until every region has its replicas, or `timeout` passes.
    pub async fn wait_until_stable(&self, timeout: Duration) -> ClientResult<()> {
        let deadline = rt::now() + timeout;
        loop {
            match self.admin(AdminCommand::WaitUntilStable).await? {
                AdminOutput::Done => return Ok(()),
                AdminOutput::NotStable(why) if rt::now() >= deadline => {
                    return Err(ClientError::new(
                        ReturnCode::AdminTimeout,
                        format!("not stable after {timeout:?}: {why}"),
                    ))
                }
                _ => rt::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Takes the coordinator with this id (as `show-config` lists it) out of the replicated log.
    pub async fn rm_coordinator(&self, id: u64) -> ClientResult<()> {
        self.admin(AdminCommand::RmCoordinator(id))
            .await
            .map(|_| ())
    }

    pub async fn server_kill(&self, id: u64) -> ClientResult<()> {
        self.admin(AdminCommand::ServerKill(ServerId(id)))
            .await
            .map(|_| ())
    }

    pub async fn server_forget(&self, id: u64) -> ClientResult<()> {
        self.admin(AdminCommand::ServerForget(ServerId(id)))
            .await
            .map(|_| ())
    }

    /// Makes the regions of `space` keep `tolerate + 1` replicas: new ones join by state
    /// transfer (see [`Admin::wait_until_stable`]); extra ones leave from the tail at once.
    pub async fn fault_tolerance(&self, space: &str, tolerate: u32) -> ClientResult<()> {
        self.admin(AdminCommand::FaultTolerance {
            space: space.to_string(),
            tolerate,
        })
        .await
        .map(|_| ())
    }

    /// Switches read-only mode on (every write answers READONLY; reads go on) or off. In
    /// force on every daemon when this returns.
    pub async fn read_only(&self, on: bool) -> ClientResult<()> {
        self.admin(AdminCommand::ReadOnly(on)).await.map(|_| ())
    }

    /// Adds a secondary index on `attribute` of `space`. Daemons build it in the background;
    /// searches use it where it is built and scan elsewhere, with the same results.
    pub async fn add_index(&self, space: &str, attribute: &str) -> ClientResult<()> {
        self.admin(AdminCommand::AddIndex {
            space: space.to_string(),
            attribute: attribute.to_string(),
        })
        .await
        .map(|_| ())
    }

    /// Removes the index with identifier `id` (from [`Admin::list_indices`]).
    pub async fn rm_index(&self, id: u64) -> ClientResult<()> {
        self.admin(AdminCommand::RmIndex(id)).await.map(|_| ())
    }

    /// The indexes of `space`: identifier and attribute.
    pub async fn list_indices(&self, space: &str) -> ClientResult<Vec<(u64, String)>> {
        Ok(self.space(space).await?.indexes())
    }

    /// The subspaces of `space`: identifier and attributes, the key's first.
    pub async fn list_subspaces(&self, space: &str) -> ClientResult<Vec<(u64, Vec<String>)>> {
        Ok(self.space(space).await?.subspaces())
    }

    async fn space(&self, space: &str) -> ClientResult<crate::config::SpaceConfig> {
        let mut config = self.config().await?;
        config.spaces.remove(space).ok_or_else(|| {
            ClientError::new(
                ReturnCode::AdminNotFound,
                format!("there is no space \"{space}\""),
            )
        })
    }

    /// The current configuration.
    pub async fn config(&self) -> ClientResult<Config> {
        match self
            .call(Message::ToCoordinator(CoordRequest::GetConfig))
            .await?
        {
            Message::FromCoordinator(CoordResponse::Config(c)) => Ok(c),
            other => Err(ClientError::new(
                ReturnCode::AdminInternal,
                format!("unexpected reply {}", other.name()),
            )),
        }
    }
}
