//! Values and datatypes: what an attribute can hold.
//!
//! Every HyperDex type has a [`Datatype`]; every stored or transmitted value is a [`Value`].
//! The rules this module fixes for the rest of the system:
//!
//! - **Strings are bytes.** Non-UTF-8 bytes round-trip unchanged.
//! - **Every attribute always has a value.** An attribute that was never written reads as its
//!   type's default ([`Datatype::default_value`]): `''`, `0`, `0.0`, `[]`, `set()`, `{}`,
//!   an empty document, timestamp 0.
//! - **Values are totally ordered.** Floats use IEEE 754 `totalOrder` (so `NaN` has a place and
//!   `-0.0 < 0.0`), which makes sets of floats and maps keyed by floats well defined. Equality
//!   and hashing agree with the order. Values of different variants order by variant.
//! - **Sets and maps keep their elements sorted** in that order, as HyperDex does.
//! - **Timestamps** are signed microseconds since the Unix epoch; the unit in the datatype only
//!   says how the value is bucketed for hashing into hyperspace.
//! - **Documents** are JSON values. They travel and are stored as their canonical JSON text
//!   (object keys sorted), so they compare and hash by that text.
//!
//! [`coerce`] is the single place where a client-supplied value is checked against (and
//! converted to) an attribute's type: ints are accepted where floats are expected, floats are
//! accepted where ints are expected (rounded to nearest), JSON text is accepted for documents.
//! [`encode`] / [`decode`] are the binary encoding (postcard) used on the wire and on disk.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

/// The element types allowed inside lists, sets and maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Primitive {
    String,
    Int,
    Float,
}

/// The bucket width of a timestamp attribute (used when hashing it into hyperspace).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TimeUnit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

impl TimeUnit {
    pub const ALL: [TimeUnit; 6] = [
        TimeUnit::Second,
        TimeUnit::Minute,
        TimeUnit::Hour,
        TimeUnit::Day,
        TimeUnit::Week,
        TimeUnit::Month,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Second => "second",
            TimeUnit::Minute => "minute",
            TimeUnit::Hour => "hour",
            TimeUnit::Day => "day",
            TimeUnit::Week => "week",
            TimeUnit::Month => "month",
        }
    }

    pub fn from_name(name: &str) -> Option<TimeUnit> {
        TimeUnit::ALL.into_iter().find(|u| u.name() == name)
    }

    /// The width of one bucket in microseconds (a month is taken as 30 days).
    pub fn micros(self) -> i64 {
        const S: i64 = 1_000_000;
        match self {
            TimeUnit::Second => S,
            TimeUnit::Minute => 60 * S,
            TimeUnit::Hour => 3600 * S,
            TimeUnit::Day => 86_400 * S,
            TimeUnit::Week => 7 * 86_400 * S,
            TimeUnit::Month => 30 * 86_400 * S,
        }
    }
}

/// The type of an attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Datatype {
    String,
    Int,
    Float,
    Document,
    Timestamp(TimeUnit),
    List(Primitive),
    Set(Primitive),
    Map(Primitive, Primitive),
}

impl Primitive {
    pub fn datatype(self) -> Datatype {
        match self {
            Primitive::String => Datatype::String,
            Primitive::Int => Datatype::Int,
            Primitive::Float => Datatype::Float,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Primitive::String => "string",
            Primitive::Int => "int",
            Primitive::Float => "float",
        }
    }
}

impl Datatype {
    /// The value an attribute of this type holds until it is written.
    pub fn default_value(self) -> Value {
        match self {
            Datatype::String => Value::String(Vec::new()),
            Datatype::Int => Value::Int(0),
            Datatype::Float => Value::Float(0.0),
            Datatype::Document => Value::Document(Document::empty()),
            Datatype::Timestamp(_) => Value::Timestamp(0),
            Datatype::List(_) => Value::List(Vec::new()),
            Datatype::Set(_) => Value::Set(BTreeSet::new()),
            Datatype::Map(_, _) => Value::Map(BTreeMap::new()),
        }
    }

    /// Whether values of this type can be hashed into a hyperspace dimension (keys and
    /// subspace attributes must be hashable).
    pub fn is_hashable(self) -> bool {
        matches!(
            self,
            Datatype::String | Datatype::Int | Datatype::Float | Datatype::Timestamp(_)
        )
    }

    /// Whether a secondary index can be built on this type.
    pub fn is_indexable(self) -> bool {
        matches!(
            self,
            Datatype::String
                | Datatype::Int
                | Datatype::Float
                | Datatype::Timestamp(_)
                | Datatype::Document
        )
    }

    /// Whether `<`, `<=`, `>=`, `>` and ranges make sense on this type.
    pub fn is_comparable(self) -> bool {
        self.is_hashable()
    }

    /// Whether the `Length*` predicates apply.
    pub fn has_length(self) -> bool {
        matches!(
            self,
            Datatype::String | Datatype::List(_) | Datatype::Set(_) | Datatype::Map(_, _)
        )
    }
}

impl fmt::Display for Datatype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Datatype::String => f.write_str("string"),
            Datatype::Int => f.write_str("int"),
            Datatype::Float => f.write_str("float"),
            Datatype::Document => f.write_str("document"),
            Datatype::Timestamp(u) => write!(f, "timestamp({})", u.name()),
            Datatype::List(p) => write!(f, "list({})", p.name()),
            Datatype::Set(p) => write!(f, "set({})", p.name()),
            Datatype::Map(k, v) => write!(f, "map({}, {})", k.name(), v.name()),
        }
    }
}

/// A JSON document, kept in canonical form (object keys sorted, no insignificant whitespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document(serde_json::Value);

impl Document {
    pub fn empty() -> Document {
        Document(serde_json::Value::Object(serde_json::Map::new()))
    }

    pub fn new(json: serde_json::Value) -> Document {
        Document(json)
    }

    /// Parses JSON text; HyperDex accepts a document as its text.
    pub fn parse(text: &[u8]) -> Result<Document, String> {
        serde_json::from_slice(text)
            .map(Document)
            .map_err(|e| format!("not a JSON document: {e}"))
    }

    pub fn json(&self) -> &serde_json::Value {
        &self.0
    }

    pub fn json_mut(&mut self) -> &mut serde_json::Value {
        &mut self.0
    }

    /// Canonical JSON text: serde_json's map is a BTreeMap (no `preserve_order`), so keys are
    /// sorted and equal documents have equal text.
    pub fn text(&self) -> String {
        self.0.to_string()
    }
}

impl Ord for Document {
    fn cmp(&self, other: &Self) -> Ordering {
        self.text().cmp(&other.text())
    }
}

impl PartialOrd for Document {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Hash for Document {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text().hash(state)
    }
}

impl Serialize for Document {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Document::parse(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// One attribute value. `Display` (and `Debug`) print it the way Python shows it:
/// `'text'`, `12`, `0.25`, `['a']`, `{'a', 'b'}`, `{'k': 1}`, documents as JSON.
///
/// Containers may nest at most [`MAX_NESTING`] levels when encoded or decoded (HyperDex's
/// containers hold primitives, so real values nest two levels at most): a hostile frame of
/// lists nested a million deep is refused while it is read, before it can exhaust a stack.
#[derive(Clone, Serialize, Deserialize)]
pub enum Value {
    // Encoded as one byte string (the same bytes as a sequence of u8 in postcard and JSON),
    // not byte by byte.
    String(#[serde(with = "serde_bytes")] Vec<u8>),
    Int(i64),
    Float(f64),
    Document(Document),
    /// Microseconds since the Unix epoch.
    Timestamp(i64),
    List(#[serde(with = "nesting")] Vec<Value>),
    Set(#[serde(with = "nesting")] BTreeSet<Value>),
    Map(#[serde(with = "nesting")] BTreeMap<Value, Value>),
}

/// How deep containers may nest in an encoded [`Value`].
pub const MAX_NESTING: usize = 8;

/// Serde helpers that count container depth on this thread (encoding and decoding are
/// synchronous, so a thread-local counter sees exactly the value being processed) and refuse
/// to go deeper than [`MAX_NESTING`].
mod nesting {
    use std::cell::Cell;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::MAX_NESTING;

    thread_local! {
        static DEPTH: Cell<usize> = const { Cell::new(0) };
    }

    /// One level of nesting, given back when dropped (also when decoding fails below it).
    struct Level;

    impl Level {
        fn enter() -> Option<Level> {
            DEPTH.with(|d| {
                (d.get() < MAX_NESTING).then(|| {
                    d.set(d.get() + 1);
                    Level
                })
            })
        }
    }

    impl Drop for Level {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        }
    }

    fn too_deep() -> String {
        format!("values nest deeper than {MAX_NESTING} levels")
    }

    pub fn serialize<T: Serialize, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        let _level = Level::enter().ok_or_else(|| serde::ser::Error::custom(too_deep()))?;
        value.serialize(s)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        let _level = Level::enter().ok_or_else(|| serde::de::Error::custom(too_deep()))?;
        T::deserialize(d)
    }
}

impl Value {
    pub fn string(s: impl AsRef<[u8]>) -> Value {
        Value::String(s.as_ref().to_vec())
    }

    fn rank(&self) -> u8 {
        match self {
            Value::String(_) => 0,
            Value::Int(_) => 1,
            Value::Float(_) => 2,
            Value::Document(_) => 3,
            Value::Timestamp(_) => 4,
            Value::List(_) => 5,
            Value::Set(_) => 6,
            Value::Map(_) => 7,
        }
    }

    /// A short name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Document(_) => "document",
            Value::Timestamp(_) => "timestamp",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Map(_) => "map",
        }
    }

    /// The number of bytes or elements, for the `Length*` predicates.
    pub fn length(&self) -> Option<u64> {
        match self {
            Value::String(s) => Some(s.len() as u64),
            Value::List(l) => Some(l.len() as u64),
            Value::Set(s) => Some(s.len() as u64),
            Value::Map(m) => Some(m.len() as u64),
            _ => None,
        }
    }

    /// Converts to JSON for display and for documents. Strings that are not UTF-8 are
    /// rendered lossily; sets become sorted arrays; maps become objects when their keys are
    /// strings and arrays of `[key, value]` pairs otherwise.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::String(s) => J::String(String::from_utf8_lossy(s).into_owned()),
            Value::Int(i) | Value::Timestamp(i) => J::from(*i),
            Value::Float(x) => serde_json::Number::from_f64(*x)
                .map(J::Number)
                .unwrap_or_else(|| J::String(x.to_string())),
            Value::Document(d) => d.json().clone(),
            Value::List(l) => J::Array(l.iter().map(Value::to_json).collect()),
            Value::Set(s) => J::Array(s.iter().map(Value::to_json).collect()),
            Value::Map(m) => {
                if m.keys().all(|k| matches!(k, Value::String(_))) {
                    J::Object(
                        m.iter()
                            .map(|(k, v)| {
                                let Value::String(k) = k else { unreachable!() };
                                (String::from_utf8_lossy(k).into_owned(), v.to_json())
                            })
                            .collect(),
                    )
                } else {
                    J::Array(
                        m.iter()
                            .map(|(k, v)| J::Array(vec![k.to_json(), v.to_json()]))
                            .collect(),
                    )
                }
            }
        }
    }

    /// Builds a value of type `ty` from JSON (the CLI's input format): an array becomes a list
    /// or a set as the type says, an object a map or a document.
    pub fn from_json(json: &serde_json::Value, ty: Datatype) -> Result<Value, String> {
        use serde_json::Value as J;
        let wrong = || format!("expected {ty}, found JSON {}", json_kind(json));
        match (ty, json) {
            (Datatype::Document, j) => Ok(Value::Document(Document::new(j.clone()))),
            (Datatype::String, J::String(s)) => Ok(Value::string(s)),
            (Datatype::Int | Datatype::Timestamp(_), J::Number(n)) => {
                let v = if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else {
                    Value::Float(n.as_f64().ok_or_else(wrong)?)
                };
                coerce(v, ty)
            }
            (Datatype::Float, J::Number(n)) => Ok(Value::Float(n.as_f64().ok_or_else(wrong)?)),
            (Datatype::List(p), J::Array(items)) => items
                .iter()
                .map(|j| Value::from_json(j, p.datatype()))
                .collect::<Result<_, _>>()
                .map(Value::List),
            (Datatype::Set(p), J::Array(items)) => items
                .iter()
                .map(|j| Value::from_json(j, p.datatype()))
                .collect::<Result<_, _>>()
                .map(Value::Set),
            (Datatype::Map(k, v), J::Object(entries)) => entries
                .iter()
                .map(|(key, val)| {
                    let key = match k {
                        Primitive::String => Value::string(key),
                        Primitive::Int => Value::Int(
                            key.parse()
                                .map_err(|_| format!("map key {key:?} is not an int"))?,
                        ),
                        Primitive::Float => Value::Float(
                            key.parse()
                                .map_err(|_| format!("map key {key:?} is not a float"))?,
                        ),
                    };
                    Ok((key, Value::from_json(val, v.datatype())?))
                })
                .collect::<Result<_, String>>()
                .map(Value::Map),
            _ => Err(wrong()),
        }
    }
}

fn json_kind(j: &serde_json::Value) -> &'static str {
    match j {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::String(a), Value::String(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Float(a), Value::Float(b)) => a.total_cmp(b),
            (Value::Document(a), Value::Document(b)) => a.cmp(b),
            (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
            (Value::List(a), Value::List(b)) => a.cmp(b),
            (Value::Set(a), Value::Set(b)) => a.cmp(b),
            (Value::Map(a), Value::Map(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.rank().hash(state);
        match self {
            Value::String(s) => s.hash(state),
            Value::Int(i) | Value::Timestamp(i) => i.hash(state),
            // total_cmp equality is bit equality, so hashing the bits agrees with Eq.
            Value::Float(x) => x.to_bits().hash(state),
            Value::Document(d) => d.hash(state),
            Value::List(l) => l.hash(state),
            Value::Set(s) => s.hash(state),
            Value::Map(m) => m.hash(state),
        }
    }
}

fn write_bytes(f: &mut fmt::Formatter<'_>, s: &[u8]) -> fmt::Result {
    f.write_str("'")?;
    for &b in s {
        match b {
            b'\\' => f.write_str("\\\\")?,
            b'\'' => f.write_str("\\'")?,
            b'\n' => f.write_str("\\n")?,
            b'\t' => f.write_str("\\t")?,
            0x20..=0x7e => write!(f, "{}", b as char)?,
            _ => write!(f, "\\x{b:02x}")?,
        }
    }
    f.write_str("'")
}

fn write_float(f: &mut fmt::Formatter<'_>, x: f64) -> fmt::Result {
    if x.is_finite() && x == x.trunc() && x.abs() < 1e16 {
        write!(f, "{x:.1}")
    } else if x.is_nan() {
        f.write_str("nan")
    } else if x.is_infinite() {
        f.write_str(if x > 0.0 { "inf" } else { "-inf" })
    } else {
        write!(f, "{x}")
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn seq<'a>(
            f: &mut fmt::Formatter<'_>,
            open: &str,
            items: impl Iterator<Item = &'a Value>,
            close: &str,
        ) -> fmt::Result {
            f.write_str(open)?;
            for (i, v) in items.enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{v}")?;
            }
            f.write_str(close)
        }
        match self {
            Value::String(s) => write_bytes(f, s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write_float(f, *x),
            Value::Document(d) => write!(f, "Document({})", d.text()),
            Value::Timestamp(t) => write!(f, "timestamp({t})"),
            Value::List(l) => seq(f, "[", l.iter(), "]"),
            Value::Set(s) if s.is_empty() => f.write_str("set()"),
            Value::Set(s) => seq(f, "{", s.iter(), "}"),
            Value::Map(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::string(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Value {
        Value::Float(x)
    }
}

/// Rounds a float to the nearest int, failing when it is not finite or out of range.
pub fn float_to_int(x: f64) -> Option<i64> {
    let r = x.round();
    // i64::MAX as f64 rounds up to 2^63, which is out of range: hence the strict bound.
    if r.is_finite() && r >= i64::MIN as f64 && r < i64::MAX as f64 {
        Some(r as i64)
    } else {
        None
    }
}

/// Checks `value` against `ty`, converting where HyperDex does (see the module docs).
/// The error says what was expected and what was found.
pub fn coerce(value: Value, ty: Datatype) -> Result<Value, String> {
    let found = value.kind();
    let wrong = || format!("expected {ty}, found {found}");
    match (ty, value) {
        (Datatype::String, v @ Value::String(_)) => Ok(v),
        (Datatype::Int, v @ Value::Int(_)) => Ok(v),
        (Datatype::Int, Value::Float(x)) => float_to_int(x)
            .map(Value::Int)
            .ok_or_else(|| format!("float {x} does not fit an int")),
        (Datatype::Float, v @ Value::Float(_)) => Ok(v),
        (Datatype::Float, Value::Int(i)) => Ok(Value::Float(i as f64)),
        (Datatype::Document, v @ Value::Document(_)) => Ok(v),
        (Datatype::Document, Value::String(s)) => Document::parse(&s).map(Value::Document),
        (Datatype::Timestamp(_), v @ Value::Timestamp(_)) => Ok(v),
        (Datatype::Timestamp(_), Value::Int(i)) => Ok(Value::Timestamp(i)),
        (Datatype::Timestamp(_), Value::Float(x)) => float_to_int(x)
            .map(Value::Timestamp)
            .ok_or_else(|| format!("float {x} does not fit a timestamp")),
        (Datatype::List(p), Value::List(items)) => items
            .into_iter()
            .map(|v| coerce(v, p.datatype()))
            .collect::<Result<_, _>>()
            .map(Value::List),
        (Datatype::Set(p), Value::Set(items)) => items
            .into_iter()
            .map(|v| coerce(v, p.datatype()))
            .collect::<Result<_, _>>()
            .map(Value::Set),
        // A list given for a set (clients without a set type send one).
        (Datatype::Set(p), Value::List(items)) => items
            .into_iter()
            .map(|v| coerce(v, p.datatype()))
            .collect::<Result<_, _>>()
            .map(Value::Set),
        (Datatype::Map(kp, vp), Value::Map(entries)) => entries
            .into_iter()
            .map(|(k, v)| Ok((coerce(k, kp.datatype())?, coerce(v, vp.datatype())?)))
            .collect::<Result<_, String>>()
            .map(Value::Map),
        _ => Err(wrong()),
    }
}

/// Encodes a value for the wire or the disk.
pub fn encode(value: &Value) -> Vec<u8> {
    // Serializing into a Vec fails only for values nested deeper than MAX_NESTING; keys (the
    // one use of this encoding) are primitives.
    postcard::to_allocvec(value).unwrap_or_default()
}

/// Decodes bytes produced by [`encode`]; never panics, whatever the input.
pub fn decode(bytes: &[u8]) -> Result<Value, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
#[path = "value_tests.rs"]
mod tests;
