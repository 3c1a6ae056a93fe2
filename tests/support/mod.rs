//! A real cluster of `hyperdex` processes on loopback, started with the seed chapter's
//! command lines, for integration tests.
#![allow(dead_code)]
#![allow(clippy::disallowed_methods)] // tests sleep and read the wall clock on purpose

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod replicated;

pub const BIN: &str = env!("CARGO_BIN_EXE_hyperdex");

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` different ports that were free a moment ago: all held at once while they are picked,
/// so that none is handed out twice (ports picked one after the other can be the same).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("a bound port").port())
        .collect()
}

/// A new, empty directory for one test, removed when dropped (see [`TempDir`]).
pub fn temp_dir(name: &str) -> TempDir {
    TempDir(fresh_dir(name))
}

/// A new, empty directory under the system's temporary directory, left for the caller.
fn fresh_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hyperdex-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A test's directory: removed when the test passes, kept (and named on stderr) when it fails
/// or `HYPERDEX_KEEP_LOGS` is set, so that runs leave nothing behind but what explains a
/// failure.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        remove_unless_failing(&self.0);
    }
}

/// Removes `dir`, unless the current test is failing or `HYPERDEX_KEEP_LOGS` is set.
fn remove_unless_failing(dir: &Path) {
    if std::thread::panicking() || std::env::var_os("HYPERDEX_KEEP_LOGS").is_some() {
        eprintln!("test files kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}

pub struct Daemon {
    pub port: u16,
    pub data: PathBuf,
    pub child: Option<Child>,
}

pub struct ProcCluster {
    pub dir: PathBuf,
    pub coord_port: u16,
    coord: Option<Child>,
    pub daemons: Vec<Daemon>,
    /// The cluster secret file every process of this cluster is given, if any.
    pub secret: Option<PathBuf>,
    /// Environment every process of this cluster (servers and command-line tools) gets.
    pub env: Vec<(String, String)>,
    /// Extra arguments every daemon is started with.
    pub daemon_args: Vec<String>,
}

fn spawn(args: &[String], log: &Path, env: &[(String, String)]) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    let mut cmd = Command::new(BIN);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start hyperdex")
}

impl ProcCluster {
    /// Starts a coordinator and `n` daemons and waits until every daemon has registered.
    pub fn start(name: &str, n: usize) -> ProcCluster {
        ProcCluster::start_with_secret(name, n, None)
    }

    /// The same, every process sharing the cluster secret `secret` (written to a file).
    pub fn start_with_secret(name: &str, n: usize, secret: Option<&str>) -> ProcCluster {
        ProcCluster::start_with_env(name, n, secret, Vec::new())
    }

    /// The same, every process also getting `env` (TLS files, say).
    pub fn start_with_env(
        name: &str,
        n: usize,
        secret: Option<&str>,
        env: Vec<(String, String)>,
    ) -> ProcCluster {
        ProcCluster::start_full(name, n, secret, env, &[])
    }

    /// Starts a coordinator and `n` daemons, each daemon also given `daemon_args`.
    pub fn start_with_daemon_args(name: &str, n: usize, daemon_args: &[&str]) -> ProcCluster {
        ProcCluster::start_full(name, n, None, Vec::new(), daemon_args)
    }

    fn start_full(
        name: &str,
        n: usize,
        secret: Option<&str>,
        mut env: Vec<(String, String)>,
        daemon_args: &[&str],
    ) -> ProcCluster {
        let dir = fresh_dir(name);
        let secret = secret.map(|s| {
            let path = dir.join("cluster.secret");
            std::fs::write(&path, s).expect("secret file");
            path
        });
        if let Some(s) = &secret {
            env.push((
                "HYPERDEX_CLUSTER_SECRET_FILE".into(),
                s.display().to_string(),
            ));
        }
        let mut c = ProcCluster {
            coord_port: free_port(),
            dir,
            coord: None,
            daemons: Vec::new(),
            secret,
            env,
            daemon_args: daemon_args.iter().map(|a| a.to_string()).collect(),
        };
        c.start_coordinator();
        for i in 0..n {
            let d = Daemon {
                port: free_port(),
                data: c.dir.join(format!("data{}", i + 1)),
                child: None,
            };
            c.daemons.push(d);
            c.start_daemon(i);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.daemons_available(n) {
            c.respawn_port_losers();
            assert!(
                Instant::now() < deadline,
                "daemons did not register: {}",
                c.show_config()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    /// Restarts, on a new port, every daemon that exited because its port was taken between
    /// [`free_port`] finding it free and the daemon binding it (another process's outgoing
    /// connection can take it in that moment).
    fn respawn_port_losers(&mut self) {
        for i in 0..self.daemons.len() {
            let exited = self.daemons[i]
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            let log = self.dir.join(format!("daemon{}.log", i + 1));
            let lost = std::fs::read_to_string(&log)
                .is_ok_and(|t| t.contains("cannot listen") && t.contains("in use"));
            if exited && lost {
                eprintln!(
                    "daemon {} lost port {}; restarting",
                    i + 1,
                    self.daemons[i].port
                );
                self.daemons[i].port = free_port();
                self.start_daemon(i);
            }
        }
    }

    fn show_config(&self) -> String {
        let out = self.hyperdex(&["show-config"], None);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn daemons_available(&self, n: usize) -> bool {
        let out = self.hyperdex(&["show-config"], None);
        out.status.success()
            && String::from_utf8_lossy(&out.stdout)
                .matches("AVAILABLE")
                .count()
                >= n
    }

    pub fn start_coordinator(&mut self) {
        let args = vec![
            "coordinator".into(),
            "-f".into(),
            "-l".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.coord_port.to_string(),
            "-D".into(),
            self.dir.join("coordinator").display().to_string(),
        ];
        std::fs::create_dir_all(self.dir.join("coordinator")).expect("coordinator dir");
        self.coord = Some(spawn(&args, &self.dir.join("coordinator.log"), &self.env));
    }

    /// Starts daemon `i` with the seed's flag spelling.
    pub fn start_daemon(&mut self, i: usize) {
        let d = &self.daemons[i];
        let mut args = vec![
            "daemon".into(),
            "-f".into(),
            "--listen=127.0.0.1".into(),
            format!("--listen-port={}", d.port),
            "--coordinator=127.0.0.1".into(),
            format!("--coordinator-port={}", self.coord_port),
            format!("--data={}", d.data.display()),
        ];
        args.extend(self.daemon_args.iter().cloned());
        let log = self.dir.join(format!("daemon{}.log", i + 1));
        let child = spawn(&args, &log, &self.env);
        self.daemons[i].child = Some(child);
    }

    /// Runs a `hyperdex` admin or data command against this cluster.
    pub fn hyperdex(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.args(args)
            .arg("-p")
            .arg(self.coord_port.to_string())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run hyperdex");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("hyperdex output")
    }

    /// Waits until `n` daemons are AVAILABLE in `show-config`.
    pub fn wait_for_daemons(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.hyperdex(&["show-config"], None);
            let text = String::from_utf8_lossy(&out.stdout);
            if out.status.success() && text.matches("AVAILABLE").count() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "daemons did not register: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill_daemon(&mut self, i: usize) {
        if let Some(mut c) = self.daemons[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn kill_coordinator(&mut self) {
        if let Some(mut c) = self.coord.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM to the coordinator and waits for it to exit (at most `within`).
    pub fn terminate_coordinator(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        terminate(self.coord.take()?, within)
    }

    /// Sends SIGTERM to daemon `i` and waits for it to exit (at most `within`).
    pub fn terminate_daemon(
        &mut self,
        i: usize,
        within: Duration,
    ) -> Option<std::process::ExitStatus> {
        terminate(self.daemons[i].child.take()?, within)
    }

    /// SIGKILLs every process.
    pub fn kill_all(&mut self) {
        for i in 0..self.daemons.len() {
            self.kill_daemon(i);
        }
        self.kill_coordinator();
    }

    /// Whether the coordinator and every daemon that was started are still running.
    pub fn all_alive(&mut self) -> bool {
        let running =
            |c: &mut Option<Child>| c.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        running(&mut self.coord) && self.daemons.iter_mut().all(|d| running(&mut d.child))
    }

    pub fn daemon_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.daemons[i].port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.coord_port)
    }
}

/// Sends SIGTERM to `child` and waits for it to exit; `None` (after a SIGKILL) if it has
/// not within `within`.
pub fn terminate(mut child: Child, within: Duration) -> Option<std::process::ExitStatus> {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM failed");
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        self.kill_all();
        remove_unless_failing(&self.dir);
    }
}
