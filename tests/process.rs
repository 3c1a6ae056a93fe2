//! The coordinator and the daemon as processes: a detached start reports whether it came
//! up, a signal stops them cleanly, and a daemon on every interface must say which address
//! to advertise.
#![allow(clippy::disallowed_methods)] // tests sleep and read the wall clock on purpose

mod support;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

use support::{free_port, temp_dir, ProcCluster, BIN};

fn hyperdex(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run hyperdex")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_detached_start_says_whether_the_server_came_up() {
    let dir = temp_dir("detach");
    // The port is taken: the background coordinator cannot listen, and the start says so.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let data = dir.join("c1").display().to_string();
    let out = hyperdex(&["coordinator", "-l", "127.0.0.1", "-p", &port, "-D", &data]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("cannot listen on 127.0.0.1"),
        "{}",
        text(&out)
    );
    // A free port: it says where it listens, and the process is running.
    let port = free_port().to_string();
    let data = dir.join("c2").display().to_string();
    let pidfile = dir.join("c2.pid").display().to_string();
    let out = hyperdex(&[
        "coordinator",
        "-l",
        "127.0.0.1",
        "-p",
        &port,
        "-D",
        &data,
        "--pidfile",
        &pidfile,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("on 127.0.0.1:{port}")),
        "{}",
        text(&out)
    );
    let pid = std::fs::read_to_string(&pidfile).expect("pid file");
    let pid = pid.trim();
    let alive = |pid: &str| {
        Command::new("kill")
            .args(["-0", pid])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(alive(pid));
    assert!(Command::new("kill")
        .args(["-TERM", pid])
        .status()
        .expect("kill")
        .success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "the coordinator did not stop on SIGTERM");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_signal_stops_the_daemon_and_the_coordinator_with_success() {
    // With a cluster secret, a daemon's word that it stopped is taken (without one, it is
    // fenced until its lease runs out, as server-kill does).
    let mut c =
        ProcCluster::start_with_secret("sigterm", 1, Some("sigterm test secret 0123456789"));
    let status = c.terminate_daemon(0, Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "daemon: {status:?}");
    let log = std::fs::read_to_string(c.dir.join("daemon1.log")).unwrap_or_default();
    assert!(log.contains("daemon stopping on a signal"), "{log}");
    assert!(log.contains("data directory closed"), "{log}");
    // It told the coordinator, which took it out of its chains without waiting for the
    // failure detector.
    assert!(
        log.contains("the coordinator knows this server has stopped"),
        "{log}"
    );
    let coordinator = std::fs::read_to_string(c.dir.join("coordinator.log")).unwrap_or_default();
    assert!(
        coordinator.contains("the server is stopping: taking it out of its chains"),
        "{coordinator}"
    );
    let out = c.hyperdex(&["show-config"], None);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FAILED"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let status = c.terminate_coordinator(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "coordinator: {status:?}"
    );
}

#[test]
fn a_daemon_on_every_interface_advertises_the_address_it_is_given() {
    let c = ProcCluster::start("advertise", 0);
    let port = free_port();
    let data = c.dir.join("d1").display().to_string();
    let coord = c.coord_port.to_string();
    let daemon = |extra: &[&str]| {
        let mut args = vec![
            "daemon".to_string(),
            "-f".into(),
            "-l".into(),
            "0.0.0.0".into(),
            "-p".into(),
            port.to_string(),
            "-c".into(),
            "127.0.0.1".into(),
            "-P".into(),
            coord.clone(),
            "-D".into(),
            data.clone(),
            // Listening on every interface needs a cluster secret or an explicit --insecure.
            "--insecure".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let out = Command::new(BIN).args(daemon(&[])).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("needs --advertise HOST:PORT"),
        "{}",
        text(&out)
    );
    let out = Command::new(BIN)
        .args(daemon(&["--advertise", "localhost"]))
        .output()
        .expect("run");
    assert!(text(&out).contains("expected HOST:PORT"), "{}", text(&out));
    let advertised = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args(daemon(&["--advertise", &advertised]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start daemon");
    c.wait_for_daemons(1);
    let config = c.hyperdex(&["show-config"], None);
    assert!(text(&config).contains(&advertised), "{}", text(&config));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn advertised_addresses_are_host_and_port() {
    let dir = temp_dir("advertise-syntax");
    let data = dir.display().to_string();
    for bad in [
        "localhost",
        "::1:2012",
        "host:0",
        ":2012",
        "[]:2012",
        "[::1:2012",
    ] {
        let args = ["daemon", "-f", "-p", "0", "-D", &data, "--advertise", bad];
        let out = hyperdex(&args);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
        let said = text(&out);
        assert!(said.contains("expected HOST:PORT"), "{bad}: {said}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn output_into_a_closed_pipe_ends_the_command_quietly() {
    // `hyperdex ... | head`: the reader is gone before the command writes its line.
    let dir = temp_dir("epipe");
    let mut child = Command::new(BIN)
        .arg("man")
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run hyperdex");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}
