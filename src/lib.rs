//! # hyperdex: a HyperDex-compatible searchable, replicated key-value store
//!
//! The semantics of every operation live in [`hyperdex_model`]; this crate is the distributed
//! system around them.

pub use hyperdex_model as model;
