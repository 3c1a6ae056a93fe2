//! Following the log's leadership: answering heartbeats once leadership is confirmed, taking
//! over or giving up the lead, and pointing askers at the leader.

use tokio::sync::oneshot;
use tracing::info;

use super::{Answer, Service};
use crate::coordinator::progress::Progress;
use crate::coordinator::waits::Waits;
use crate::protocol::{CoordResponse, Message};
use crate::rt;

impl Service {
    /// Sends the heartbeat answers whose confirmation completed and whose index is applied.
    pub(super) fn answer_confirmed(&mut self) {
        let applied = self.consensus.applied();
        let due: Vec<u64> = self
            .confirming
            .iter()
            .filter(|(_, c)| c.index.is_some_and(|i| i <= applied))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(c) = self.confirming.remove(&id) else {
                continue;
            };
            let reply = CoordResponse::HeartbeatReply {
                config: (c.version < self.cluster.config.version)
                    .then(|| self.cluster.config.clone()),
                unix: rt::unix_now(),
            };
            let _ = c.answer.send(Answer {
                msg: Message::FromCoordinator(reply),
                registered: None,
            });
        }
    }

    /// On becoming leader, gives every server a full failure timeout to be heard from (the
    /// previous leader heard their heartbeats, not this one); on losing the lead, drops every
    /// held answer (their askers try the new leader).
    pub(super) fn follow_leadership(&mut self) {
        let leading = self.consensus.is_leader() && self.broken.is_none();
        if leading == self.leading {
            return;
        }
        self.leading = leading;
        if leading {
            info!(term = self.consensus.term(), "this coordinator leads");
            let now = rt::now();
            self.last_heard = self
                .cluster
                .config
                .servers
                .keys()
                .map(|&id| (id, now))
                .collect();
            self.progress = Progress::default();
        } else {
            info!(leader = ?self.leader_addr(), "this coordinator follows");
            self.waits = Waits::default();
            self.confirming.clear();
            self.outcomes.clear();
        }
    }

    /// Answers `NotLeader`, naming the leader if this coordinator knows it.
    pub(super) fn not_leader(&self, answer: oneshot::Sender<Answer>) {
        let msg = Message::FromCoordinator(CoordResponse::NotLeader {
            leader: self.leader_addr(),
        });
        let _ = answer.send(Answer {
            msg,
            registered: None,
        });
    }

    pub(super) fn leader_addr(&self) -> Option<String> {
        let leader = self.consensus.leader()?;
        self.cluster.config.coordinators.get(&leader).cloned()
    }
}
