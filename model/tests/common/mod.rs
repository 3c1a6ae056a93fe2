//! Helpers for tests that speak Python: rendering replies the way the HyperDex chapter
//! prints them, parsing the chapter's printed Python literals, and extracting its sessions.
#![allow(dead_code)]

pub mod seed_script;

use std::path::PathBuf;

use hyperdex_model::{Object, Reply, Space, Value};

/// Python 2 `repr` of a value, as the 1.0-era `hyperclient` printed it: `'text'`, `12`,
/// `-0.25`, `['A', 'B']`, `set(['A', 'B'])`, `{'k': 'v'}`.
pub fn py(value: &Value) -> String {
    match value {
        Value::String(s) => py_bytes(s),
        Value::Int(i) | Value::Timestamp(i) => i.to_string(),
        Value::Float(x) => py_float(*x),
        Value::Document(d) => format!("Document({})", d.text()),
        Value::List(l) => format!("[{}]", join(l.iter().map(py))),
        Value::Set(s) => format!("set([{}])", join(s.iter().map(py))),
        Value::Map(m) => format!(
            "{{{}}}",
            join(m.iter().map(|(k, v)| format!("{}: {}", py(k), py(v))))
        ),
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

fn py_bytes(s: &[u8]) -> String {
    let mut out = String::from("'");
    for &b in s {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'\n' => out.push_str("\\n"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('\'');
    out
}

fn py_float(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else if x == x.trunc() && x.abs() < 1e16 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// A `get` result as a Python dict, attributes in schema order.
pub fn py_object(space: &Space, obj: &Object) -> String {
    let mut parts = Vec::new();
    for a in std::iter::once(&space.key).chain(&space.attributes) {
        if let Some(v) = obj.get(&a.name) {
            parts.push(format!("'{}': {}", a.name, py(v)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// What a Python session shows for a reply (the `hyperclient` mapping): `True` for SUCCESS,
/// the dict for a found object, nothing for `None` (NOTFOUND), `False` for CMPFAIL, the
/// number for a count, and a traceback line for anything else.
pub fn py_reply(space: Option<&Space>, reply: &Reply) -> Option<String> {
    match reply {
        Reply::Success => Some("True".into()),
        Reply::Found(obj) => Some(match space {
            Some(s) => py_object(s, obj),
            None => format!("{obj:?}"),
        }),
        Reply::NotFound => None,
        Reply::CmpFail(_) => Some("False".into()),
        Reply::Count(n) => Some(n.to_string()),
        Reply::Objects(objs) => Some(format!(
            "[{}]",
            join(objs.iter().map(|o| match space {
                Some(s) => py_object(s, o),
                None => format!("{o:?}"),
            }))
        )),
        Reply::Error(code, msg) => Some(format!(
            "Traceback (most recent call last):\nHyperClientException: {msg} [{}]",
            code.symbol()
        )),
    }
}

/// A parsed Python literal.
#[derive(Clone, Debug, PartialEq)]
pub enum PyVal {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(Vec<u8>),
    List(Vec<PyVal>),
    Set(Vec<PyVal>),
    Dict(Vec<(PyVal, PyVal)>),
}

impl PyVal {
    /// A canonical text: sets and dicts sorted, so that equal values have equal text
    /// whatever order they were printed in.
    pub fn canonical(&self) -> String {
        match self {
            PyVal::None => "None".into(),
            PyVal::Bool(b) => if *b { "True" } else { "False" }.into(),
            PyVal::Int(i) => i.to_string(),
            PyVal::Float(x) => format!("{x:?}f"),
            PyVal::Str(s) => py_bytes(s),
            PyVal::List(l) => format!("[{}]", join(l.iter().map(PyVal::canonical))),
            PyVal::Set(s) => {
                let mut items: Vec<String> = s.iter().map(PyVal::canonical).collect();
                items.sort();
                format!("set([{}])", items.join(", "))
            }
            PyVal::Dict(d) => {
                let mut items: Vec<String> = d
                    .iter()
                    .map(|(k, v)| format!("{}: {}", k.canonical(), v.canonical()))
                    .collect();
                items.sort();
                format!("{{{}}}", items.join(", "))
            }
        }
    }
}

/// Parses a Python literal as a Python 2 or 3 session prints it. Returns `None` when the
/// text is not a literal (for example the chapter's bare `->some string`).
pub fn parse_py(text: &str) -> Option<PyVal> {
    let mut p = PyParser {
        s: text.trim().as_bytes(),
        i: 0,
    };
    let v = p.value()?;
    p.ws();
    (p.i == p.s.len()).then_some(v)
}

struct PyParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl PyParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, t: &str) -> bool {
        self.ws();
        if self.s[self.i..].starts_with(t.as_bytes()) {
            self.i += t.len();
            true
        } else {
            false
        }
    }

    fn items(&mut self, close: &str) -> Option<Vec<PyVal>> {
        let mut out = Vec::new();
        if self.eat(close) {
            return Some(out);
        }
        loop {
            out.push(self.value()?);
            if self.eat(close) {
                return Some(out);
            }
            if !self.eat(",") {
                return None;
            }
            if self.eat(close) {
                return Some(out);
            }
        }
    }

    #[allow(clippy::too_many_lines, reason = "one case per kind of Python literal")]
    fn value(&mut self) -> Option<PyVal> {
        self.ws();
        if self.eat("None") {
            return Some(PyVal::None);
        }
        if self.eat("True") {
            return Some(PyVal::Bool(true));
        }
        if self.eat("False") {
            return Some(PyVal::Bool(false));
        }
        if self.eat("set([") {
            let items = self.items("]")?;
            return self.eat(")").then_some(PyVal::Set(items));
        }
        if self.eat("set()") {
            return Some(PyVal::Set(Vec::new()));
        }
        if self.eat("[") {
            return self.items("]").map(PyVal::List);
        }
        if self.eat("{") {
            let mut entries = Vec::new();
            let mut set_items = Vec::new();
            if self.eat("}") {
                return Some(PyVal::Dict(entries));
            }
            loop {
                let k = self.value()?;
                if self.eat(":") {
                    entries.push((k, self.value()?));
                } else {
                    set_items.push(k);
                }
                if self.eat("}") {
                    break;
                }
                if !self.eat(",") {
                    return None;
                }
            }
            return match (entries.is_empty(), set_items.is_empty()) {
                (false, true) => Some(PyVal::Dict(entries)),
                (true, false) => Some(PyVal::Set(set_items)),
                _ => None,
            };
        }
        let c = *self.s.get(self.i)?;
        if c == b'\''
            || c == b'"'
            || (c == b'b' && matches!(self.s.get(self.i + 1), Some(b'\'' | b'"')))
        {
            if c == b'b' {
                self.i += 1;
            }
            let q = self.s[self.i];
            self.i += 1;
            let mut out = Vec::new();
            while self.i < self.s.len() && self.s[self.i] != q {
                if self.s[self.i] == b'\\' {
                    self.i += 1;
                    match *self.s.get(self.i)? {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'x' => {
                            let hex =
                                std::str::from_utf8(self.s.get(self.i + 1..self.i + 3)?).ok()?;
                            out.push(u8::from_str_radix(hex, 16).ok()?);
                            self.i += 2;
                        }
                        other => out.push(other),
                    }
                } else {
                    out.push(self.s[self.i]);
                }
                self.i += 1;
            }
            self.i += 1;
            return Some(PyVal::Str(out));
        }
        // Numbers: ints (decimal or 0x hex) and floats (`4.`, `-0.25`, `1e3`).
        let start = self.i;
        if matches!(c, b'-' | b'+') {
            self.i += 1;
        }
        if self.s[self.i..].starts_with(b"0x") {
            self.i += 2;
            let h = self.i;
            while self.i < self.s.len() && self.s[self.i].is_ascii_hexdigit() {
                self.i += 1;
            }
            let v = i128::from_str_radix(std::str::from_utf8(&self.s[h..self.i]).ok()?, 16).ok()?;
            return Some(PyVal::Int(if c == b'-' { -v } else { v }));
        }
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_digit()
                || matches!(self.s[self.i], b'.' | b'e' | b'E' | b'-' | b'+'))
        {
            self.i += 1;
        }
        let t = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        if t.is_empty() {
            return None;
        }
        if let Ok(i) = t.parse::<i128>() {
            return Some(PyVal::Int(i));
        }
        t.parse::<f64>().ok().map(PyVal::Float)
    }
}

/// One `>>>` statement of a chapter with what the chapter prints after it.
#[derive(Clone, Debug)]
pub struct Step {
    /// 1-based line of the `>>>` in the chapter.
    pub line: usize,
    /// The statement as typed: the `>>> ` line and any `... ` lines, prompts kept.
    pub statement: String,
    /// What the chapter shows after it (empty when nothing).
    pub output: Vec<String>,
}

/// The seed chapter, read from `$HYPERDEX_SEED_CHAPTER` or from `../shared/seeds/` beside the
/// workspace (where CI and every working copy have it).
pub fn seed_chapter() -> (PathBuf, String) {
    let path = std::env::var_os("HYPERDEX_SEED_CHAPTER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/seeds/000_86f19e42ad947120.txt")
        });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the seed chapter at {}: {e}; set HYPERDEX_SEED_CHAPTER to its path",
            path.display()
        )
    });
    (path, text)
}

/// Every `>>>` statement of a chapter in order, with its printed output.
pub fn steps(chapter: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_output = false;
    for (n, raw) in chapter.lines().enumerate() {
        let line = raw.trim();
        if let Some(stmt) = line.strip_prefix(">>>") {
            steps.push(Step {
                line: n + 1,
                statement: format!(">>>{stmt}"),
                output: Vec::new(),
            });
            in_output = true;
        } else if line.starts_with("...")
            && in_output
            && steps.last().is_some_and(|s| s.output.is_empty())
        {
            let s = steps.last_mut().expect("checked");
            s.statement.push('\n');
            s.statement.push_str(line);
        } else if line.is_empty() {
            in_output = false;
        } else if in_output {
            if let Some(s) = steps.last_mut() {
                s.output.push(line.to_string());
            }
        }
    }
    steps
}

/// Statement text with whitespace runs collapsed, for matching.
pub fn normalize(statement: &str) -> String {
    statement.split_whitespace().collect::<Vec<_>>().join(" ")
}
