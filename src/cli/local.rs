//! `hyperdex local`: a coordinator and N daemons on this machine, in one process, for trying
//! HyperDex out. The coordinator listens on the usual port (1982) unless told otherwise, so
//! the tutorials' `Client('127.0.0.1', 1982)` works unchanged; daemons take free ports. Data
//! goes to `--data` (kept) or to a temporary directory (removed on Ctrl-C).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::client::{fetch_config, ClientOptions};
use crate::config::Timing;
use crate::coordinator::{self, CoordinatorOptions};
use crate::daemon::{self, DaemonOptions};
use crate::rt;
use crate::storage::RedbStore;

#[derive(Args, Debug)]
pub struct LocalArgs {
    /// Number of daemons.
    #[arg(long, default_value_t = 3)]
    pub daemons: usize,
    /// Directory for all data (kept after exit); default: a temporary directory.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub listen: String,
    /// Coordinator port (0 picks a free one).
    #[arg(long, default_value_t = 1982)]
    pub port: u16,
    /// Serve metrics: the coordinator's on http://HOST:PORT/metrics, daemon N's on port
    /// PORT + N.
    #[arg(long = "metrics-listen", value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
    /// Heartbeats, leases and failure detection N times slower (1 to 20), for a cluster run
    /// under a profiler such as valgrind
    // So that it does not take its own slowness for failed servers. The daemons' tick (lost
    // chain messages resent, committed writes' records deleted) slows with it; client
    // timeouts do not. At most 20: a coordinator may hold an administrative call until
    // every lease on the old configuration has run out (12.5 s at 20, beyond the admin
    // client's 10 s timeout; creating a space normally ends sooner, when every daemon has
    // taken the configuration), and at 50 creating the bench space timed out.
    #[arg(long = "timing-scale", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=20))]
    pub timing_scale: u32,
    #[command(flatten)]
    pub security: super::security::SecurityFlags,
}

pub async fn run(args: LocalArgs) -> ExitCode {
    super::init_logging("warn", None);
    let (dir, temporary) = match &args.data {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("hyperdex-local-{}", std::process::id())),
            true,
        ),
    };
    match start(&args, &dir).await {
        Ok(addr) => {
            crate::outln!(
                "hyperdex local cluster: coordinator at {addr}, {} daemons, data in {}",
                args.daemons,
                dir.display()
            );
            crate::outln!(
                "connect with: Client('{}', {})",
                args.listen,
                addr.rsplit(':').next().unwrap_or("1982")
            );
            crate::outln!("press Ctrl-C to stop");
            super::process::stopped().await;
            crate::outln!("stopping");
            if temporary {
                let _ = std::fs::remove_dir_all(&dir);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            if temporary {
                let _ = std::fs::remove_dir_all(&dir);
            }
            ExitCode::from(2)
        }
    }
}

/// Starts everything and waits until every daemon has registered; returns the
/// coordinator's address.
pub async fn start(args: &LocalArgs, dir: &std::path::Path) -> Result<String, String> {
    let secret = args.security.server_secret(&args.listen)?;
    let tls = args.security.server_tls()?;
    let store = RedbStore::open(&dir.join("coordinator")).map_err(|e| e.to_string())?;
    let bind = format!("{}:{}", args.listen, args.port);
    let listener = rt::listen(&bind).await.map_err(|e| {
        format!("cannot listen on {bind}: {e} (is another coordinator running? try --port 0)")
    })?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let addr = format!("{}:{port}", args.listen);
    let timing = Timing::default().scaled(args.timing_scale);
    let opts = CoordinatorOptions {
        listen: addr.clone(),
        secret: secret.clone(),
        tls: tls.accept.clone(),
        timing,
        ..CoordinatorOptions::default()
    };
    let metrics_at = |n: usize| -> Result<Option<String>, String> {
        let Some(m) = &args.metrics_listen else {
            return Ok(None);
        };
        let (host, port) = m
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("--metrics-listen {m}: expected HOST:PORT"))?;
        Ok(Some(format!("{host}:{}", usize::from(port) + n)))
    };
    super::process::serve_metrics(metrics_at(0)?.as_deref(), opts.metrics.clone()).await?;
    rt::spawn(async move {
        if let Err(e) = coordinator::run(listener, Box::new(store), opts).await {
            eprintln!("error: coordinator stopped: {e}");
        }
    });
    for i in 0..args.daemons {
        let store =
            RedbStore::open(&dir.join(format!("daemon{}", i + 1))).map_err(|e| e.to_string())?;
        let listener = rt::listen(&format!("{}:0", args.listen))
            .await
            .map_err(|e| e.to_string())?;
        let dport = listener.local_addr().map_err(|e| e.to_string())?.port();
        let opts = DaemonOptions {
            address: format!("{}:{dport}", args.listen),
            coordinator: addr.clone(),
            secret: secret.clone(),
            tls: tls.clone(),
            timing,
            ..DaemonOptions::default()
        };
        super::process::serve_metrics(metrics_at(i + 1)?.as_deref(), opts.metrics.clone()).await?;
        rt::spawn(async move {
            if let Err(e) = daemon::run(listener, Box::new(store), opts).await {
                eprintln!("error: daemon stopped: {e}");
            }
        });
    }
    let deadline = rt::now() + Duration::from_secs(15);
    loop {
        let client = ClientOptions {
            tls: tls.connect.clone(),
            ..ClientOptions::default()
        };
        if let Ok(c) = fetch_config(&addr, &client).await {
            let available = c
                .servers
                .values()
                .filter(|s| s.state == crate::config::ServerState::Available)
                .count();
            if available >= args.daemons {
                return Ok(addr);
            }
        }
        if rt::now() > deadline {
            return Err("the daemons did not register within 15 s".into());
        }
        rt::sleep(Duration::from_millis(50)).await;
    }
}
