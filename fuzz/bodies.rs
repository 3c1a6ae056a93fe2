//! What each fuzz target does with its input, shared by the libFuzzer targets
//! (`fuzz/fuzz_targets/*.rs`, nightly) and the regression test that replays every kept input
//! on stable (`tests/fuzz_regressions.rs`). Each body must never panic, whatever the bytes;
//! where an input is accepted, it also checks a round trip.

use hyperdex::protocol::frame::{decode_payload, encode_frame};
use hyperdex::protocol::DEFAULT_MAX_FRAME;
use hyperdex_model::apply::{apply, parse_path, validate_checks};
use hyperdex_model::{parse_space, KeyWrite, Object, Operation, Space, Value};

/// The space the value, path and apply targets work in: every type of attribute.
pub const SPACE: &str = "space f key k attributes int i, float x, string s, document d, \
     timestamp(second) t, list(int) l, set(string) e, map(string, int) m";

fn space() -> Space {
    parse_space(SPACE).expect("the fuzzing space parses")
}

/// A frame's payload: decodes or fails cleanly; what decodes encodes again to the same.
pub fn frame(data: &[u8]) {
    if let Ok(env) = decode_payload(data) {
        let again = encode_frame(&env, DEFAULT_MAX_FRAME).expect("what decodes encodes");
        let back = decode_payload(&again[4..]).expect("what was encoded decodes");
        assert_eq!(back, env);
    }
}

/// A space description: parses or reports an error; a parsed space prints to a description
/// that parses to the same space.
pub fn space_description(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(s) = parse_space(text) {
        assert_eq!(parse_space(&s.to_string()).as_ref(), Ok(&s));
    }
}

/// The command line's JSON: `ATTRS`, `CHECKS` and atomic arguments, converted through the
/// space's schema.
pub fn cli_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let s = space();
    let _ = hyperdex::cli::data::attrs_from(&s, text);
    let _ = hyperdex::cli::data::checks_from(&s, Some(text));
    let _ = hyperdex::cli::data::parse_key(&s, text);
    for op in [
        "map-add",
        "set-union",
        "list-rpush",
        "atomic-div",
        "document-rename",
    ] {
        let _ = hyperdex::cli::data::funcs_for(&s, op, text);
    }
}

/// A document path, parsed and then used to write into a document.
pub fn document_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_path(text, text);
    let name = format!("d{text}");
    let s = space();
    let doc = hyperdex_model::value::Document::parse(br#"{"a": {"b": [1, 2, {"c": "x"}]}}"#)
        .expect("a document");
    let current: Object = [("d".to_string(), Value::Document(doc))].into();
    let write = Operation::put("f", "k", vec![(name.as_str(), Value::Int(1))]);
    if let Operation::Write { write, .. } = write {
        let _ = apply(&s, Some(&current), &write);
    }
}

/// A write decoded from the bytes (the same encoding as on the wire), applied to an
/// object: never panics, and a failed write is a code, not a changed object.
pub fn apply_write(data: &[u8]) {
    let Ok(write) = postcard::from_bytes::<KeyWrite>(data) else {
        return;
    };
    let s = space();
    let _ = validate_checks(&s, &write.checks);
    let current = hyperdex_model::apply::default_object(&s);
    let _ = apply(&s, None, &write);
    if let Ok(Some(new)) = apply(&s, Some(&current), &write) {
        // What a successful write produces is an object of the space.
        assert!(new.keys().all(|k| s.attribute(k).is_some()), "{new:?}");
    }
}
