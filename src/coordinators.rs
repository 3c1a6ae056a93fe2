//! Reaching the coordinators: one address or several (`host:port,host:port`), and those the
//! configuration names, following the leader.
//!
//! Only the leader answers; another coordinator answers [`CoordResponse::NotLeader`] with the
//! leader's address if it knows it. A call goes to the coordinator that answered last, then to
//! the leader it names, then to each known address in turn, until one answers or the call's
//! time is up. One connection is kept, to the coordinator that answered last.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{Config, ServerId};
use crate::net::{Credentials, RpcConn, RpcError};
use crate::protocol::{CoordResponse, Message};
use crate::rt;

/// How long to wait before asking again when no coordinator knows a leader (an election).
const ELECTION_WAIT: Duration = Duration::from_millis(50);

/// Splits `host:port,host:port` into addresses.
pub fn parse_addrs(addrs: &str) -> Vec<String> {
    addrs
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

/// `hosts` (one host or several, `HOST[:PORT],HOST[:PORT]...`) as addresses, each without a
/// port of its own given `port`: HyperDex's `-h HOST -p PORT` still names one coordinator.
pub fn with_port(hosts: &str, port: u16) -> String {
    hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            let has_port = if h.starts_with('[') {
                h.contains("]:")
            } else {
                h.matches(':').count() == 1
            };
            if has_port {
                h.to_string()
            } else if h.contains(':') {
                format!("[{h}]:{port}")
            } else {
                format!("{h}:{port}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Default)]
struct State {
    addrs: Vec<String>,
    /// The address to try next, by position in `addrs`.
    next: usize,
    /// A leader named by a coordinator that is not it.
    hint: Option<String>,
    conn: Option<(String, Arc<RpcConn>)>,
    who: Option<Credentials>,
}

/// The coordinators of one cluster, as seen from a daemon, client or admin tool.
pub struct Coordinators {
    state: Mutex<State>,
    max_frame: usize,
    connect_timeout: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Coordinators {
    /// Coordinators at `addrs` (see [`parse_addrs`]), reached as `who`.
    pub fn new(
        addrs: &str,
        who: Credentials,
        max_frame: usize,
        connect_timeout: Duration,
    ) -> Coordinators {
        Coordinators {
            state: Mutex::new(State {
                addrs: parse_addrs(addrs),
                who: Some(who),
                ..State::default()
            }),
            max_frame,
            connect_timeout,
        }
    }

    /// The addresses known, for messages.
    pub fn describe(&self) -> String {
        lock(&self.state).addrs.join(",")
    }

    /// From now on, introduces itself as server `id` (a daemon, once registered).
    pub fn set_server(&self, id: ServerId) {
        let mut s = lock(&self.state);
        if let Some(who) = &mut s.who {
            who.server = Some(id);
        }
        s.conn = None;
    }

    /// Learns the coordinators a configuration names.
    pub fn learn(&self, config: &Config) {
        let mut s = lock(&self.state);
        for addr in config.coordinators.values() {
            if !s.addrs.contains(addr) {
                s.addrs.push(addr.clone());
            }
        }
    }

    /// Sends `msg` to the leader and returns its answer, trying the coordinators as the module
    /// docs say until `timeout` has passed.
    pub async fn call(&self, msg: Message, timeout: Duration) -> Result<Message, RpcError> {
        let deadline = rt::now() + timeout;
        let mut last = None;
        loop {
            let left = deadline.saturating_duration_since(rt::now());
            if left.is_zero() {
                return Err(last.unwrap_or(RpcError::Timeout(self.describe(), timeout)));
            }
            let conn = match self.connection(left).await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    self.pause_after_a_round(deadline).await;
                    continue;
                }
            };
            match conn.call(msg.clone(), left).await {
                Ok(Message::FromCoordinator(CoordResponse::NotLeader { leader })) => {
                    let known = leader.is_some();
                    self.drop_connection(leader);
                    last = Some(RpcError::Closed(format!(
                        "{} (not the leader)",
                        self.describe()
                    )));
                    if !known {
                        rt::sleep(ELECTION_WAIT.min(left)).await;
                    }
                }
                Ok(m) => return Ok(m),
                Err(e @ RpcError::Refused(_)) => return Err(e),
                Err(e) => {
                    self.drop_connection(None);
                    last = Some(e);
                }
            }
        }
    }

    /// The connection to use: the last one, or one to the leader hinted, or to the next
    /// address.
    async fn connection(&self, left: Duration) -> Result<Arc<RpcConn>, RpcError> {
        let (addr, who) = {
            let mut s = lock(&self.state);
            if let Some((_, c)) = s.conn.as_ref().filter(|(_, c)| c.is_alive()) {
                return Ok(c.clone());
            }
            let addr = match s.hint.take() {
                Some(a) => a,
                None if s.addrs.is_empty() => {
                    return Err(RpcError::Connect(
                        "(none)".into(),
                        "no coordinator address".into(),
                    ))
                }
                None => {
                    let i = s.next % s.addrs.len();
                    s.next = i + 1;
                    s.addrs[i].clone()
                }
            };
            (
                addr,
                s.who.clone().unwrap_or_else(|| Credentials::client(None)),
            )
        };
        let conn = Arc::new(
            RpcConn::connect_as(&addr, self.max_frame, self.connect_timeout.min(left), &who)
                .await?,
        );
        lock(&self.state).conn = Some((addr, conn.clone()));
        Ok(conn)
    }

    fn drop_connection(&self, leader: Option<String>) {
        let mut s = lock(&self.state);
        s.conn = None;
        if let Some(l) = leader {
            if !s.addrs.contains(&l) {
                s.addrs.push(l.clone());
            }
            s.hint = Some(l);
        }
    }

    /// After every address has been tried once without an answer, waits a moment.
    async fn pause_after_a_round(&self, deadline: rt::Instant) {
        let wrapped = {
            let s = lock(&self.state);
            s.addrs.is_empty() || s.next.is_multiple_of(s.addrs.len())
        };
        if wrapped {
            let left = deadline.saturating_duration_since(rt::now());
            rt::sleep(ELECTION_WAIT.min(left)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_addrs, with_port};

    #[test]
    fn addresses_are_split_on_commas() {
        assert_eq!(
            parse_addrs("10.0.0.1:1982, 10.0.0.2:1982,"),
            vec!["10.0.0.1:1982", "10.0.0.2:1982"]
        );
        assert_eq!(parse_addrs("h:1"), vec!["h:1"]);
    }

    #[test]
    fn hosts_without_a_port_get_the_given_one() {
        assert_eq!(with_port("127.0.0.1", 1982), "127.0.0.1:1982");
        assert_eq!(with_port("a,b:1983, c", 1982), "a:1982,b:1983,c:1982");
        assert_eq!(with_port("::1", 1982), "[::1]:1982");
        assert_eq!(with_port("[::1]:7", 1982), "[::1]:7");
    }
}
