//! The deterministic simulation harness for hyperdex-rs.
//!
//! Everything here runs only when built with `RUSTFLAGS="--cfg madsim"`: the whole cluster
//! (coordinator, daemons, clients, network, clocks and disks) then runs inside one process
//! under madsim, driven by a seed, so that any run can be replayed exactly. Without
//! `--cfg madsim` the crate is empty, so an ordinary `cargo build` of the workspace stays
//! fast.
//!
//! - `cluster`: named simulated nodes and the faults that can be done to them;
//! - `workload`: seeded client workloads that record a history;
//! - `fresh`: clients that write one key once each, so that its retry records reach their
//!   count limit;
//! - `nemesis`: a seeded schedule of faults;
//! - `rogue`: a node without the cluster secret that sends garbage and forged messages;
//! - `liveness`: after healing, every operation must get a definite answer within a bound;
//! - `run`: one whole run (start, workload under faults, heal, audit, check) and its report.
//!
//! `docs/simulation.md` explains running, replaying, reading a counterexample and adding a
//! fault or a workload.

#[cfg(madsim)]
pub mod admin;
#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod fresh;
#[cfg(madsim)]
pub mod liveness;
#[cfg(madsim)]
pub mod nemesis;
#[cfg(madsim)]
pub mod ops;
#[cfg(madsim)]
pub mod rogue;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod subspaces;
#[cfg(madsim)]
pub mod sweep;
#[cfg(madsim)]
pub mod workload;

/// Sends tracing output to stderr when `RUST_LOG` is set (for replaying a seed).
#[cfg(madsim)]
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
}
