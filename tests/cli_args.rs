//! Every argument of every command says what it is (`--help` shows a line for each).
#![cfg(not(madsim))]

use clap::Subcommand;

fn undocumented(c: &clap::Command, path: &str, out: &mut Vec<String>) {
    let path = format!("{path} {}", c.get_name());
    for a in c.get_arguments() {
        let generated = matches!(a.get_id().as_str(), "help" | "version");
        if !generated && !a.is_hide_set() && a.get_help().is_none() {
            out.push(format!("{path}: {}", a.get_id()));
        }
    }
    for s in c.get_subcommands() {
        undocumented(s, &path, out);
    }
}

#[test]
fn every_argument_has_help() {
    let cli = hyperdex::cli::Command::augment_subcommands(clap::Command::new("hyperdex"));
    let mut missing = Vec::new();
    undocumented(&cli, "", &mut missing);
    assert!(
        missing.is_empty(),
        "arguments without help:\n{}",
        missing.join("\n")
    );
}

/// `hyperdex completions SHELL` prints a script naming every command, and `hyperdex man DIR`
/// writes a page for the program and each command.
#[test]
fn completions_and_man_pages_cover_every_command() {
    let bin = env!("CARGO_BIN_EXE_hyperdex");
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(bin)
            .args(["completions", shell])
            .output()
            .expect("run");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        for command in ["add-space", "add-index", "backup", "show-config", "search"] {
            assert!(script.contains(command), "{shell}: no {command}");
        }
    }
    let dir = std::env::temp_dir().join(format!("hyperdex-man-{}", std::process::id()));
    let out = std::process::Command::new(bin)
        .arg("man")
        .arg(&dir)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "hyperdex.1",
        "hyperdex-daemon.1",
        "hyperdex-backup.1",
        "hyperdex-put.1",
    ] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap_or_default();
        assert!(text.contains(".TH"), "{page}: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
