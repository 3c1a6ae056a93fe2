//! Every bound on a queue or a buffer, in one place, with what happens when it is reached.
//!
//! Nothing that a client or a peer can fill grows without bound. Where a queue is full the
//! sender either waits (which pushes back on the TCP connection it reads from, so a fast
//! client slows down instead of growing the daemon's memory) or the item is dropped where the
//! protocol already recovers from a lost message (chain messages are resent by the replica
//! on every tick, and transfer windows are resent until acknowledged).

use std::time::Duration;

/// Inputs waiting for a daemon's actor (client requests, chain messages, configurations). A
/// connection's reader waits while it is full.
pub const EVENT_QUEUE: usize = 4096;

/// Most inputs the actor takes in one batch (one sync for all of them).
pub const ACTOR_BATCH: usize = 1024;

/// Chain and transfer messages waiting to be written to one peer daemon. When full, further
/// messages to that peer are dropped and the replica resends them on its next tick; the actor
/// never waits for a peer (two daemons waiting for each other would deadlock).
pub const PEER_QUEUE: usize = 16_384;
/// Most bytes (encoded) queued for one peer; a message beyond it is dropped and resent later.
pub const PEER_QUEUE_BYTES: usize = 64 << 20;

/// Frames waiting to be written on one connection. A server whose client does not read its
/// replies until this many are queued closes the connection; a client waits to send.
pub const CONNECTION_QUEUE: usize = 4096;

/// Reports of completed transfers waiting to go to the coordinator; when full, a report is
/// dropped and sent again on the next tick.
pub const REPORT_QUEUE: usize = 64;

/// Chain messages stamped with a configuration newer than the daemon's, kept until it has
/// that configuration; beyond this many they are dropped (their senders resend them).
pub const EARLY_MESSAGES: usize = 100_000;
/// Most state-transfer windows and acknowledgements (up to about 1 MiB each) among them.
pub const EARLY_WINDOWS: usize = 8;

/// Most bytes of keys a joining daemon remembers as written during its joins beyond where
/// each transfer has got (see `daemon::transfer`); further writes to unverified keys wait
/// for the transfer to pass them.
pub const JOIN_LIVE_BYTES: usize = 4 << 20;

/// Connections a server keeps open at once (clients, peers and admin tools together). A
/// connection beyond it is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 10_000;

/// How long a new connection may take to send its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may stay silent between frames before the server closes it (clients
/// reconnect by themselves).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a frame may take to arrive once its first bytes have; and how long a slice of
/// what is written (`protocol::frame::WRITE_SLICE`) may wait for the peer to take it, before
/// the connection ends.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// How long after its first attempt a write may still be applied as new, in seconds: a
/// client stops retrying by then, and a head refuses an older request that it has no record
/// of with TIMEOUT (outcome unknown). The simulation's runs are short, so its window is too.
pub const RETRY_WINDOW_SECS: u64 = if cfg!(madsim) { 10 } else { 300 };

/// How far apart the wall clocks of clients and daemons are assumed to be at most, in seconds
/// (NTP keeps them within milliseconds; the simulation's drift stays within a second).
pub const CLOCK_SKEW_SECS: u64 = if cfg!(madsim) { 1 } else { 60 };

/// How long a retry record is kept after the newest record of its object, in seconds: longer
/// than any request can be retried, measured on any two clocks. A retry that could find its
/// record missing began more than `RECORD_HORIZON_SECS` before the newest record was written
/// by a head's clock, so more than `RETRY_WINDOW_SECS + CLOCK_SKEW_SECS` before by the
/// client's, and is refused (see `daemon::record`).
pub const RECORD_HORIZON_SECS: u64 = RETRY_WINDOW_SECS + 3 * CLOCK_SKEW_SECS + 5;

/// How long a search may last, at most: a subspace region keeps a key's former values this
/// long after the key's head is known to have committed what replaced them, so a search that
/// began while the head still showed them finds them (`hyperspace::entry`). The simulation's
/// runs are short, so its life is too.
pub const SEARCH_LIFE: Duration = Duration::from_secs(if cfg!(madsim) { 10 } else { 120 });

/// The most keys a subspace member notes to settle at once (more are found by its sweep).
pub const GC_KEYS: usize = 100_000;

/// The most keys one settling query asks about.
pub const SETTLE_BATCH: usize = 1024;

/// The most reads of one key that wait at its head for a held write shown after a restart
/// (`daemon::replica::held`); more are answered RECONFIGURE, and the client asks again.
pub const HELD_READERS: usize = 1024;

/// The most bytes of objects a daemon keeps for reads answered without its actor
/// (`daemon::read_cache`); the objects cached longest go first.
pub const READ_CACHE_BYTES: usize = 32 << 20;

/// Objects whose record is larger than this are not cached for reads.
pub const READ_CACHE_OBJECT_BYTES: usize = 64 << 10;
