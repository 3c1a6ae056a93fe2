//! A tiny run of `hyperdex bench` against a local cluster: it loads, runs YCSB A, and writes
//! its JSON and SVG. (The real measurements are scripts/compare.sh, run on demand.)
#![cfg(not(madsim))]

mod support;

use std::process::Command;

use support::{temp_dir, BIN};

#[test]
fn a_small_ycsb_a_run_completes_without_errors() {
    let dir = temp_dir("bench");
    let json = dir.join("result.json");
    let svg = dir.join("plot.svg");
    let out = Command::new(BIN)
        .args([
            "bench",
            "--local",
            "--quiet",
            "--workload",
            "a",
            "--clients",
            "4",
            "--ops",
            "400",
        ])
        .args(["--records", "50", "--fields", "2", "--value-size", "10"])
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .expect("run bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("valid json");
    assert_eq!(result["ops"], 400);
    assert_eq!(result["errors"], 0);
    assert!(result["per_op"]["read"]["count"].as_u64().unwrap_or(0) > 100);
    assert!(result["per_op"]["update"]["p50_us"].as_u64().unwrap_or(0) > 0);
    assert!(std::fs::read_to_string(&svg)
        .expect("svg written")
        .starts_with("<svg"));
    let _ = std::fs::remove_dir_all(&dir);
}
