//! Faults the simulation turns on inside the nodes: clocks that run at their own rates, and
//! links between daemons that lose messages or reset. Outside the simulation every knob is
//! off and costs nothing.
//!
//! **Clock rates.** Each node's clock may run up to
//! [`MAX_CLOCK_DRIFT`](crate::config::MAX_CLOCK_DRIFT) fast or slow: [`now`](super::now)
//! advances by `(1 + rate)` per unit of real time, and [`sleep`](super::sleep) and
//! [`timeout`](super::timeout) take their durations on that clock. Instants from two nodes are
//! never compared, so only rates matter, not offsets.

#[cfg(madsim)]
mod sim {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    use madsim::task::NodeId;

    static RATES: Mutex<BTreeMap<NodeId, f64>> = Mutex::new(BTreeMap::new());
    static LINK_FAULTS: AtomicU32 = AtomicU32::new(0);

    /// Makes `node`'s clock run `rate` fast (negative: slow), e.g. `0.01` for 1%.
    pub fn set_clock_rate(node: NodeId, rate: f64) {
        let mut rates = RATES.lock().unwrap_or_else(|e| e.into_inner());
        rates.insert(node, rate);
    }

    /// Every clock back to real time (a new simulation reuses node ids).
    pub fn reset() {
        RATES.lock().unwrap_or_else(|e| e.into_inner()).clear();
        LINK_FAULTS.store(0, Ordering::Relaxed);
    }

    /// The current node's clock rate.
    pub(crate) fn clock_rate() -> f64 {
        let node = madsim::plugin::node();
        let rates = RATES.lock().unwrap_or_else(|e| e.into_inner());
        rates.get(&node).copied().unwrap_or(0.0)
    }

    /// Makes links between daemons fail on `per_million` of the messages they send (see
    /// [`LinkFault`](super::LinkFault)).
    pub fn set_link_faults(per_million: u32) {
        LINK_FAULTS.store(per_million, Ordering::Relaxed);
    }

    pub(crate) fn link_faults() -> u32 {
        LINK_FAULTS.load(Ordering::Relaxed)
    }
}

#[cfg(madsim)]
pub use sim::{reset, set_clock_rate, set_link_faults};

/// How a link between daemons fails (simulation only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkFault {
    /// This message is lost; what follows goes through (as when a full queue drops one).
    Drop,
    /// This message and everything queued behind it are lost, and the connection is reset.
    Reset,
}

/// Whether the link sending a message between daemons should fail now, and how (never
/// outside the simulation).
pub fn link_fault() -> Option<LinkFault> {
    #[cfg(madsim)]
    {
        let rate = sim::link_faults();
        let draw = super::random_u64();
        if rate > 0 && draw % 1_000_000 < u64::from(rate) {
            return Some(if draw & (1 << 32) == 0 {
                LinkFault::Drop
            } else {
                LinkFault::Reset
            });
        }
    }
    None
}

/// A duration on this node's clock as real (simulated) time.
pub(super) fn to_real(d: std::time::Duration) -> std::time::Duration {
    #[cfg(madsim)]
    {
        let rate = sim::clock_rate();
        if rate != 0.0 {
            return d.div_f64(1.0 + rate);
        }
    }
    d
}

/// The current instant on this node's clock.
pub(super) fn local_now() -> super::Instant {
    let now = super::Instant::now();
    #[cfg(madsim)]
    {
        let rate = sim::clock_rate();
        if rate != 0.0 {
            let elapsed = madsim::time::TimeHandle::current().elapsed();
            let shift = elapsed.mul_f64(rate.abs());
            return if rate > 0.0 {
                now + shift
            } else {
                now.checked_sub(shift).unwrap_or(now)
            };
        }
    }
    now
}
