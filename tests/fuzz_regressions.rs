//! Every input the fuzzers ever found a problem with (kept in `fuzz/regressions/<target>/`)
//! and the real messages of every kind, run through the fuzz targets' bodies on the stable
//! toolchain, so a fixed finding stays fixed. Fuzzing itself: `scripts/fuzz.sh`.
#![cfg(not(madsim))]

#[path = "../fuzz/bodies.rs"]
mod bodies;

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the regressions directory") {
        let path = entry.expect("an entry").path();
        if path.is_file() && path.file_name().is_some_and(|n| n != ".keep") {
            body(&std::fs::read(&path).expect("an input"));
            n += 1;
        }
    }
    n
}

#[test]
fn kept_fuzz_findings_stay_fixed() {
    for (target, body) in [
        ("frame", bodies::frame as fn(&[u8])),
        ("space_description", bodies::space_description),
        ("cli_json", bodies::cli_json),
        ("document_path", bodies::document_path),
        ("apply_write", bodies::apply_write),
    ] {
        let n = replay(target, body);
        eprintln!("{target}: {n} kept inputs replayed");
    }
}

#[test]
fn real_frames_pass_the_frame_target() {
    for env in hyperdex::protocol::samples::sample_envelopes() {
        let frame =
            hyperdex::protocol::frame::encode_frame(&env, hyperdex::protocol::DEFAULT_MAX_FRAME)
                .expect("encodes");
        bodies::frame(&frame[4..]);
    }
    bodies::space_description(bodies::SPACE.as_bytes());
}
