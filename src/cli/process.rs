//! Running the coordinator and the daemon as processes: detaching into the background, the
//! pid file, binding, and signals.

use std::path::Path;
use std::sync::Arc;

use std::process::ExitCode;
use tokio::sync::Notify;

use super::{init_logging, ProcessFlags};
use crate::coordinator::CoordinatorOptions;
use crate::daemon::DaemonOptions;
use crate::storage::RedbStore;
use crate::{coordinator, daemon, rt};

/// Without `-f`: start this same command again with `-f`, in the background, logging to a
/// file, and return.
pub(super) async fn detach(process: &ProcessFlags, data: &Path, what: &str) -> ExitCode {
    let log_dir = process.log.clone().unwrap_or_else(|| data.to_path_buf());
    if let Err(e) = std::fs::create_dir_all(&log_dir) {
        eprintln!(
            "error: cannot create log directory {}: {e}",
            log_dir.display()
        );
        return ExitCode::from(2);
    }
    let log_path = log_dir.join(format!("hyperdex-{what}.log"));
    let log = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot open log file {}: {e}", log_path.display());
            return ExitCode::from(2);
        }
    };
    let Ok(exe) = std::env::current_exe() else {
        eprintln!("error: cannot find this program's path to start it in the background; use -f");
        return ExitCode::from(2);
    };
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "-d" && a != "--daemon")
        .collect();
    let ready = log_dir.join(format!(".hyperdex-{what}-{}.ready", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    args.push("--foreground".into());
    args.push("--ready-file".into());
    args.push(ready.display().to_string());
    let err_log = log.try_clone();
    let mut cmd = std::process::Command::new(exe);
    cmd.args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(log);
    if let Ok(e) = err_log {
        cmd.stderr(e);
    }
    match cmd.spawn() {
        Ok(child) => wait_ready(child, &ready, &log_path, what).await,
        Err(e) => {
            eprintln!("error: cannot start the {what} in the background: {e}");
            ExitCode::from(2)
        }
    }
}

/// How long a detaching start waits for its background process to listen.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until the background process listens (it creates `ready`) or exits (then reports
/// why, from the end of its log).
async fn wait_ready(
    mut child: std::process::Child,
    ready: &Path,
    log: &Path,
    what: &str,
) -> ExitCode {
    let start = rt::now();
    loop {
        if let Ok(addr) = std::fs::read_to_string(ready) {
            let _ = std::fs::remove_file(ready);
            crate::outln!(
                "started {what} (pid {}) on {addr}, logging to {}",
                child.id(),
                log.display()
            );
            return ExitCode::SUCCESS;
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                eprintln!(
                    "error: the {what} stopped as it started ({status}); the end of {}:",
                    log.display()
                );
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                for line in &lines[lines.len().saturating_sub(10)..] {
                    eprintln!("  {line}");
                }
                return ExitCode::from(2);
            }
            Ok(None) if rt::now().duration_since(start) < READY_TIMEOUT => {
                rt::sleep(std::time::Duration::from_millis(20)).await;
            }
            _ => {
                crate::outln!(
                    "started {what} (pid {}), not listening yet after {} s; logging to {}",
                    child.id(),
                    READY_TIMEOUT.as_secs(),
                    log.display()
                );
                return ExitCode::SUCCESS;
            }
        }
    }
}

/// Tells a detaching start that this process serves on `addr` once the returned `Notify`
/// is notified (the coordinator has read its state; the daemon has registered). The file is
/// written whole under another name and renamed, so it is never read half-written.
fn ready_when_notified(process: &ProcessFlags, addr: String) -> Arc<Notify> {
    let notify = Arc::new(Notify::new());
    if let Some(path) = process.ready_file.clone() {
        let n = notify.clone();
        rt::spawn(async move {
            n.notified().await;
            let tmp = path.with_extension("tmp");
            if let Err(e) = std::fs::write(&tmp, &addr).and_then(|()| std::fs::rename(&tmp, &path))
            {
                tracing::warn!("cannot write {}: {e}", path.display());
            }
        });
    }
    notify
}

pub(super) fn write_pidfile(process: &ProcessFlags) -> Result<(), String> {
    if let Some(p) = &process.pidfile {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write pidfile {}: {e}", p.display()))?;
    }
    Ok(())
}

/// Opens the data directory (logging how long it took: after an unclean stop the store
/// checks itself on opening, which takes time with size) and binds `bind`.
async fn open_and_bind(data: &Path, bind: &str) -> Result<(RedbStore, rt::TcpListener), String> {
    let opening = rt::now();
    let store = RedbStore::open(data).map_err(|e| e.to_string())?;
    tracing::info!(
        path = %data.display(),
        millis = rt::now().duration_since(opening).as_millis() as u64,
        "data directory opened"
    );
    let listener = rt::listen(bind)
        .await
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    Ok((store, listener))
}

/// Serves `metrics` on `addr` (`--metrics-listen`), if given, or says why it cannot.
pub(super) async fn serve_metrics(
    addr: Option<&str>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
) -> Result<(), String> {
    let Some(addr) = addr else {
        return Ok(());
    };
    let listener = rt::listen(addr)
        .await
        .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
    tracing::info!("metrics at http://{addr}/metrics");
    rt::spawn(crate::metrics::serve(listener, metrics));
    Ok(())
}

/// `hyperdex coordinator`: detaches unless `-f`, then serves until it fails.
pub(super) async fn run_coordinator(
    process: &ProcessFlags,
    (listen, listen_port): (&str, u16),
    data: &Path,
    opts: CoordinatorOptions,
) -> ExitCode {
    if !process.foreground {
        return detach(process, data, "coordinator").await;
    }
    init_logging("info", None);
    if let Err(e) = write_pidfile(process) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let addr = format!("{listen}:{listen_port}");
    let (store, listener) = match open_and_bind(data, &addr).await {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = serve_metrics(process.metrics_listen.as_deref(), opts.metrics.clone()).await {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let opts = CoordinatorOptions {
        ready: Some(ready_when_notified(process, addr.clone())),
        listen: addr,
        ..opts
    };
    tokio::select! {
        biased;
        r = coordinator::run(listener, Box::new(store), opts) => match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        () = stopped() => {
            // Every change the coordinator answered is on disk (it syncs before answering).
            tracing::info!("coordinator stopping on a signal");
            ExitCode::SUCCESS
        }
    }
}

/// Opens the data directory, binds, and runs a daemon with `opts` (its address filled in
/// here: `advertise`, or the listening address) until it fails or a signal stops it.
pub async fn run_daemon(
    process: &ProcessFlags,
    (listen, port, advertise): (&str, u16, Option<&str>),
    data: &Path,
    opts: DaemonOptions,
) -> ExitCode {
    if let Err(e) = check_advertise(advertise) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let bind = format!("{listen}:{port}");
    let (store, listener) = match open_and_bind(data, &bind).await {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let address = match (advertise, listener.local_addr()) {
        (Some(a), _) => a.to_string(),
        (None, Ok(a)) if a.ip().is_unspecified() => {
            eprintln!(
                "error: listening on {listen} (every interface) needs --advertise HOST:PORT: \
                 the address other servers and clients reach this daemon at"
            );
            return ExitCode::from(2);
        }
        (None, Ok(a)) => format!("{listen}:{}", a.port()),
        (None, Err(_)) => bind,
    };
    if let Err(e) = serve_metrics(process.metrics_listen.as_deref(), opts.metrics.clone()).await {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let (shutdown, asked) = tokio::sync::watch::channel(false);
    let opts = DaemonOptions {
        registered: Some(ready_when_notified(process, address.clone())),
        shutdown: Some(asked),
        address,
        ..opts
    };
    let run = daemon::run(listener, Box::new(store), opts);
    tokio::pin!(run);
    tokio::select! {
        biased;
        r = &mut run => match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        () = stopped() => {
            // The actor finishes its batch (replies and acknowledgements leave only after the
            // writes they vouch for are synced) and closes the store, so the next start does
            // not have to check it; requests still in flight are retried by their clients.
            tracing::info!("daemon stopping on a signal");
            let _ = shutdown.send(true);
            if rt::timeout(STOP_TIMEOUT, &mut run).await.is_none() {
                tracing::warn!("the daemon did not stop within {STOP_TIMEOUT:?}; exiting");
            }
            ExitCode::SUCCESS
        }
    }
}

/// How long a daemon asked to stop waits for its store to close.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `--advertise` must be `HOST:PORT`, an IPv6 host in brackets (`[::1]:2012`).
pub(super) fn check_advertise(advertise: Option<&str>) -> Result<(), String> {
    let Some(a) = advertise else {
        return Ok(());
    };
    let valid = a.rsplit_once(':').is_some_and(|(host, port)| {
        let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
        let plain = !host.contains([':', '[', ']']);
        !host.is_empty() && (bracketed || plain) && port.parse::<u16>().is_ok_and(|p| p != 0)
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "--advertise {a}: expected HOST:PORT (an IPv6 address in brackets: [::1]:2012)"
        ))
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn stopped() {
    #[cfg(all(unix, not(madsim)))]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                biased;
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
