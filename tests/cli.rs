//! The command line's help and error messages, as a user sees them (insta snapshots).
#![cfg(not(madsim))]

mod support;

use std::process::{Command, Stdio};

use support::{free_port, BIN};

fn run(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hyperdex");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("stdin");
    }
    let out = child.wait_with_output().expect("output");
    format!(
        "$ hyperdex {}\n{}{}[exit {}]\n",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code().unwrap_or(-1)
    )
}

#[test]
fn help_texts() {
    let mut t = String::new();
    for args in [
        &["--help"][..],
        &["coordinator", "--help"],
        &["daemon", "--help"],
        &["add-space", "--help"],
        &["atomic", "--help"],
        &["local", "--help"],
    ] {
        t.push_str(&run(args, None));
    }
    insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("cli_help", t);
    });
}

#[test]
fn errors_say_what_was_wrong() {
    let nobody = free_port().to_string();
    let mut t = String::new();
    t.push_str(&run(
        &["validate-space"],
        Some("space friendlists\nkey username\nattributes\n   string first,\n   strin last\n"),
    ));
    t.push_str(&run(
        &["validate-space"],
        Some("space s key k attributes a subspace frist"),
    ));
    t.push_str(&run(
        &["validate-space"],
        Some("space s key k attributes int a, b tolerate 2 failures"),
    ));
    t.push_str(&run(
        &["add-space", "-p", &nobody],
        Some("space s key k attributes a, a"),
    ));
    t.push_str(&run(&["list-spaces", "-p", &nobody], None));
    t.push_str(&run(&["daemon", "-f", "--bogus"], None));
    t.push_str(&run(
        &["get", "-h", "127.0.0.1", "-p", &nobody, "space", "key"],
        None,
    ));
    // The port of an unreachable coordinator changes from run to run.
    let t = t.replace(&nobody, "PORT");
    insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("cli_errors", t);
    });
}
