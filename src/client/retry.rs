//! The client's half of exactly-once, as a state machine without I/O.
//!
//! A single-key operation is one [`Attempts`]: a request with this client's id and one
//! sequence number, sent as often as needed until [`ClientOptions::timeout`] has passed. The
//! caller sends [`Attempts::request`] to the current head and feeds what came back to
//! [`Attempts::outcome`], which says whether that is the answer or whether to fetch the
//! configuration again and resend *the same* request after a pause:
//!
//! - RECONFIGURE (the head's configuration differs, or it is not the head), OFFLINE (the head
//!   has no lease), a broken connection or no reply within the attempt's time: retry;
//! - anything else is the answer (SUCCESS, NOTFOUND, CMPFAIL, validation errors...);
//! - once the deadline has passed: TIMEOUT, with the last problem. Then the write may or may
//!   not have been applied; it is never applied twice, since every copy of it carries the
//!   same `(client, seq)` and the head answers a copy from its record.
//!
//! Pauses start at 5 ms and double up to 200 ms.
//!
//! [`ClientOptions::timeout`]: super::ClientOptions::timeout

use std::time::Duration;

use hyperdex_model::{Operation, Reply, ReturnCode};

use crate::protocol::{ClientId, OpRequest};
use crate::rt::Instant;

const FIRST_PAUSE: Duration = Duration::from_millis(5);
const LONGEST_PAUSE: Duration = Duration::from_millis(200);

/// What to do after an attempt.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// The call's answer.
    Done(Reply),
    /// Fetch the configuration again, wait this long, and send the same request.
    Retry(Duration),
}

/// One single-key call and its retries.
#[derive(Debug)]
pub struct Attempts {
    client: ClientId,
    seq: u64,
    op: Operation,
    auth: Vec<String>,
    timeout: Duration,
    deadline: Instant,
    pause: Duration,
    attempts: u32,
    /// When the first attempt was made (seconds since the Unix epoch), sent with every one.
    first_unix: u64,
}

impl Attempts {
    /// A call started at `now` that may take `timeout` in all.
    pub fn new(client: ClientId, seq: u64, op: Operation, now: Instant, timeout: Duration) -> Self {
        Attempts {
            client,
            seq,
            op,
            auth: Vec::new(),
            timeout,
            // Daemons refuse a request older than the retry window: retrying longer is futile.
            deadline: now + timeout.min(Duration::from_secs(crate::limits::RETRY_WINDOW_SECS)),
            pause: FIRST_PAUSE,
            attempts: 0,
            first_unix: crate::rt::unix_now(),
        }
    }

    pub fn op(&self) -> &Operation {
        &self.op
    }

    /// Sends `tokens` (macaroons) with every attempt.
    pub fn with_auth(mut self, tokens: Vec<String>) -> Self {
        self.auth = tokens;
        self
    }

    /// How many attempts have been made.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The request to send now, stamped with the configuration the client has and its lowest
    /// sequence number still waiting; the client id and sequence number never change.
    pub fn request(&mut self, config_version: u64, low_seq: u64) -> OpRequest {
        self.attempts += 1;
        OpRequest {
            config_version,
            client: self.client,
            seq: self.seq,
            low_seq: low_seq.min(self.seq),
            op: self.op.clone(),
            auth: self.auth.clone(),
            first_unix: self.first_unix,
        }
    }

    /// What came back from an attempt (`Err`: no answer, and why), at `now`.
    pub fn outcome(&mut self, now: Instant, result: Result<Reply, String>) -> Next {
        let problem = match result {
            Ok(Reply::Error(ReturnCode::Reconfigure | ReturnCode::Offline, why)) => {
                crate::probe!("client.retried_after_reconfigure");
                why
            }
            Ok(reply) => return Next::Done(reply),
            Err(why) => why,
        };
        if now + self.pause >= self.deadline {
            return Next::Done(Reply::Error(
                ReturnCode::Timeout,
                format!(
                    "no answer within {:?} (last problem: {problem})",
                    self.timeout
                ),
            ));
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(LONGEST_PAUSE);
        Next::Retry(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperdex_model::Value;

    fn call(now: Instant) -> Attempts {
        let op = Operation::put("s", "k", vec![("n", Value::Int(1))]);
        Attempts::new(42, 7, op, now, Duration::from_secs(1))
    }

    fn reconfigure() -> Result<Reply, String> {
        Ok(Reply::Error(ReturnCode::Reconfigure, "moved".into()))
    }

    #[test]
    fn every_resend_carries_the_same_client_and_sequence_number() {
        let now = crate::rt::now();
        let mut a = call(now);
        let first = a.request(3, 7);
        assert_eq!(a.outcome(now, reconfigure()), Next::Retry(FIRST_PAUSE));
        let second = a.request(4, 7);
        assert_eq!(
            a.outcome(now, Err("connection closed".into())),
            Next::Retry(FIRST_PAUSE * 2)
        );
        let third = a.request(5, 9);
        for r in [&first, &second, &third] {
            assert_eq!((r.client, r.seq, &r.op), (42, 7, a.op()));
        }
        assert_eq!(
            [
                first.config_version,
                second.config_version,
                third.config_version
            ],
            [3, 4, 5],
            "each attempt carries the configuration the client has then"
        );
        assert_eq!(
            third.low_seq, 7,
            "never above the request's own sequence number"
        );
        assert_eq!(a.attempts(), 3);
    }

    #[test]
    fn reconfigure_offline_and_lost_connections_are_retried() {
        let now = crate::rt::now();
        for result in [
            reconfigure(),
            Ok(Reply::Error(ReturnCode::Offline, "no lease".into())),
            Err("no reply within 800ms".into()),
        ] {
            assert!(matches!(call(now).outcome(now, result), Next::Retry(_)));
        }
    }

    #[test]
    fn any_other_answer_is_the_answer() {
        let now = crate::rt::now();
        for reply in [
            Reply::Success,
            Reply::NotFound,
            Reply::CmpFail("check failed".into()),
            Reply::Error(ReturnCode::UnknownAttr, "no such attribute".into()),
        ] {
            assert_eq!(call(now).outcome(now, Ok(reply.clone())), Next::Done(reply));
        }
    }

    #[test]
    fn pauses_double_up_to_a_limit() {
        let now = crate::rt::now();
        let mut a = Attempts::new(1, 1, Operation::get("s", "k"), now, Duration::from_secs(60));
        let pauses: Vec<Duration> = (0..8)
            .map(|_| match a.outcome(now, reconfigure()) {
                Next::Retry(p) => p,
                Next::Done(r) => panic!("{r:?}"),
            })
            .collect();
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [5, 10, 20, 40, 80, 160, 200, 200]);
    }

    #[test]
    fn after_the_deadline_the_call_times_out_with_the_last_problem() {
        let start = crate::rt::now();
        let mut a = call(start);
        assert!(matches!(a.outcome(start, reconfigure()), Next::Retry(_)));
        let late = start + Duration::from_millis(999);
        match a.outcome(late, Err("connection refused".into())) {
            Next::Done(Reply::Error(ReturnCode::Timeout, why)) => {
                assert!(why.contains("connection refused"), "{why}");
                assert!(why.contains("1s"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }
}
