//! The deterministic simulation harness for hyperdex-rs.
//!
//! Everything in this crate runs only when built with `RUSTFLAGS="--cfg madsim"`: the whole
//! cluster (coordinator, daemons, clients, network, clocks and disks) then runs inside one
//! process under madsim, driven by a seed. Without `--cfg madsim` the crate is empty so that
//! an ordinary `cargo build` of the workspace stays fast.
