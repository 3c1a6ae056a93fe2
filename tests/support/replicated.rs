//! Clusters with several coordinators, as real processes, started with HyperDex's command
//! lines.
#![allow(dead_code)] // each test binary uses part of it

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hyperdex::net::RpcConn;
use hyperdex::protocol::{CoordRequest, CoordResponse, Message, DEFAULT_MAX_FRAME};

use super::{free_ports, temp_dir, TempDir, BIN};

/// Coordinators and daemons, each a process (killed when dropped).
pub struct Procs {
    pub dir: TempDir,
    pub coords: Vec<(u16, Option<Child>)>,
    pub daemons: Vec<(u16, Option<Child>)>,
    /// For each coordinator after the first, the coordinator it joins through.
    pub joins: Vec<usize>,
}

fn spawn(args: &[String], log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let err = out.try_clone().expect("log file");
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start hyperdex")
}

impl Procs {
    /// `coordinators` coordinators and `daemons` daemons on free ports, none started yet; each
    /// coordinator after the first joins through the first.
    pub fn new(name: &str, coordinators: usize, daemons: usize) -> Procs {
        let mut ports = free_ports(coordinators + daemons).into_iter();
        Procs {
            dir: temp_dir(name),
            coords: ports
                .by_ref()
                .take(coordinators)
                .map(|p| (p, None))
                .collect(),
            daemons: ports.map(|p| (p, None)).collect(),
            joins: vec![0; coordinators],
        }
    }

    /// Every coordinator's address, comma-separated.
    pub fn coordinators(&self) -> String {
        let addrs: Vec<String> = self
            .coords
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        addrs.join(",")
    }

    pub fn start_coordinator(&mut self, i: usize) {
        let data = self.dir.join(format!("coordinator{}", i + 1));
        std::fs::create_dir_all(&data).expect("dir");
        let mut args: Vec<String> = vec![
            "coordinator".into(),
            "-f".into(),
            "-l".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.coords[i].0.to_string(),
            "-D".into(),
            data.display().to_string(),
        ];
        if i > 0 {
            // HyperDex's spelling: the host defaults to 127.0.0.1.
            args.extend(["-P".into(), self.coords[self.joins[i]].0.to_string()]);
        }
        let log = self.dir.join(format!("coordinator{}.log", i + 1));
        self.coords[i].1 = Some(spawn(&args, &log));
    }

    /// Starts daemon `i`, given every coordinator.
    pub fn start_daemon(&mut self, i: usize) {
        let all = self.coordinators();
        self.start_daemon_with(i, &all);
    }

    /// Starts daemon `i`, given the coordinators `coordinators` only.
    pub fn start_daemon_with(&mut self, i: usize, coordinators: &str) {
        let data = self.dir.join(format!("daemon{}", i + 1));
        let args: Vec<String> = vec![
            "daemon".into(),
            "-f".into(),
            "-l".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.daemons[i].0.to_string(),
            "-c".into(),
            coordinators.to_string(),
            "-D".into(),
            data.display().to_string(),
        ];
        let log = self.dir.join(format!("daemon{}.log", i + 1));
        self.daemons[i].1 = Some(spawn(&args, &log));
    }

    pub fn kill(child: &mut Option<Child>) {
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in self.coords.iter_mut().chain(self.daemons.iter_mut()) {
            Procs::kill(c);
        }
    }
}

/// Which coordinator leads: the one that answers a configuration request.
pub async fn leader(procs: &Procs) -> Option<usize> {
    for (i, (port, _)) in procs.coords.iter().enumerate() {
        let addr = format!("127.0.0.1:{port}");
        let Ok(c) = RpcConn::connect(&addr, DEFAULT_MAX_FRAME, Duration::from_millis(300)).await
        else {
            continue;
        };
        let asked = c
            .call(
                Message::ToCoordinator(CoordRequest::GetConfig),
                Duration::from_millis(300),
            )
            .await;
        if let Ok(Message::FromCoordinator(CoordResponse::Config(_))) = asked {
            return Some(i);
        }
    }
    None
}
