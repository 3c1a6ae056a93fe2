//! Administrative changes answered only once they are in force.
//!
//! A daemon serves a configuration for as long as its lease lasts (see
//! [`Timing`](crate::config::Timing)), so a change the coordinator has committed is not yet in
//! force: a daemon that has not heard of it may still answer a `get` on a removed space, or
//! keep answering reads as the head of a chain it is no longer part of. The coordinator
//! therefore answers an administrative change only when
//!
//! - **every server has it**: each server that was available reported the new version in a
//!   heartbeat, or enough time has passed that any lease granted on an older configuration has
//!   expired ([`Until::Everywhere`]); or
//! - **the server is out**: `server-kill` and `server-forget` of an available server first
//!   *fence* it (its heartbeats go unanswered, so its lease runs out), and the change is made
//!   only when the failure detector declares it failed, exactly as if it had crashed
//!   ([`Until::Failed`]). Publishing a chain without a live head at once would let the old head
//!   answer reads from the old chain while the new head takes writes.
//!
//! [`Waits::step`] is pure: it takes what happened and returns the answers now due.

use std::collections::BTreeSet;

use crate::config::ServerId;
use crate::rt::Instant;

/// What an answer waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Until {
    /// Each server in `missing` reports `version` or newer, or `deadline` passes.
    Everywhere {
        version: u64,
        missing: BTreeSet<ServerId>,
        deadline: Instant,
    },
    /// The server (fenced meanwhile) is declared failed.
    Failed(ServerId),
}

/// Something that happened which may release answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A heartbeat from `server` at configuration `version`.
    Heard { server: ServerId, version: u64 },
    /// The server was declared failed.
    Failed(ServerId),
    /// Time passed.
    Tick(Instant),
}

/// Answers waiting, each with what it waits for.
#[derive(Debug)]
pub struct Waits<T> {
    waits: Vec<(Until, T)>,
}

impl<T> Default for Waits<T> {
    fn default() -> Self {
        Waits { waits: Vec::new() }
    }
}

impl<T> Waits<T> {
    /// Holds `answer` until `until` holds (it may hold already: then the next step releases it).
    pub fn push(&mut self, until: Until, answer: T) {
        self.waits.push((until, answer));
    }

    /// Whether `server` is fenced: its heartbeats, registrations and reports go unanswered
    /// until it is declared failed.
    pub fn fenced(&self, server: ServerId) -> bool {
        self.waits.iter().any(|(u, _)| *u == Until::Failed(server))
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.waits.is_empty()
    }

    /// Applies `event`; returns the answers now due, oldest first.
    pub fn step(&mut self, event: Event) -> Vec<T> {
        for (until, _) in &mut self.waits {
            if let (
                Until::Everywhere {
                    version, missing, ..
                },
                Event::Heard { server, version: v },
            ) = (until, event)
            {
                if v >= *version {
                    missing.remove(&server);
                }
            }
        }
        let (due, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.waits)
                .into_iter()
                .partition(|(until, _)| match (until, event) {
                    (Until::Everywhere { missing, .. }, _) if missing.is_empty() => true,
                    (Until::Everywhere { deadline, .. }, Event::Tick(now)) => now >= *deadline,
                    (Until::Failed(s), Event::Failed(f)) => *s == f,
                    _ => false,
                });
        self.waits = kept;
        due.into_iter().map(|(_, answer)| answer).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ids(v: &[u64]) -> BTreeSet<ServerId> {
        v.iter().map(|&i| ServerId(i)).collect()
    }

    #[test]
    fn a_change_is_answered_once_every_server_has_it() {
        let t0 = crate::rt::now();
        let mut w = Waits::default();
        w.push(
            Until::Everywhere {
                version: 7,
                missing: ids(&[1, 2]),
                deadline: t0 + Duration::from_secs(1),
            },
            "rm-space",
        );
        let heard = |server, version| Event::Heard {
            server: ServerId(server),
            version,
        };
        assert!(w.step(heard(1, 6)).is_empty(), "an older version counts");
        assert!(w.step(heard(1, 7)).is_empty(), "server 2 has not heard");
        assert!(w.step(Event::Tick(t0)).is_empty());
        assert_eq!(w.step(heard(2, 8)), vec!["rm-space"]);
        assert!(w.is_empty());
    }

    #[test]
    fn a_server_that_never_hears_holds_an_answer_until_its_lease_has_expired() {
        let t0 = crate::rt::now();
        let deadline = t0 + Duration::from_millis(700);
        let mut w = Waits::default();
        w.push(
            Until::Everywhere {
                version: 3,
                missing: ids(&[4]),
                deadline,
            },
            1,
        );
        assert!(w
            .step(Event::Tick(t0 + Duration::from_millis(699)))
            .is_empty());
        assert_eq!(w.step(Event::Tick(deadline)), vec![1]);
    }

    #[test]
    fn a_fenced_server_stays_fenced_until_it_is_declared_failed() {
        let t0 = crate::rt::now();
        let mut w = Waits::default();
        w.push(Until::Failed(ServerId(2)), "kill 2");
        w.push(Until::Failed(ServerId(3)), "forget 3");
        assert!(w.fenced(ServerId(2)) && !w.fenced(ServerId(1)));
        // Heartbeats and time do not release a fence, however long.
        let heard = Event::Heard {
            server: ServerId(2),
            version: 99,
        };
        assert!(w.step(heard).is_empty());
        assert!(w
            .step(Event::Tick(t0 + Duration::from_secs(3600)))
            .is_empty());
        assert_eq!(w.step(Event::Failed(ServerId(2))), vec!["kill 2"]);
        assert!(!w.fenced(ServerId(2)) && w.fenced(ServerId(3)));
    }

    #[test]
    fn a_change_no_server_must_hear_is_answered_at_the_next_step() {
        let mut w = Waits::default();
        w.push(
            Until::Everywhere {
                version: 2,
                missing: BTreeSet::new(),
                deadline: crate::rt::now() + Duration::from_secs(1),
            },
            (),
        );
        assert_eq!(w.step(Event::Failed(ServerId(9))), vec![()]);
    }
}
