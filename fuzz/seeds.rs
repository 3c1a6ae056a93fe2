//! Writes the seed corpus of every fuzz target into `fuzz/corpus/<target>/`: real frames of
//! every kind, the seed chapter's and HyperDex's space descriptions, command-line JSON,
//! document paths and writes. Run by `scripts/fuzz.sh` before fuzzing.

use std::path::Path;

use hyperdex::protocol::frame::encode_frame;
use hyperdex::protocol::samples::sample_envelopes;
use hyperdex::protocol::DEFAULT_MAX_FRAME;
use hyperdex_model::{Check, Func, Funcall, KeyWrite, Operation, Predicate, Value};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("seed file");
}

fn main() {
    for (i, env) in sample_envelopes().iter().enumerate() {
        let frame = encode_frame(env, DEFAULT_MAX_FRAME).expect("a sample encodes");
        write("frame", &format!("sample{i}"), &frame[4..]);
    }
    let spaces = [
        "space friendlists key username attributes string first, string last, set(string) friends",
        "space t # comment\nkey int id attribute timestamp(day) when, document d, map(int, float) m, a\n\
         subspace a, when\nsubspace a\nindex d\ncreate 8 partition\ntolerate 2 failure\nwith authorization",
        "space accounts key account attributes string name, int balance with authorization",
    ];
    for (i, s) in spaces.iter().enumerate() {
        write("space_description", &format!("space{i}"), s.as_bytes());
    }
    let json = [
        r#"{"i": 1, "x": 0.5, "s": "text", "l": [1, 2], "e": ["a"], "m": {"k": 2}}"#,
        r#"{"i": [">=", 3], "s": ["regex", "^a"], "l": ["contains", 2]}"#,
        r#"{"d": {"a": [1, {"b": null}]}, "t": 1700000000}"#,
    ];
    for (i, j) in json.iter().enumerate() {
        write("cli_json", &format!("json{i}"), j.as_bytes());
    }
    for (i, p) in [".a.b[2].c", "[0]", ".a..b", ".x[99999999999999999999]"]
        .iter()
        .enumerate()
    {
        write("document_path", &format!("path{i}"), p.as_bytes());
    }
    let writes = [
        Operation::put("f", "k", vec![("i", Value::Int(3)), ("s", Value::string("x"))]),
        Operation::cond_put(
            "f",
            "k",
            vec![Check::new("l", Predicate::LengthLessEqual(3))],
            vec![("x", Value::Float(1.0))],
        ),
        Operation::funcs(
            "f",
            "k",
            vec![
                Funcall::new("m", Func::MapAdd(Value::string("a"), Value::Int(1))),
                Funcall::new("d.a.b", Func::DocumentRename("d.a.c".into())),
            ],
        ),
    ];
    for (i, op) in writes.into_iter().enumerate() {
        if let Operation::Write { write, .. } = op {
            let w: KeyWrite = write;
            write_seed(i, &w);
        }
    }
}

fn write_seed(i: usize, w: &KeyWrite) {
    let bytes = postcard::to_allocvec(w).expect("a write encodes");
    write("apply_write", &format!("write{i}"), &bytes);
}
