//! # hyperdex: a HyperDex-compatible searchable, replicated key-value store
//!
//! The semantics of every operation live in [`hyperdex_model`]; this crate is the distributed
//! system around them:
//!
//! - [`rt`]: the runtime seam (tokio in production, madsim in simulation);
//! - [`protocol`] and [`net`]: messages, frames, connections;
//! - [`config`]: the cluster configuration, placement of keys on regions, timing;
//! - [`limits`]: every bound on a queue or a buffer;
//! - [`coordinator`]: the configuration service;
//! - [`daemon`]: storage servers with chain replication;
//! - [`storage`]: the `Store` trait, on redb or on a simulated disk;
//! - [`client`] and [`admin`]: the Rust clients;
//! - [`cli`]: the `hyperdex` command line.

pub mod admin;
pub mod bugs;
pub mod cli;
pub mod client;
pub mod config;
pub mod coordinator;
pub mod coordinators;
pub mod daemon;
pub mod error;
pub mod hyperspace;
pub mod limits;
pub mod macaroon;
pub mod metrics;
pub mod net;
pub mod probe;
pub mod protocol;
pub mod rt;
pub mod storage;
pub mod tls;

pub use error::{Error, Result};
pub use hyperdex_model as model;
