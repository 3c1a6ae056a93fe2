//! A token bucket for the bytes of transfer windows a server sends: transfers go as fast as
//! the limit allows and never faster, so client traffic and heartbeats keep their share of
//! the disk and the network however many regions are being transferred.

use crate::rt::Instant;

/// Bytes per second the windows of all transfers from one server may use by default (the
/// daemon's `--transfer-rate`, in megabytes).
pub const DEFAULT_TRANSFER_RATE: u64 = 64 << 20;

#[derive(Debug)]
pub struct Rate {
    /// Bytes per second; 0: unlimited.
    per_sec: u64,
    /// Bytes that may be sent now (negative: a window overdrew the bucket).
    tokens: f64,
    last: Option<Instant>,
}

impl Rate {
    pub fn new(per_sec: u64) -> Rate {
        Rate {
            per_sec,
            tokens: per_sec as f64,
            last: None,
        }
    }

    /// Time has moved on to `now`: the bucket fills, up to one second's worth.
    pub fn advance(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let secs = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + secs * self.per_sec as f64).min(self.per_sec as f64);
        }
        self.last = Some(now);
    }

    /// Whether a window may be sent now (a window may overdraw what is left; the next
    /// one waits until the bucket has refilled).
    pub fn may_send(&self) -> bool {
        self.per_sec == 0 || self.tokens > 0.0
    }

    /// A window of `bytes` was sent.
    pub fn spend(&mut self, bytes: usize) {
        if self.per_sec > 0 {
            self.tokens -= bytes as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_bucket_refills_at_the_rate_and_holds_at_most_a_second() {
        let t0 = crate::rt::now();
        let mut r = Rate::new(1000);
        r.advance(t0);
        assert!(r.may_send());
        r.spend(1500);
        assert!(!r.may_send(), "overdrawn by 500");
        r.advance(t0 + Duration::from_millis(400));
        assert!(!r.may_send(), "400 bytes back, still 100 short");
        r.advance(t0 + Duration::from_millis(600));
        assert!(r.may_send());
        r.advance(t0 + Duration::from_secs(60));
        r.spend(1000);
        assert!(
            !r.may_send(),
            "a long pause refills one second's worth only"
        );
        let mut unlimited = Rate::new(0);
        unlimited.spend(1 << 30);
        assert!(unlimited.may_send());
    }
}
