//! Predicates: whether an object passes a check (a value, a range, a regex, a length, an
//! element), on plain attributes and on document paths.

use std::cmp::Ordering;

use serde_json::Value as Json;

use crate::op::{Check, Object, Predicate};
use crate::schema::Space;
use crate::value::Value;

use super::path::*;

pub(crate) fn json_cmp(a: &Json, b: &Json) -> Option<Ordering> {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Json::String(x), Json::String(y)) => Some(x.cmp(y)),
        (Json::Bool(x), Json::Bool(y)) => Some(x.cmp(y)),
        (Json::Null, Json::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

pub(crate) fn json_eq(a: &Json, b: &Json) -> bool {
    json_cmp(a, b).map_or(a == b, |o| o == Ordering::Equal)
}

/// The longest regular expression a check may carry, in bytes.
pub const MAX_REGEX_LEN: usize = 4096;
/// The most memory one compiled regular expression may take.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Compiled regular expressions kept per thread (a search compiles its pattern once, not
/// once per object it scans).
const REGEX_CACHE: usize = 64;

thread_local! {
    static COMPILED: std::cell::RefCell<std::collections::BTreeMap<String, regex::bytes::Regex>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

/// Compiles a check's regular expression within the size limits, or says why not.
pub(crate) fn compile_regex(re: &str) -> Result<regex::bytes::Regex, String> {
    if re.len() > MAX_REGEX_LEN {
        return Err(format!(
            "the regular expression is {} bytes, over the limit of {MAX_REGEX_LEN}",
            re.len()
        ));
    }
    regex::bytes::RegexBuilder::new(re)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("invalid regular expression: {e}"))
}

pub(crate) fn regex_matches(re: &str, bytes: &[u8]) -> bool {
    COMPILED.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(re) {
            let Ok(compiled) = compile_regex(re) else {
                return false;
            };
            if cache.len() >= REGEX_CACHE {
                cache.clear();
            }
            cache.insert(re.to_string(), compiled);
        }
        cache.get(re).is_some_and(|r| r.is_match(bytes))
    })
}

pub(crate) fn value_passes(v: &Value, p: &Predicate) -> bool {
    match p {
        Predicate::Equals(x) => v == x,
        Predicate::LessThan(x) => v < x,
        Predicate::LessEqual(x) => v <= x,
        Predicate::GreaterEqual(x) => v >= x,
        Predicate::GreaterThan(x) => v > x,
        Predicate::Range(lo, hi) => lo <= v && v <= hi,
        Predicate::Regex(r) => matches!(v, Value::String(s) if regex_matches(r, s)),
        Predicate::LengthEquals(n) => v.length() == Some(*n),
        Predicate::LengthLessEqual(n) => v.length().is_some_and(|l| l <= *n),
        Predicate::LengthGreaterEqual(n) => v.length().is_some_and(|l| l >= *n),
        Predicate::Contains(x) => match v {
            Value::List(l) => l.contains(x),
            Value::Set(s) => s.contains(x),
            Value::Map(m) => m.contains_key(x),
            _ => false,
        },
    }
}

pub(crate) fn json_passes(j: &Json, p: &Predicate) -> bool {
    let cmp = |x: &Value| json_cmp(j, &x.to_json());
    let length = || match j {
        Json::String(s) => Some(s.len() as u64),
        Json::Array(a) => Some(a.len() as u64),
        Json::Object(o) => Some(o.len() as u64),
        _ => None,
    };
    match p {
        Predicate::Equals(x) => json_eq(j, &x.to_json()),
        Predicate::LessThan(x) => cmp(x) == Some(Ordering::Less),
        Predicate::LessEqual(x) => matches!(cmp(x), Some(Ordering::Less | Ordering::Equal)),
        Predicate::GreaterEqual(x) => {
            matches!(cmp(x), Some(Ordering::Greater | Ordering::Equal))
        }
        Predicate::GreaterThan(x) => cmp(x) == Some(Ordering::Greater),
        Predicate::Range(lo, hi) => {
            matches!(cmp(lo), Some(Ordering::Greater | Ordering::Equal))
                && matches!(cmp(hi), Some(Ordering::Less | Ordering::Equal))
        }
        Predicate::Regex(r) => matches!(j, Json::String(s) if regex_matches(r, s.as_bytes())),
        Predicate::LengthEquals(n) => length() == Some(*n),
        Predicate::LengthLessEqual(n) => length().is_some_and(|l| l <= *n),
        Predicate::LengthGreaterEqual(n) => length().is_some_and(|l| l >= *n),
        Predicate::Contains(x) => {
            let x = x.to_json();
            match (j, &x) {
                (Json::Array(a), x) => a.iter().any(|e| json_eq(e, x)),
                (Json::Object(o), Json::String(k)) => o.contains_key(k),
                _ => false,
            }
        }
    }
}

/// Whether the object with `key` passes one (validated) check.
pub fn passes(space: &Space, key: &Value, object: &Object, check: &Check) -> bool {
    match resolve(space, &check.attr) {
        Ok(Target::Key(_)) => value_passes(key, &check.predicate),
        Ok(Target::Attr(a)) => object
            .get(&a.name)
            .is_some_and(|v| value_passes(v, &check.predicate)),
        Ok(Target::Path(a, path)) => match object.get(&a.name) {
            Some(Value::Document(d)) => {
                json_at(d.json(), &path).is_some_and(|j| json_passes(j, &check.predicate))
            }
            _ => false,
        },
        Err(_) => false,
    }
}

/// Whether the object passes every (validated) check.
pub fn matches(space: &Space, key: &Value, object: &Object, checks: &[Check]) -> bool {
    checks.iter().all(|c| passes(space, key, object, c))
}
