//! raft's log lines (it logs through `slog`) into this process's `tracing` log: its warnings
//! and errors as such, everything else at debug level under `hyperdex::raft`.

use std::fmt::Write as _;

use slog::{Drain, Level, OwnedKVList, Record, Serializer, KV};

/// Collects a record's key-value pairs as ` key=value`.
struct Pairs(String);

impl Serializer for Pairs {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

struct ToTracing;

impl Drain for ToTracing {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut pairs = Pairs(String::new());
        let _ = record.kv().serialize(record, &mut pairs);
        let _ = values.serialize(record, &mut pairs);
        let line = format!("{}{}", record.msg(), pairs.0);
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "hyperdex::raft", "{line}"),
            Level::Warning => tracing::warn!(target: "hyperdex::raft", "{line}"),
            _ => tracing::debug!(target: "hyperdex::raft", "{line}"),
        }
        Ok(())
    }
}

/// The logger raft gets.
pub fn logger() -> slog::Logger {
    slog::Logger::root(ToTracing.fuse(), slog::o!())
}
