//! The runtime seam: the only module that chooses between tokio and madsim.
//!
//! Everything in the cluster that spawns a task, sleeps, reads the clock, opens a socket or
//! draws a random number goes through here. In production (`cargo build`) that is tokio and
//! the operating system; under `RUSTFLAGS="--cfg madsim"` the `tokio` dependency is
//! madsim-tokio's simulated runtime, so time is virtual, the network is simulated and
//! randomness comes from the simulation's seed. The rest of the crate never names madsim,
//! never calls `std::thread` or `std::time::Instant::now`, and never iterates a HashMap where
//! order could leak into behaviour, which is what makes a simulated run replayable.
//!
//! What other files may name of tokio, precisely: its synchronization primitives
//! (`tokio::sync`: channels, `watch`, `Notify`, `Mutex`), its I/O traits and `split`
//! (`tokio::io`) and `tokio::select!` (always `biased;`, so the choice is deterministic);
//! madsim-tokio provides the same items under the same names. Spawning, sleeping, time,
//! sockets and randomness come from here. The command line (`cli`) and the benchmark run only
//! in production and build the tokio runtime (and use its signals) themselves.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod knobs;

use std::future::Future;
use std::time::Duration;

pub use tokio::net::{TcpListener, TcpStream};
pub use tokio::time::Instant;

/// Spawns a task on the current runtime (a simulated node's runtime under madsim).
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future)
}

/// Runs `f`, which may block on the disk for a while (a checkpoint to wait for, a scan), in
/// a task: on a multi-threaded runtime the worker first hands its other tasks to another
/// thread, so that they do not wait behind it. Elsewhere (a single-threaded runtime, the
/// simulation, where disks never block) it just runs `f`.
#[cfg(not(madsim))]
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Runs `f` (see the production version: the simulation's disks never block).
#[cfg(madsim)]
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Lets the runtime's other tasks run before the caller goes on, in production. Under the
/// simulation it does nothing: a simulated node's tasks all run on one thread anyway, and the
/// runs stay as they were.
pub async fn yield_now() {
    #[cfg(not(madsim))]
    tokio::task::yield_now().await;
}

/// Runs `future` where it may block on disk I/O without stalling other tasks: on a thread of
/// its own with a single-threaded runtime in production, as an ordinary task under the
/// simulation (where threads would escape it, and simulated disks never block).
#[cfg(not(madsim))]
pub fn spawn_dedicated<F>(name: &str, future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let spawned = runtime.map(|rt| {
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || rt.block_on(future))
    });
    if let Err(e) | Ok(Err(e)) = spawned {
        tracing::error!("cannot start the {name} thread: {e}");
    }
}

/// Runs `future` where it may block on disk I/O without stalling other tasks: on a thread of
/// its own with a single-threaded runtime in production, as an ordinary task under the
/// simulation (where threads would escape it, and simulated disks never block).
#[cfg(madsim)]
pub fn spawn_dedicated<F>(_name: &str, future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    spawn(future);
}

/// Sleeps for `d` on this node's clock (virtual time under the simulation, where clocks may
/// run at their own rates: see [`knobs`]).
pub async fn sleep(d: Duration) {
    tokio::time::sleep(knobs::to_real(d)).await
}

/// Runs `future` for at most `d` on this node's clock; `None` when the time ran out.
pub async fn timeout<F: Future>(d: Duration, future: F) -> Option<F::Output> {
    tokio::time::timeout(knobs::to_real(d), future).await.ok()
}

/// The current instant on this node's clock (virtual under the simulation).
pub fn now() -> Instant {
    knobs::local_now()
}

/// Where a disk operation would take time: under the simulation, a pause of 50 µs to 5 ms
/// of virtual time (so a crash can land between staging, syncing and replying); nothing in
/// production, where the sync itself takes the time.
pub async fn disk_pause() {
    #[cfg(madsim)]
    {
        let micros = 50 + random_u64() % 4950;
        sleep(Duration::from_micros(micros)).await;
    }
}

/// Seconds since the Unix epoch (virtual under the simulation, which also intercepts the
/// system clock).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A random 64-bit number: from the simulation's seeded generator under madsim, from the
/// operating system's randomness otherwise.
#[cfg(madsim)]
pub fn random_u64() -> u64 {
    madsim::rand::random()
}

/// A random 64-bit number: from the simulation's seeded generator under madsim, from the
/// operating system's randomness otherwise.
#[cfg(not(madsim))]
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is keyed from the OS's randomness once per process; mixing in a counter
    // and the clock gives distinct values on every call.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// Connects to `addr` (`host:port`), giving up after `d`.
pub async fn connect(addr: &str, d: Duration) -> std::io::Result<TcpStream> {
    match timeout(d, TcpStream::connect(addr)).await {
        Some(r) => {
            let s = r?;
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        None => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("connecting to {addr} timed out after {d:?}"),
        )),
    }
}

/// Binds a listener on `addr` (`host:port`; port 0 picks a free port).
pub async fn listen(addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod select_tests {
    use std::path::Path;

    fn selects_in(dir: &Path, unbiased: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                selects_in(&path, unbiased);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                // Spelled in two, so this test does not find itself.
                let needle = ["select", "! {"].concat();
                for (i, part) in text.split(needle.as_str()).enumerate().skip(1) {
                    if !part.trim_start().starts_with("biased;") {
                        unbiased.push(format!("{} (select {i})", path.display()));
                    }
                }
            }
        }
    }

    /// An unbiased `select!` picks its branch with tokio's own generator, which the simulation
    /// does not seed: a seed's run would then depend on the runs before it in the process.
    #[test]
    fn every_select_is_biased() {
        let mut unbiased = Vec::new();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for dir in ["src", "sim/src"] {
            selects_in(&root.join(dir), &mut unbiased);
        }
        assert!(unbiased.is_empty(), "select! without biased: {unbiased:?}");
    }
}
