//! Running the coordinator and the daemon as processes: detaching into the background, the
//! pid file, binding, and signals.

use std::path::Path;
use std::process::ExitCode;

use super::{init_logging, ProcessFlags};
use crate::coordinator::CoordinatorOptions;
use crate::daemon::DaemonOptions;
use crate::storage::RedbStore;
use crate::{coordinator, daemon, rt};

/// Without `-f`: start this same command again with `-f`, in the background, logging to a
/// file, and return.
pub(super) fn detach(process: &ProcessFlags, data: &Path, what: &str) -> ExitCode {
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
    args.push("--foreground".into());
    let err_log = log.try_clone();
    let mut cmd = std::process::Command::new(exe);
    cmd.args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(log);
    if let Ok(e) = err_log {
        cmd.stderr(e);
    }
    match cmd.spawn() {
        Ok(child) => {
            println!(
                "started {what} (pid {}), logging to {}",
                child.id(),
                log_path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot start the {what} in the background: {e}");
            ExitCode::from(2)
        }
    }
}

pub(super) fn write_pidfile(process: &ProcessFlags) -> Result<(), String> {
    if let Some(p) = &process.pidfile {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write pidfile {}: {e}", p.display()))?;
    }
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
        return detach(process, data, "coordinator");
    }
    init_logging("info", None);
    if let Err(e) = write_pidfile(process) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let store = match RedbStore::open(data) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = format!("{listen}:{listen_port}");
    let listener = match rt::listen(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = CoordinatorOptions {
        listen: addr,
        ..opts
    };
    match coordinator::run(listener, Box::new(store), opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Opens the data directory, binds, and runs a daemon with `opts` (its address filled in
/// here) until it fails.
pub async fn run_daemon(listen: &str, port: u16, data: &Path, opts: DaemonOptions) -> ExitCode {
    let store = match RedbStore::open(data) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let bind = format!("{listen}:{port}");
    let listener = match rt::listen(&bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {bind}: {e}");
            return ExitCode::from(2);
        }
    };
    let address = match listener.local_addr() {
        Ok(a) => format!("{listen}:{}", a.port()),
        Err(_) => bind,
    };
    let opts = DaemonOptions { address, ..opts };
    match daemon::run(listener, Box::new(store), opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
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
