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
    use std::cell::{Cell, RefCell};
    use std::collections::BTreeMap;

    use madsim::task::NodeId;

    // One simulation runs on one thread; several may run at once on different threads.
    thread_local! {
        static RATES: RefCell<BTreeMap<NodeId, f64>> = const { RefCell::new(BTreeMap::new()) };
        static LINK_FAULTS: Cell<u32> = const { Cell::new(0) };
    }

    /// Makes `node`'s clock run `rate` fast (negative: slow), e.g. `0.01` for 1%.
    pub fn set_clock_rate(node: NodeId, rate: f64) {
        RATES.with(|r| r.borrow_mut().insert(node, rate));
    }

    /// Every clock back to real time (a new simulation reuses node ids).
    pub fn reset() {
        RATES.with(|r| r.borrow_mut().clear());
        LINK_FAULTS.with(|l| l.set(0));
    }

    /// The current node's clock rate.
    pub(crate) fn clock_rate() -> f64 {
        let node = madsim::plugin::node();
        RATES.with(|r| r.borrow().get(&node).copied().unwrap_or(0.0))
    }

    /// Makes links between daemons fail on `per_million` of the messages they send (see
    /// [`LinkFault`](super::LinkFault)).
    pub fn set_link_faults(per_million: u32) {
        LINK_FAULTS.with(|l| l.set(per_million));
    }

    pub(crate) fn link_faults() -> u32 {
        LINK_FAULTS.with(Cell::get)
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
