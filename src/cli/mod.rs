//! The `hyperdex` command line: HyperDex's own command lines for the coordinator, the daemons
//! and the admin tools, data commands for shell users, and `hyperdex local`.
//!
//! Flags follow HyperDex (`--flag=value` and `--flag value` both parse). Admin and data
//! commands take the coordinator as `-h/--host` and `-p/--port` (127.0.0.1:1982), so their
//! help is `--help` only. Differences from HyperDex, on purpose: the default listen address is
//! 127.0.0.1 rather than a routable interface (safer); without `-f` a process detaches by
//! starting itself again in the background (logging to its data directory) rather than
//! forking.
//!
//! Data commands take values as JSON, converted through the space's schema (an array becomes
//! a list or a set as the attribute's type says). Exit status: 0 on SUCCESS, 1 on NOTFOUND
//! or CMPFAIL (`not found` / `comparison failed` on stderr), 2 on any other error, with the
//! return code's name.

pub mod backup;
pub mod data;
pub mod local;
mod output;
mod process;
pub mod security;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args, Subcommand};
use hyperdex_model::{parse_space, ReturnCode};

use crate::admin::Admin;
use crate::client::{Client, ClientError, ClientOptions};
use crate::coordinator::CoordinatorOptions;
use crate::daemon::DaemonOptions;
pub use output::{fail, print_out};
pub use process::run_daemon;
use process::{detach, run_coordinator, write_pidfile};

/// The coordinator's address, as HyperDex's admin tools take it.
#[derive(Args, Debug, Clone)]
pub struct CoordinatorAddr {
    /// Coordinator host, or several coordinators: HOST or HOST:PORT, separated by commas
    #[arg(short = 'h', long = "host", default_value = "127.0.0.1")]
    pub host: String,
    /// Coordinator port.
    #[arg(short = 'p', long = "port", default_value_t = 1982)]
    pub port: u16,
    /// PEM certificate authority to check the servers' certificates against, for a cluster
    /// that speaks TLS.
    #[arg(long = "tls-ca", env = "HYPERDEX_TLS_CA", value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,
    /// Print help.
    #[arg(long = "help", action = ArgAction::Help)]
    help: Option<bool>,
}

impl CoordinatorAddr {
    pub fn addr(&self) -> String {
        crate::coordinators::with_port(&self.host, self.port)
    }

    /// Client options for these flags (TLS, when an authority is named).
    pub fn client_options(&self) -> Result<ClientOptions, ClientError> {
        let tls = security::client_tls(self.tls_ca.as_deref())
            .map_err(|e| ClientError::new(ReturnCode::CoordFail, e))?;
        Ok(ClientOptions {
            tls,
            ..ClientOptions::default()
        })
    }
}

/// The coordinator's address and the cluster secret, as admin commands take them.
#[derive(Args, Debug, Clone)]
pub struct AdminAddr {
    #[command(flatten)]
    pub coord: CoordinatorAddr,
    /// File with the cluster secret, if the cluster has one.
    #[arg(
        long = "cluster-secret-file",
        env = "HYPERDEX_CLUSTER_SECRET_FILE",
        value_name = "PATH"
    )]
    pub cluster_secret_file: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ProcessFlags {
    /// Run in the foreground instead of detaching.
    #[arg(short = 'f', long = "foreground")]
    pub foreground: bool,
    /// Detach and run in the background (the default without -f).
    #[arg(short = 'd', long = "daemon", conflicts_with = "foreground")]
    pub daemon: bool,
    /// Directory for the log file when detached (default: the data directory).
    #[arg(short = 'L', long = "log")]
    pub log: Option<PathBuf>,
    /// Write the process id to this file.
    #[arg(long = "pidfile")]
    pub pidfile: Option<PathBuf>,
    /// Serve metrics in Prometheus's text format on http://HOST:PORT/metrics.
    #[arg(long = "metrics-listen", value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
    /// Created once the process listens (how a detaching start learns that its background
    /// process is up).
    #[arg(long = "ready-file", hide = true)]
    pub ready_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a coordinator.
    Coordinator {
        #[command(flatten)]
        process: ProcessFlags,
        /// Address to listen on.
        #[arg(short = 'l', long = "listen", default_value = "127.0.0.1")]
        listen: String,
        /// Port to listen on.
        #[arg(short = 'p', long = "listen-port", default_value_t = 1982)]
        listen_port: u16,
        /// Directory for the coordinator's state.
        #[arg(short = 'D', long = "data", default_value = ".")]
        data: PathBuf,
        /// Join the coordinators through the one at this host (HOST or HOST:PORT; default
        /// 127.0.0.1 when only -P is given; a coordinator that already has a log ignores it).
        #[arg(short = 'c', long = "connect")]
        connect: Option<String>,
        /// Port of the coordinator to join (default 1982; either flag joins).
        #[arg(short = 'P', long = "connect-port")]
        connect_port: Option<u16>,
        /// The address the other coordinators, daemons and clients reach this one at
        /// (HOST:PORT), when it is not the listening one.
        #[arg(long = "advertise")]
        advertise: Option<String>,
        #[command(flatten)]
        security: security::SecurityFlags,
    },
    /// Start a daemon (a storage server).
    Daemon {
        #[command(flatten)]
        process: ProcessFlags,
        /// Address to listen on.
        #[arg(short = 'l', long = "listen", default_value = "127.0.0.1")]
        listen: String,
        /// Port to listen on.
        #[arg(short = 'p', long = "listen-port", default_value_t = 2012)]
        listen_port: u16,
        /// Coordinator host, or several coordinators: HOST or HOST:PORT, separated by commas
        #[arg(short = 'c', long = "coordinator", default_value = "127.0.0.1")]
        coordinator: String,
        /// Coordinator port.
        #[arg(short = 'P', long = "coordinator-port", default_value_t = 1982)]
        coordinator_port: u16,
        /// Directory for the daemon's data (created if missing).
        #[arg(short = 'D', long = "data", default_value = ".")]
        data: PathBuf,
        /// Worker threads (default: the number of CPUs).
        #[arg(short = 't', long = "threads")]
        threads: Option<usize>,
        /// Seconds to keep trying to reach the coordinator at start-up.
        #[arg(long = "coordinator-timeout", default_value_t = 10)]
        coordinator_timeout: u64,
        /// The address other servers and clients reach this daemon at (HOST:PORT), when it is
        /// not the listening one (a wildcard listen address such as 0.0.0.0, a NAT, a
        /// container).
        #[arg(long = "advertise")]
        advertise: Option<String>,
        /// Megabytes per second the state transfers this daemon sends may use, all
        /// together (0: unlimited).
        #[arg(long = "transfer-rate", default_value_t = 64)]
        transfer_rate: u64,
        /// Most objects per state-transfer window (each window also stops at about 1 MB).
        #[arg(long = "transfer-window", default_value_t = crate::daemon::transfer::TRANSFER_WINDOW)]
        transfer_window: usize,
        #[command(flatten)]
        security: security::SecurityFlags,
    },
    /// Add a space; the description is read from FILE or standard input.
    #[command(name = "add-space", disable_help_flag = true)]
    AddSpace {
        #[command(flatten)]
        coord: AdminAddr,
        /// A file with the space description (default: standard input).
        file: Option<PathBuf>,
    },
    /// Remove spaces.
    #[command(name = "rm-space", disable_help_flag = true)]
    RmSpace {
        #[command(flatten)]
        coord: AdminAddr,
        #[arg(required = true)]
        /// The spaces to remove.
        names: Vec<String>,
    },
    /// List the spaces.
    #[command(name = "list-spaces", disable_help_flag = true)]
    ListSpaces {
        #[command(flatten)]
        coord: AdminAddr,
        /// Print a JSON array instead of one name per line.
        #[arg(long)]
        json: bool,
    },
    /// Show the servers and every region's chain.
    #[command(name = "show-config", disable_help_flag = true)]
    ShowConfig {
        #[command(flatten)]
        coord: AdminAddr,
        /// Print JSON: {"config": ..., "transfers": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Check a space description without a cluster; reads FILE or standard input.
    #[command(name = "validate-space")]
    ValidateSpace {
        /// A file with the space description (default: standard input).
        file: Option<PathBuf>,
    },
    /// Wait until every region has its replicas.
    #[command(name = "wait-until-stable", disable_help_flag = true)]
    WaitUntilStable {
        #[command(flatten)]
        coord: AdminAddr,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Take a coordinator out of the replicated log (its id as show-config lists it).
    #[command(name = "rm-coordinator", disable_help_flag = true)]
    RmCoordinator {
        #[command(flatten)]
        coord: AdminAddr,
        /// The coordinator's id (as show-config prints it).
        id: u64,
    },
    /// Treat a server as failed.
    #[command(name = "server-kill", disable_help_flag = true)]
    ServerKill {
        #[command(flatten)]
        coord: AdminAddr,
        /// The server's id (as show-config prints it).
        id: u64,
    },
    /// Change how many failures a space tolerates (replicas = N + 1).
    #[command(name = "fault-tolerance", disable_help_flag = true)]
    FaultTolerance {
        #[command(flatten)]
        coord: AdminAddr,
        /// The space.
        space: String,
        /// Failures each region must survive (replicas: N + 1).
        tolerate: u32,
    },
    /// Refuse every write (READONLY) until set-read-write; reads go on.
    #[command(name = "set-read-only", disable_help_flag = true)]
    SetReadOnly {
        #[command(flatten)]
        coord: AdminAddr,
    },
    /// Switch read-only mode on or off (as set-read-only and set-read-write do).
    #[command(name = "read-only", disable_help_flag = true)]
    ReadOnly {
        #[command(flatten)]
        coord: AdminAddr,
        /// on: refuse every write (READONLY), reads go on; off: back to normal.
        #[arg(value_parser = ["on", "off"])]
        mode: String,
    },
    /// End read-only mode.
    #[command(name = "set-read-write", disable_help_flag = true)]
    SetReadWrite {
        #[command(flatten)]
        coord: AdminAddr,
    },
    /// Add a secondary index on an attribute (built in the background).
    #[command(name = "add-index", disable_help_flag = true)]
    AddIndex {
        #[command(flatten)]
        coord: AdminAddr,
        /// The space.
        space: String,
        /// The attribute to index.
        attribute: String,
    },
    /// Remove an index, by the identifier list-indices prints.
    #[command(name = "rm-index", disable_help_flag = true)]
    RmIndex {
        #[command(flatten)]
        coord: AdminAddr,
        /// The index's identifier.
        id: u64,
    },
    /// Print a space's indexes: identifier and attribute, one per line.
    #[command(name = "list-indices", disable_help_flag = true)]
    ListIndices {
        #[command(flatten)]
        coord: AdminAddr,
        /// The space.
        space: String,
    },
    /// Write a consistent backup of every space to DIR (the cluster is read-only meanwhile).
    #[command(name = "backup", disable_help_flag = true)]
    Backup {
        #[command(flatten)]
        coord: AdminAddr,
        /// A new or empty directory.
        dir: PathBuf,
    },
    /// Load a backup made by `hyperdex backup` into the cluster (its spaces must not exist).
    #[command(name = "restore", disable_help_flag = true)]
    Restore {
        #[command(flatten)]
        coord: AdminAddr,
        /// The backup's directory.
        dir: PathBuf,
    },
    /// Remove a server from the cluster.
    #[command(name = "server-forget", disable_help_flag = true)]
    ServerForget {
        #[command(flatten)]
        coord: AdminAddr,
        /// The server's id (as show-config prints it).
        id: u64,
    },
    #[command(flatten)]
    Data(data::DataCommand),
    /// Run a coordinator and daemons on this machine, in one process.
    Local(local::LocalArgs),
}

/// Prints an error the way every command does and returns exit status 2.
fn read_input(file: Option<&Path>) -> Result<String, String> {
    match file {
        Some(f) => {
            std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))
        }
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            Ok(s)
        }
    }
}

pub fn init_logging(default: &str, file: Option<PathBuf>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file.and_then(|f| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(f)
            .ok()
    }) {
        Some(f) => {
            let _ = builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .try_init();
        }
        None => {
            let _ = builder.with_writer(std::io::stderr).try_init();
        }
    }
}

/// A multi-threaded runtime with `threads` workers (default: one per CPU).
pub fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if let Some(t) = threads {
        b.worker_threads(t.max(1));
    }
    b.build()
}

/// The worker threads a command asks for (`hyperdex daemon -t`).
pub fn threads(command: &Command) -> Option<usize> {
    match command {
        Command::Daemon { threads, .. } => *threads,
        _ => None,
    }
}

/// The options an admin command connects with: the coordinator's, with the cluster secret.
fn admin_options(coord: &AdminAddr) -> Result<ClientOptions, ExitCode> {
    let secret = security::load_secret(coord.cluster_secret_file.as_deref()).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })?;
    Ok(ClientOptions {
        secret,
        ..coord.coord.client_options().map_err(|e| fail(&e))?
    })
}

async fn admin(coord: &AdminAddr) -> Result<Admin, ExitCode> {
    Admin::connect_addr(&coord.coord.addr(), admin_options(coord)?)
        .await
        .map_err(|e| fail(&e))
}

/// A coordinator's options from its command line: security, `--advertise`, and the
/// coordinator to join through.
fn coordinator_options(
    listen: &str,
    (connect, connect_port): (Option<String>, Option<u16>),
    advertise: Option<String>,
    security: &security::SecurityFlags,
) -> Result<CoordinatorOptions, String> {
    process::check_advertise(advertise.as_deref())?;
    let secret = security.server_secret(listen)?;
    let tls = security.server_tls()?;
    Ok(CoordinatorOptions {
        secret,
        tls: tls.accept,
        peer_tls: tls.connect,
        advertise,
        // Either flag joins (HyperDex's scripts give only the port): the host defaults to
        // 127.0.0.1, the port to 1982.
        join: (connect.is_some() || connect_port.is_some()).then(|| {
            crate::coordinators::with_port(
                connect.as_deref().unwrap_or("127.0.0.1"),
                connect_port.unwrap_or(1982),
            )
        }),
        ..CoordinatorOptions::default()
    })
}

/// Runs one command to its end.
pub async fn run(command: Command) -> ExitCode {
    match command {
        Command::Coordinator {
            process,
            listen,
            listen_port,
            data,
            connect,
            connect_port,
            advertise,
            security,
        } => {
            let join = (connect, connect_port);
            let opts = match coordinator_options(&listen, join, advertise, &security) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            run_coordinator(&process, (&listen, listen_port), &data, opts).await
        }
        Command::Daemon {
            process,
            listen,
            listen_port,
            coordinator,
            coordinator_port,
            data,
            threads: _,
            coordinator_timeout,
            advertise,
            transfer_rate,
            transfer_window,
            security,
        } => {
            if !process.foreground {
                return detach(&process, &data, "daemon").await;
            }
            init_logging("info", None);
            if let Err(e) = write_pidfile(&process) {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            let (secret, tls) = match security
                .server_secret(&listen)
                .and_then(|s| Ok((s, security.server_tls()?)))
            {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = DaemonOptions {
                coordinator: crate::coordinators::with_port(&coordinator, coordinator_port),
                startup_timeout: Duration::from_secs(coordinator_timeout),
                transfer_rate: transfer_rate << 20,
                transfer_window,
                secret,
                tls,
                ..DaemonOptions::default()
            };
            run_daemon(
                &process,
                (&listen, listen_port, advertise.as_deref()),
                &data,
                opts,
            )
            .await
        }
        Command::ValidateSpace { file } => validate_space(file.as_deref()),
        Command::Data(cmd) => {
            init_logging("warn", None);
            data::run(cmd).await
        }
        Command::Local(args) => local::run(args).await,
        admin_command => {
            init_logging("warn", None);
            run_admin(admin_command).await
        }
    }
}

/// `hyperdex validate-space`: parses offline and prints the canonical description.
fn validate_space(file: Option<&Path>) -> ExitCode {
    let text = match read_input(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match parse_space(&text) {
        Ok(space) => {
            crate::out!("{space}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: bad space description: {e} [{}]",
                ReturnCode::BadSpace
            );
            ExitCode::from(2)
        }
    }
}

/// The admin commands, through the coordinator.
async fn run_admin(command: Command) -> ExitCode {
    // A space description is read (once: it may be standard input) and checked before the
    // coordinator is contacted.
    let mut description = String::new();
    if let Command::AddSpace { file, .. } = &command {
        description = match read_input(file.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        if let Err(e) = parse_space(&description) {
            eprintln!(
                "error: bad space description: {e} [{}]",
                ReturnCode::BadSpace
            );
            return ExitCode::from(2);
        }
    }
    let coord = match &command {
        Command::AddSpace { coord, .. }
        | Command::RmSpace { coord, .. }
        | Command::ListSpaces { coord, .. }
        | Command::ShowConfig { coord, .. }
        | Command::WaitUntilStable { coord, .. }
        | Command::ServerKill { coord, .. }
        | Command::RmCoordinator { coord, .. }
        | Command::FaultTolerance { coord, .. }
        | Command::SetReadOnly { coord }
        | Command::SetReadWrite { coord }
        | Command::ReadOnly { coord, .. }
        | Command::AddIndex { coord, .. }
        | Command::RmIndex { coord, .. }
        | Command::ListIndices { coord, .. }
        | Command::Backup { coord, .. }
        | Command::Restore { coord, .. }
        | Command::ServerForget { coord, .. } => coord.clone(),
        _ => return ExitCode::from(2),
    };
    let admin = match admin(&coord).await {
        Ok(a) => a,
        Err(code) => return code,
    };
    if let Command::Backup { dir, .. } | Command::Restore { dir, .. } = &command {
        let restore = matches!(command, Command::Restore { .. });
        return backup_or_restore(&admin, &coord, dir, restore).await;
    }
    match admin_call(&admin, command, &description).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

async fn backup_or_restore(
    admin: &Admin,
    coord: &AdminAddr,
    dir: &std::path::Path,
    restore: bool,
) -> ExitCode {
    let opts = match admin_options(coord) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let client = match Client::connect_with(&coord.coord.addr(), opts).await {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let done = if restore {
        backup::restore(admin, &client, dir).await
    } else {
        backup::backup(admin, &client, dir).await
    };
    match done {
        Ok(report) => {
            crate::out!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Pretty JSON (every type printed here has string map keys, so it cannot fail).
fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

async fn admin_call(admin: &Admin, command: Command, description: &str) -> Result<(), ClientError> {
    match command {
        Command::AddSpace { .. } => admin.add_space(description).await,
        Command::RmSpace { names, .. } => {
            for n in names {
                admin.rm_space(&n).await?;
            }
            Ok(())
        }
        Command::ListSpaces { json: true, .. } => {
            crate::outln!("{}", json(&admin.list_spaces().await?));
            Ok(())
        }
        Command::ListSpaces { .. } => {
            for s in admin.list_spaces().await? {
                crate::outln!("{s}");
            }
            Ok(())
        }
        Command::ShowConfig { json: true, .. } => {
            let both = serde_json::json!({
                "config": admin.config().await?,
                "transfers": admin.transfers().await?,
            });
            crate::outln!("{}", json(&both));
            Ok(())
        }
        Command::ShowConfig { .. } => {
            crate::out!("{}", admin.config().await?);
            let transfers = admin.transfers().await?;
            if !transfers.is_empty() {
                crate::outln!("transfers in progress:");
                for line in crate::coordinator::describe_transfers(&transfers) {
                    crate::outln!("  {line}");
                }
            }
            Ok(())
        }
        Command::WaitUntilStable { timeout, .. } => {
            admin.wait_until_stable(Duration::from_secs(timeout)).await
        }
        Command::ServerKill { id, .. } => admin.server_kill(id).await,
        Command::RmCoordinator { id, .. } => admin.rm_coordinator(id).await,
        Command::FaultTolerance {
            space, tolerate, ..
        } => admin.fault_tolerance(&space, tolerate).await,
        Command::ServerForget { id, .. } => admin.server_forget(id).await,
        Command::SetReadOnly { .. } => admin.read_only(true).await,
        Command::SetReadWrite { .. } => admin.read_only(false).await,
        Command::ReadOnly { mode, .. } => admin.read_only(mode == "on").await,
        Command::AddIndex {
            space, attribute, ..
        } => admin.add_index(&space, &attribute).await,
        Command::RmIndex { id, .. } => admin.rm_index(id).await,
        Command::ListIndices { space, .. } => {
            for (id, attribute) in admin.list_indices(&space).await? {
                crate::outln!("{id} {attribute}");
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
