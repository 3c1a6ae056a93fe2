//! Document paths: `v.a.b[3]` inside a document attribute, resolved against a space and
//! followed, read or changed inside a JSON value.

use std::fmt::Display;

use serde_json::Value as Json;

use crate::op::{Func, ReturnCode};
use crate::schema::{Attribute, Space};
use crate::value::{Datatype, Value};

use super::arith::*;
use super::validate::*;
use super::Failure;

/// One step of a document path: an object field or an array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    Field(String),
    Index(usize),
}

/// What an attribute name in a call refers to.
#[derive(Clone, Debug)]
pub enum Target<'a> {
    Key(&'a Attribute),
    Attr(&'a Attribute),
    /// A path inside a document attribute.
    Path(&'a Attribute, Vec<PathSeg>),
}

/// Parses `a.b[3].c` (the part after the document attribute's name).
pub fn parse_path(full: &str, rest: &str) -> Result<Vec<PathSeg>, String> {
    let bad = || format!("malformed document path \"{full}\"");
    let mut segs = Vec::new();
    let mut s = rest;
    while !s.is_empty() {
        if let Some(r) = s.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err(bad());
            }
            segs.push(PathSeg::Field(r[..end].to_string()));
            s = &r[end..];
        } else if let Some(r) = s.strip_prefix('[') {
            let end = r.find(']').ok_or_else(bad)?;
            let idx = r[..end].parse::<usize>().map_err(|_| bad())?;
            segs.push(PathSeg::Index(idx));
            s = &r[end + 1..];
        } else {
            return Err(bad());
        }
    }
    if segs.is_empty() {
        return Err(bad());
    }
    Ok(segs)
}

/// Resolves an attribute name (possibly a document path) in `space`.
pub fn resolve<'a>(space: &'a Space, name: &str) -> Result<Target<'a>, Failure> {
    if name == space.key.name {
        return Ok(Target::Key(&space.key));
    }
    if let Some(a) = space.attribute(name) {
        return Ok(Target::Attr(a));
    }
    if let Some(pos) = name.find(['.', '[']) {
        if let Some(a) = space.attribute(&name[..pos]) {
            if a.datatype == Datatype::Document {
                let segs = parse_path(name, &name[pos..])
                    .map_err(|e| Failure::new(ReturnCode::UnknownAttr, e))?;
                return Ok(Target::Path(a, segs));
            }
            return Err(Failure::new(
                ReturnCode::UnknownAttr,
                format!(
                    "\"{name}\" is a path, but attribute \"{}\" is a {}, not a document",
                    a.name, a.datatype
                ),
            ));
        }
    }
    Err(unknown_attr(space, name))
}

pub(crate) fn json_at<'a>(root: &'a Json, path: &[PathSeg]) -> Option<&'a Json> {
    path.iter().try_fold(root, |j, seg| match seg {
        PathSeg::Field(f) => j.as_object()?.get(f),
        PathSeg::Index(i) => j.as_array()?.get(*i),
    })
}

pub(crate) fn json_type_name(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

pub(crate) fn path_text(path: &[PathSeg]) -> String {
    path.iter()
        .map(|s| match s {
            PathSeg::Field(f) => format!(".{f}"),
            PathSeg::Index(i) => format!("[{i}]"),
        })
        .collect()
}

/// The slot at `path`, creating missing object fields on the way. Fails when the path goes
/// through something that is not an object (or an array, for an index in range).
pub(crate) fn slot_mut<'a>(
    root: &'a mut Json,
    path: &[PathSeg],
    what: &dyn Display,
) -> Result<&'a mut Json, Failure> {
    let mut j = root;
    for (i, seg) in path.iter().enumerate() {
        let here = path_text(&path[..i]);
        if matches!(seg, PathSeg::Field(_)) && j.is_null() {
            *j = Json::Object(serde_json::Map::new());
        }
        let fits = match (seg, &*j) {
            (PathSeg::Field(_), Json::Object(_)) => true,
            (PathSeg::Index(idx), Json::Array(a)) => *idx < a.len(),
            _ => false,
        };
        if !fits {
            let wanted = match seg {
                PathSeg::Field(_) => "an object".to_string(),
                PathSeg::Index(idx) => format!("an array with element {idx}"),
            };
            return Err(Failure::cmpfail(format!(
                "{what}: document path \"{here}\" holds {}, not {wanted}",
                json_type_name(j)
            )));
        }
        j = match (seg, j) {
            (PathSeg::Field(f), Json::Object(o)) => o.entry(f.clone()).or_insert(Json::Null),
            (PathSeg::Index(idx), Json::Array(a)) => &mut a[*idx],
            _ => unreachable!("checked above"),
        };
    }
    Ok(j)
}

/// Removes and returns the value at `path`, failing when it is missing.
pub(crate) fn take_path(
    root: &mut Json,
    path: &[PathSeg],
    what: &dyn Display,
) -> Result<Json, Failure> {
    let missing = || {
        Failure::cmpfail(format!(
            "{what}: no value at document path \"{}\"",
            path_text(path)
        ))
    };
    let (last, parent) = path.split_last().ok_or_else(missing)?;
    let parent = parent.iter().try_fold(root, |j, seg| match seg {
        PathSeg::Field(f) => j.as_object_mut()?.get_mut(f),
        PathSeg::Index(i) => j.as_array_mut()?.get_mut(*i),
    });
    match (parent, last) {
        (Some(Json::Object(o)), PathSeg::Field(f)) => o.remove(f).ok_or_else(missing),
        (Some(Json::Array(a)), PathSeg::Index(i)) if *i < a.len() => Ok(a.remove(*i)),
        _ => Err(missing()),
    }
}

pub(crate) fn apply_path(
    doc: &mut Json,
    path: &[PathSeg],
    func: &Func,
    what: &dyn Display,
) -> Result<(), Failure> {
    match func {
        Func::Set(v) => *slot_mut(doc, path, what)? = v.to_json(),
        Func::Num(op, arg) => {
            let existing = json_at(doc, path).cloned();
            let new = json_num(*op, existing.as_ref().filter(|j| !j.is_null()), arg, what)?;
            *slot_mut(doc, path, what)? = new;
        }
        Func::StringPrepend(Value::String(s)) | Func::StringAppend(Value::String(s)) => {
            let slot = slot_mut(doc, path, what)?;
            let add = String::from_utf8_lossy(s);
            let old = match slot {
                Json::Null => String::new(),
                Json::String(old) => std::mem::take(old),
                other => {
                    return Err(Failure::cmpfail(format!(
                        "{what}: the document holds {}, not a string",
                        json_type_name(other)
                    )))
                }
            };
            *slot = Json::String(if matches!(func, Func::StringPrepend(_)) {
                format!("{add}{old}")
            } else {
                format!("{old}{add}")
            });
        }
        Func::ListLpush(v) | Func::ListRpush(v) => {
            let slot = slot_mut(doc, path, what)?;
            if slot.is_null() {
                *slot = Json::Array(Vec::new());
            }
            match slot {
                Json::Array(a) if matches!(func, Func::ListLpush(_)) => a.insert(0, v.to_json()),
                Json::Array(a) => a.push(v.to_json()),
                other => {
                    return Err(Failure::cmpfail(format!(
                        "{what}: the document holds {}, not an array",
                        json_type_name(other)
                    )))
                }
            }
        }
        Func::DocumentUnset => {
            take_path(doc, path, what)?;
        }
        Func::DocumentRename(to) => {
            let to = parse_path(to, &format!(".{to}"))
                .map_err(|e| Failure::cmpfail(format!("{what}: {e}")))?;
            let v = take_path(doc, path, what)?;
            *slot_mut(doc, &to, what)? = v;
        }
        _ => {
            return Err(Failure::cmpfail(format!(
                "{what}: does not apply inside a document"
            )))
        }
    }
    Ok(())
}
