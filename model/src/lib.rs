//! # hyperdex-model: the specification of hyperdex-rs
//!
//! This crate says what every HyperDex operation means and what one correct, sequential copy
//! of the database answers. It is pure: no I/O, no async, no clocks, no randomness. The
//! distributed system (the `hyperdex` crate) reuses [`apply::apply`] to compute new objects, and
//! its simulation checks that the cluster, under failures, answers like [`db::Model`].
//!
//! - [`value`]: datatypes, values, defaults, ordering, coercion, encoding;
//! - [`schema`]: spaces and the space-description language;
//! - [`op`]: every client call as data, predicates, return codes, replies;
//! - [`mod@apply`]: the semantics of a write, all-or-nothing;
//! - [`db`]: the model database on persistent maps;
//! - [`history`]: recorded histories and the linearizability checker;
//! - [`observe`]: what searches and group operations say about each key, for the checker.

pub mod apply;
pub mod db;
pub mod history;
pub mod observe;
pub mod op;
pub mod schema;
pub mod value;

pub use apply::{apply, Failure};
pub use db::Model;
pub use op::{
    Check, Existence, Func, Funcall, KeyWrite, Microtransaction, NumOp, Object, Operation,
    Predicate, Reply, ReturnCode,
};
pub use schema::{parse_space, Attribute, ParseError, Space, Subspace};
pub use value::{Datatype, Document, Primitive, TimeUnit, Value};
