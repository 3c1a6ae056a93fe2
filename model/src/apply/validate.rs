//! Validation of a call against a space's schema, before any object is read: names exist,
//! values have the attribute's type, functions apply to it. Values are coerced here.

use std::fmt::Display;

use serde_json::Value as Json;

use crate::op::{Check, Func, Funcall, KeyWrite, NumOp, Predicate, ReturnCode};
use crate::schema::{is_hidden, Space};
use crate::value::{coerce, Datatype, Value};

use super::path::*;
use super::predicate::compile_regex;
use super::{Failure, KeyNamed, Named, On};

pub(crate) fn unknown_attr(space: &Space, name: &str) -> Failure {
    Failure::new(
        ReturnCode::UnknownAttr,
        format!(
            "unknown attribute \"{name}\" in space \"{}\" (attributes: {})",
            space.name,
            space.attribute_names()
        ),
    )
}

pub(crate) fn coerce_for(
    value: &Value,
    ty: Datatype,
    what: &dyn Display,
) -> Result<Value, Failure> {
    coerce(value.clone(), ty).map_err(|e| Failure::wrong_type(format!("{what}: {e}")))
}

/// A value placed inside a document becomes JSON; strings must be UTF-8 there.
pub(crate) fn json_of(value: &Value, what: &dyn Display) -> Result<Json, Failure> {
    if let Value::String(s) = value {
        if std::str::from_utf8(s).is_err() {
            return Err(Failure::wrong_type(format!(
                "{what}: a string stored in a document must be UTF-8"
            )));
        }
    }
    Ok(value.to_json())
}

pub(crate) fn validate_check(space: &Space, check: &Check) -> Result<Check, Failure> {
    if is_hidden(&check.attr) {
        return Err(unknown_attr(space, &check.attr));
    }
    let target = resolve(space, &check.attr)?;
    let what = On(check.predicate.name(), &check.attr);
    let ty = match &target {
        Target::Key(a) | Target::Attr(a) => Some(a.datatype),
        Target::Path(..) => None,
    };
    let same = |v: &Value| -> Result<Value, Failure> {
        match ty {
            Some(ty) => coerce_for(v, ty, &what),
            None => json_of(v, &what).map(|_| v.clone()),
        }
    };
    let ordered = |v: &Value| -> Result<Value, Failure> {
        match ty {
            Some(ty) if !ty.is_comparable() => Err(Failure::wrong_type(format!(
                "{what}: attribute of type {ty} cannot be compared"
            ))),
            _ => same(v),
        }
    };
    let predicate = match &check.predicate {
        Predicate::Equals(v) => Predicate::Equals(same(v)?),
        Predicate::LessThan(v) => Predicate::LessThan(ordered(v)?),
        Predicate::LessEqual(v) => Predicate::LessEqual(ordered(v)?),
        Predicate::GreaterEqual(v) => Predicate::GreaterEqual(ordered(v)?),
        Predicate::GreaterThan(v) => Predicate::GreaterThan(ordered(v)?),
        Predicate::Range(lo, hi) => Predicate::Range(ordered(lo)?, ordered(hi)?),
        Predicate::Regex(r) => {
            if let Some(ty) = ty.filter(|t| *t != Datatype::String) {
                return Err(Failure::wrong_type(format!(
                    "{what}: regular expressions apply to strings, not {ty}"
                )));
            }
            compile_regex(r).map_err(|e| Failure::wrong_type(format!("{what}: {e}")))?;
            Predicate::Regex(r.clone())
        }
        p @ (Predicate::LengthEquals(_)
        | Predicate::LengthLessEqual(_)
        | Predicate::LengthGreaterEqual(_)) => {
            if let Some(ty) = ty.filter(|t| !t.has_length()) {
                return Err(Failure::wrong_type(format!(
                    "{what}: attribute of type {ty} has no length"
                )));
            }
            p.clone()
        }
        Predicate::Contains(v) => match ty {
            Some(Datatype::List(p) | Datatype::Set(p) | Datatype::Map(p, _)) => {
                Predicate::Contains(coerce_for(v, p.datatype(), &what)?)
            }
            Some(ty) => {
                return Err(Failure::wrong_type(format!(
                    "{what}: attribute of type {ty} has no elements"
                )))
            }
            None => Predicate::Contains(same(v)?),
        },
    };
    Ok(Check {
        attr: check.attr.clone(),
        predicate,
    })
}

/// Checks and coerces a list of search predicates.
pub fn validate_checks(space: &Space, checks: &[Check]) -> Result<Vec<Check>, Failure> {
    checks.iter().map(|c| validate_check(space, c)).collect()
}

pub(crate) fn num_arg(
    op: NumOp,
    ty: Datatype,
    v: &Value,
    what: &dyn Display,
) -> Result<Value, Failure> {
    match ty {
        Datatype::Int => coerce_for(v, Datatype::Int, what),
        Datatype::Float if op.applies_to_floats() => coerce_for(v, Datatype::Float, what),
        Datatype::Float => Err(Failure::wrong_type(format!(
            "{what}: {} does not apply to floats",
            op.suffix()
        ))),
        ty => Err(Failure::wrong_type(format!(
            "{what}: arithmetic does not apply to {ty}"
        ))),
    }
}

pub(crate) fn validate_funcall(space: &Space, fc: &Funcall) -> Result<Funcall, Failure> {
    let what = On(Named(&fc.func), &fc.attr);
    if is_hidden(&fc.attr) && !matches!(fc.func, Func::Set(_)) {
        return Err(Failure::wrong_type(format!(
            "{what}: the object's secret can only be set"
        )));
    }
    let func = match resolve(space, &fc.attr)? {
        Target::Key(_) => {
            return Err(Failure::new(
                ReturnCode::DontUseKey,
                format!(
                    "{what}: \"{}\" is the key of space \"{}\" and cannot be changed",
                    fc.attr, space.name
                ),
            ))
        }
        Target::Path(attr, _) => path_func(&attr.name, fc, &what)?,
        Target::Attr(a) => attr_func(a.datatype, fc, &what)?,
    };
    Ok(Funcall {
        attr: fc.attr.clone(),
        func,
    })
}

fn mismatch(what: &dyn Display, ty: Datatype) -> Failure {
    Failure::wrong_type(format!(
        "{what}: does not apply to an attribute of type {ty}"
    ))
}

/// A function on a path inside document attribute `doc`, with its argument checked.
fn path_func(doc: &str, fc: &Funcall, what: &dyn Display) -> Result<Func, Failure> {
    Ok(match &fc.func {
        Func::Set(v) => {
            json_of(v, what)?;
            Func::Set(v.clone())
        }
        Func::Num(op, v) => match v {
            Value::Int(_) | Value::Float(_) => Func::Num(*op, v.clone()),
            other => {
                return Err(Failure::wrong_type(format!(
                    "{what}: expected a number, found {}",
                    other.kind()
                )))
            }
        },
        Func::StringPrepend(v) | Func::StringAppend(v) => {
            let v = coerce_for(v, Datatype::String, what)?;
            json_of(&v, what)?;
            match &fc.func {
                Func::StringPrepend(_) => Func::StringPrepend(v),
                _ => Func::StringAppend(v),
            }
        }
        Func::ListLpush(v) | Func::ListRpush(v) => {
            json_of(v, what)?;
            fc.func.clone()
        }
        Func::DocumentRename(to) => {
            let rel = to
                .strip_prefix(&format!("{doc}."))
                .map(|r| format!(".{r}"))
                .unwrap_or_else(|| format!(".{to}"));
            parse_path(to, &rel).map_err(|e| Failure::wrong_type(format!("{what}: {e}")))?;
            Func::DocumentRename(rel[1..].to_string())
        }
        Func::DocumentUnset => Func::DocumentUnset,
        _ => return Err(mismatch(what, Datatype::Document)),
    })
}

/// A function on a whole attribute of type `ty`, with its arguments coerced.
fn attr_func(ty: Datatype, fc: &Funcall, what: &dyn Display) -> Result<Func, Failure> {
    let c = |v: &Value, t: Datatype| coerce_for(v, t, what);
    Ok(match (&fc.func, ty) {
        (Func::Set(v), ty) => Func::Set(c(v, ty)?),
        (Func::Num(op, v), ty) => Func::Num(*op, num_arg(*op, ty, v, what)?),
        (Func::StringPrepend(v), Datatype::String) => Func::StringPrepend(c(v, ty)?),
        (Func::StringAppend(v), Datatype::String) => Func::StringAppend(c(v, ty)?),
        (Func::StringLtrim(n) | Func::StringRtrim(n), Datatype::String) => {
            if *n < 0 {
                return Err(Failure::wrong_type(format!(
                    "{what}: cannot trim a negative number of bytes ({n})"
                )));
            }
            fc.func.clone()
        }
        (Func::ListLpush(v), Datatype::List(p)) => Func::ListLpush(c(v, p.datatype())?),
        (Func::ListRpush(v), Datatype::List(p)) => Func::ListRpush(c(v, p.datatype())?),
        (Func::SetAdd(v), Datatype::Set(p)) => Func::SetAdd(c(v, p.datatype())?),
        (Func::SetRemove(v), Datatype::Set(p)) => Func::SetRemove(c(v, p.datatype())?),
        (Func::SetUnion(v), Datatype::Set(_)) => Func::SetUnion(c(v, ty)?),
        (Func::SetIntersect(v), Datatype::Set(_)) => Func::SetIntersect(c(v, ty)?),
        (Func::MapAdd(..) | Func::MapRemove(_) | Func::MapNum(..), Datatype::Map(..))
        | (Func::MapStringPrepend(..) | Func::MapStringAppend(..), Datatype::Map(..)) => {
            map_func(ty, fc, what)?
        }
        (Func::DocumentRename(_) | Func::DocumentUnset, Datatype::Document) => {
            return Err(Failure::wrong_type(format!(
                "{what}: name a path inside the document (\"{}.field\")",
                fc.attr
            )))
        }
        (_, ty) => return Err(mismatch(what, ty)),
    })
}

/// A function on the value under one key of a map attribute of type `ty`.
fn map_func(ty: Datatype, fc: &Funcall, what: &dyn Display) -> Result<Func, Failure> {
    let Datatype::Map(kp, vp) = ty else {
        return Err(mismatch(what, ty));
    };
    let key = |k: &Value| coerce_for(k, kp.datatype(), what);
    let string_values = vp.datatype() == Datatype::String;
    Ok(match &fc.func {
        Func::MapAdd(k, v) => Func::MapAdd(key(k)?, coerce_for(v, vp.datatype(), what)?),
        Func::MapRemove(k) => Func::MapRemove(key(k)?),
        Func::MapNum(op, k, v) => Func::MapNum(*op, key(k)?, num_arg(*op, vp.datatype(), v, what)?),
        Func::MapStringPrepend(k, v) if string_values => {
            Func::MapStringPrepend(key(k)?, coerce_for(v, Datatype::String, what)?)
        }
        Func::MapStringAppend(k, v) if string_values => {
            Func::MapStringAppend(key(k)?, coerce_for(v, Datatype::String, what)?)
        }
        _ => return Err(mismatch(what, ty)),
    })
}

/// Validates a write against the schema and returns it with every value coerced to its
/// attribute's type (step 1 of the module docs).
pub fn normalize_write(space: &Space, w: &KeyWrite) -> Result<KeyWrite, Failure> {
    let key = coerce_for(&w.key, space.key.datatype, &KeyNamed(&space.key.name))?;
    if w.erase && !w.funcs.is_empty() {
        return Err(Failure::new(
            ReturnCode::Garbage,
            "a delete cannot also change attributes",
        ));
    }
    Ok(KeyWrite {
        key,
        checks: validate_checks(space, &w.checks)?,
        funcs: w
            .funcs
            .iter()
            .map(|f| validate_funcall(space, f))
            .collect::<Result<_, _>>()?,
        existence: w.existence,
        erase: w.erase,
    })
}

/// Validates the attribute list of `get_partial` (only plain attributes can be named).
pub fn validate_get_partial(space: &Space, attrs: &[String]) -> Result<(), Failure> {
    for a in attrs {
        if space.attribute(a).is_none() || is_hidden(a) {
            return Err(if *a == space.key.name {
                Failure::new(
                    ReturnCode::DontUseKey,
                    format!("\"{a}\" is the key; get_partial returns attributes"),
                )
            } else {
                unknown_attr(space, a)
            });
        }
    }
    Ok(())
}
