//! The daemon's link to the coordinator: registration, heartbeats, configurations, leases and
//! transfer reports.
//!
//! - **Registration**: at start-up, with the server id kept in the data directory (if any),
//!   retried until [`DaemonOptions::startup_timeout`], then a clear error.
//! - **Heartbeats** every `heartbeat_interval`, on a connection and a task of their own, so
//!   they never wait behind storage work. An answered heartbeat is a [`Lease`]: the time it
//!   was *sent* and the configuration version the coordinator had. The link only passes it
//!   on; the replica decides what it allows (see `replica`'s docs). A newer configuration in
//!   the reply is passed on too. Both go through `watch` channels that hold only the newest
//!   value, so the link never waits for the actor.
//! - **Declared failed while alive** (a partition, a pause): the link registers again, and the
//!   coordinator brings the server back as a joiner.
//! - **Reports**: regions received completely by state transfer are reported to the
//!   coordinator, which then makes this server a full member of their chains. Each report
//!   waits for the coordinator to commit a change, so reports go on a task and a connection
//!   of their own ([`report_transfers`]): many regions completing at once must not hold up
//!   the heartbeats (which would get this server declared failed while it is busy).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, error, info, warn};

use crate::config::{Config, RegionId, ServerId, ServerState};
use crate::coordinators::Coordinators;
use crate::error::Error;
use crate::limits::CLOCK_SKEW_SECS;
use crate::protocol::coordinator::{JoinProgress, FENCED};
use crate::protocol::{CoordRequest, CoordResponse, Message};
use crate::rt;

use super::replica::Lease;
use super::{DaemonOptions, RPC_TIMEOUT};

/// What registration gives: the server's id, the configuration, the coordinators (as
/// reached), and the lease the registration itself grants.
pub struct Registered {
    pub id: ServerId,
    pub config: Config,
    pub conn: Coordinators,
    pub lease: Lease,
}

/// The coordinators as this daemon reaches them (as server `id`, once it has one).
pub fn coordinators(opts: &DaemonOptions, id: Option<ServerId>) -> Coordinators {
    let who = super::credentials(opts, id);
    Coordinators::new(&opts.coordinator, who, opts.limits.max_frame, RPC_TIMEOUT)
}

/// Registers with the coordinator, retrying until the start-up timeout.
pub async fn register(opts: &DaemonOptions, id: Option<ServerId>) -> Result<Registered, Error> {
    let deadline = rt::now() + opts.startup_timeout;
    let mut last_err = String::from("no attempt made");
    let conn = coordinators(opts, id);
    while rt::now() < deadline {
        let sent = rt::now();
        match call(&conn, register_request(opts, id), RPC_TIMEOUT).await {
            Ok(CoordResponse::Registered { id, config }) => {
                let lease = Lease {
                    sent,
                    config_version: config.version,
                };
                conn.set_server(id);
                conn.learn(&config);
                crate::probe::config_seen(&config);
                return Ok(Registered {
                    id,
                    config,
                    conn,
                    lease,
                });
            }
            Ok(other) => last_err = format!("unexpected reply {}", other.name()),
            Err(Refused(message)) => {
                return Err(Error::Coordinator {
                    addr: opts.coordinator.clone(),
                    reason: format!("registration refused: {message}"),
                })
            }
            Err(Failed(e)) => last_err = e,
        }
        rt::sleep(Duration::from_millis(200)).await;
    }
    Err(Error::Coordinator {
        addr: opts.coordinator.clone(),
        reason: format!(
            "gave up after {:?} ({last_err}); is `hyperdex coordinator` running there?",
            opts.startup_timeout
        ),
    })
}

fn register_request(opts: &DaemonOptions, id: Option<ServerId>) -> Message {
    Message::ToCoordinator(CoordRequest::Register {
        id,
        addr: opts.address.clone(),
    })
}

/// Why a call to the coordinator got no answer.
enum CallError {
    /// The coordinator answered with an error.
    Refused(String),
    /// No answer (connection, timeout, garbage).
    Failed(String),
}
use CallError::{Failed, Refused};

async fn call(
    conn: &Coordinators,
    msg: Message,
    timeout: Duration,
) -> Result<CoordResponse, CallError> {
    match conn.call(msg, timeout).await {
        Ok(Message::FromCoordinator(r)) => Ok(r),
        // Fenced: refused for now, not for good (see `FENCED`). Its address in use: refused
        // until the server that has it is declared failed, which is what happens when this
        // daemon's own registration was committed but the answer lost (it registers again
        // under a new id once the first is declared failed).
        Ok(Message::Error { code, message })
            if code == FENCED || code == hyperdex_model::ReturnCode::Duplicate =>
        {
            Err(Failed(message))
        }
        Ok(Message::Error { message, .. }) => Err(Refused(message)),
        Ok(other) => Err(Failed(format!("unexpected reply {}", other.name()))),
        Err(e) => Err(Failed(e.to_string())),
    }
}

/// The running link.
pub struct Link {
    pub me: ServerId,
    pub opts: DaemonOptions,
    pub conn: Coordinators,
    /// The newest configuration passed to the actor.
    pub config: watch::Sender<Arc<Config>>,
    pub lease: watch::Sender<Option<Lease>>,
    /// Woken when the actor wants a newer configuration at once.
    pub fetch: Arc<Notify>,
    /// How far this server's joins are (newest only), for the heartbeats.
    pub joining: watch::Receiver<Vec<JoinProgress>>,
    /// Set when the coordinator refuses this server for good (it was forgotten).
    pub stop: Arc<super::Stop>,
}

impl Link {
    /// Sends heartbeats and reports until the actor is gone.
    pub async fn run(mut self) {
        while !self.config.is_closed() {
            self.wait().await;
            self.heartbeat().await;
        }
    }

    /// Waits for the next heartbeat time or a fetch request.
    async fn wait(&mut self) {
        tokio::select! {
            biased;
            _ = rt::sleep(self.opts.timing.heartbeat_interval) => {}
            _ = self.fetch.notified() => {}
        }
    }

    async fn heartbeat(&mut self) {
        let conn = &self.conn;
        let version = self.config.borrow().version;
        let sent = rt::now();
        let hb = CoordRequest::Heartbeat {
            id: self.me,
            config_version: version,
            joining: self.joining.borrow().clone(),
        };
        let config = match call(conn, Message::ToCoordinator(hb), self.opts.timing.lease).await {
            Ok(CoordResponse::HeartbeatReply { config, unix }) => {
                if let Some(off) = clock_off(unix, rt::unix_now()) {
                    // Retry records are dropped by their heads' clocks (`daemon::record`): a
                    // daemon whose clock is far off must not order writes. No lease: it
                    // answers nobody until its clock is right.
                    error!(
                        "this server's clock is {off} s away from the coordinator's, more than \
                         {} s: not serving until it is corrected (is NTP running?)",
                        CLOCK_SKEW_SECS / 2
                    );
                    return;
                }
                config
            }
            Ok(other) => {
                debug!("unexpected heartbeat reply {}", other.name());
                return;
            }
            Err(Refused(e) | Failed(e)) => {
                debug!("heartbeat failed: {e}");
                return;
            }
        };
        let current = config.as_ref().map_or(version, |c| c.version);
        self.grant(sent, current);
        let Some(mut config) = config else {
            return;
        };
        self.conn.learn(&config);
        crate::probe::config_seen(&config);
        if config
            .server(self.me)
            .is_none_or(|s| s.state != ServerState::Available)
        {
            match self.register_again().await {
                Some(c) => config = c,
                None => return,
            }
        }
        self.config.send_replace(Arc::new(config));
    }

    fn grant(&self, sent: rt::Instant, config_version: u64) {
        self.lease.send_replace(Some(Lease {
            sent,
            config_version,
        }));
    }

    /// Declared failed while alive: register again and rejoin by state transfer.
    async fn register_again(&self) -> Option<Config> {
        let conn = &self.conn;
        warn!(
            server = self.me.0,
            "the coordinator declared this server failed; registering again"
        );
        match call(
            conn,
            register_request(&self.opts, Some(self.me)),
            RPC_TIMEOUT,
        )
        .await
        {
            Ok(CoordResponse::Registered { config, .. }) => {
                crate::probe::config_seen(&config);
                Some(config)
            }
            Err(Refused(message)) => {
                // Not transient (a fenced server gets FENCED, a failure to answer is retried):
                // forgotten, its address taken, or not proving the cluster secret.
                error!("the coordinator refused this server, stopping: {message}");
                self.stop
                    .now(format!("the coordinator refused this server: {message}"));
                None
            }
            _ => None,
        }
    }
}

/// Tells the coordinator this daemon has stopped (its actor is done: it answers nobody), so
/// that its regions get other heads now rather than after the failure timeout. Best effort:
/// if the coordinator cannot be told, its failure detector does the same a little later.
pub async fn leave(opts: &DaemonOptions, me: ServerId) {
    let conn = coordinators(opts, Some(me));
    let told = async {
        match call(
            &conn,
            Message::ToCoordinator(CoordRequest::Leave { id: me }),
            RPC_TIMEOUT,
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(Refused(e) | Failed(e)) => Err(e),
        }
    };
    match told.await {
        Ok(()) => info!(
            server = me.0,
            "the coordinator knows this server has stopped"
        ),
        Err(e) => warn!("could not tell the coordinator this server stopped: {e}"),
    }
}

/// How far (seconds) this daemon's wall clock is from the coordinator's, if more than half the
/// skew `daemon::record` allows between any two servers (so that two daemons are within it),
/// give or take the second that whole-second readings taken apart may differ by (the record
/// horizon's slack covers it).
fn clock_off(coordinator: u64, mine: u64) -> Option<u64> {
    let off = coordinator.abs_diff(mine);
    (off > CLOCK_SKEW_SECS / 2 + 1).then_some(off)
}

/// Reports regions received completely to the coordinator, on a connection of its own, until
/// the actor is gone. A report that gets no answer is sent again with the next one (the
/// actor also repeats them on every tick while the join lasts).
pub async fn report_transfers(
    me: ServerId,
    opts: DaemonOptions,
    mut reports: mpsc::Receiver<(RegionId, u64)>,
) {
    let conn = coordinators(&opts, Some(me));
    while let Some(first) = reports.recv().await {
        let mut batch = BTreeSet::from([first]);
        while let Ok(r) = reports.try_recv() {
            batch.insert(r);
        }
        for (region, since) in batch {
            let msg = CoordRequest::TransferComplete {
                id: me,
                region,
                since,
            };
            if let Err(Failed(e)) = call(&conn, Message::ToCoordinator(msg), RPC_TIMEOUT).await {
                debug!("a transfer report got no answer: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_more_than_half_the_skew_away_is_reported() {
        let t = 1_800_000_000;
        assert_eq!(clock_off(t, t), None);
        let most = CLOCK_SKEW_SECS / 2 + 1;
        assert_eq!(clock_off(t, t + most), None);
        assert_eq!(clock_off(t, t + most + 1), Some(most + 1));
        assert_eq!(clock_off(t + most + 1, t), Some(most + 1));
    }
}
