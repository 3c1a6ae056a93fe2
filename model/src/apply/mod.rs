//! The meaning of a write: `apply(space, current object, write) -> new object or a code`.
//!
//! This is the one definition of HyperDex's semantics in the project; daemons call it at the
//! head of a chain to compute new objects, and the model calls it to say what a correct
//! sequential copy of the database answers.
//!
//! Steps, in order (the first failure wins and nothing changes):
//!
//! 1. **Validation** ([`normalize_write`]), independent of the stored object: every attribute
//!    named exists (else UNKNOWNATTR), the key is not named as an attribute to change (else
//!    DONTUSEKEY), every value has the attribute's type and every function applies to it (else
//!    WRONGTYPE). Values are coerced here (see [`crate::value::coerce`]). Clients run this
//!    before sending anything; servers run it again and never trust the client.
//! 2. **Existence**: a missing object gives NOTFOUND to `del` and to every call that must find
//!    it; an existing object gives CMPFAIL to `put_if_not_exist`.
//! 3. **Checks**: every check must pass on the existing object, else CMPFAIL saying which one.
//!    (`cond_put_or_create` on a missing object creates it without checking.)
//! 4. **Functions**, applied in the order given to a copy of the object (a missing object
//!    starts from every attribute's default). A function that cannot be applied — integer
//!    overflow, division or modulo by zero, `INT64_MIN / -1` or `% -1`, a document path through
//!    a value of the wrong type, renaming or unsetting a missing path — fails the whole call
//!    with CMPFAIL and a reason such as `integer overflow in atomic_add on "n"`.
//!
//! Integer division and modulo round toward negative infinity (the remainder takes the
//! divisor's sign). Float arithmetic is IEEE 754 and never fails.

use std::fmt::Display;

mod arith;
mod path;
mod predicate;
mod validate;

use std::collections::BTreeSet;

use crate::op::{Check, Existence, Func, KeyWrite, Object, Reply, ReturnCode};
use crate::schema::Space;
use crate::value::Value;

use arith::*;
use path::*;
pub use path::{parse_path, resolve, PathSeg, Target};
pub use predicate::{matches, passes};
pub use validate::{normalize_write, validate_checks, validate_get_partial};

/// What a failure is about, `<function> on "<attribute>"`; formatted only when a failure is
/// reported, not for every call.
pub(crate) struct On<'a, N>(pub N, pub &'a str);

impl<N: Display> Display for On<'_, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on \"{}\"", self.0, self.1)
    }
}

/// A function's name (see [`Func::name`]), as [`On`] shows it.
pub(crate) struct Named<'a>(pub &'a Func);

impl Display for Named<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.name())
    }
}

/// The key attribute of that name, as a failure names it.
pub(crate) struct KeyNamed<'a>(pub &'a str);

impl Display for KeyNamed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key \"{}\"", self.0)
    }
}

/// Why a call failed: a code and a message for users.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason} [{code}]")]
pub struct Failure {
    pub code: ReturnCode,
    pub reason: String,
}

impl Failure {
    pub fn new(code: ReturnCode, reason: impl Into<String>) -> Failure {
        Failure {
            code,
            reason: reason.into(),
        }
    }

    pub(crate) fn wrong_type(reason: impl Into<String>) -> Failure {
        Failure::new(ReturnCode::WrongType, reason)
    }

    pub(crate) fn cmpfail(reason: impl Into<String>) -> Failure {
        Failure::new(ReturnCode::CmpFail, reason)
    }

    /// The reply a client receives for this failure.
    pub fn into_reply(self) -> Reply {
        match self.code {
            ReturnCode::NotFound => Reply::NotFound,
            ReturnCode::CmpFail => Reply::CmpFail(self.reason),
            code => Reply::Error(code, self.reason),
        }
    }
}

/// A new object with every attribute at its default.
pub fn default_object(space: &Space) -> Object {
    space
        .attributes
        .iter()
        .map(|a| (a.name.clone(), a.datatype.default_value()))
        .collect()
}

fn apply_attr(old: Value, func: &Func, what: &dyn Display) -> Result<Value, Failure> {
    Ok(match (old, func) {
        (_, Func::Set(v)) => v.clone(),
        (old, Func::Num(op, arg)) => num(*op, &old, arg, what)?,
        (Value::String(mut s), Func::StringPrepend(Value::String(p))) => {
            s.splice(0..0, p.iter().copied());
            Value::String(s)
        }
        (Value::String(mut s), Func::StringAppend(Value::String(p))) => {
            s.extend_from_slice(p);
            Value::String(s)
        }
        (Value::String(mut s), Func::StringLtrim(n)) => {
            let n = (*n as u64).min(s.len() as u64) as usize;
            s.drain(..n);
            Value::String(s)
        }
        (Value::String(mut s), Func::StringRtrim(n)) => {
            let n = (*n as u64).min(s.len() as u64) as usize;
            s.truncate(s.len() - n);
            Value::String(s)
        }
        (Value::List(mut l), Func::ListLpush(v)) => {
            l.insert(0, v.clone());
            Value::List(l)
        }
        (Value::List(mut l), Func::ListRpush(v)) => {
            l.push(v.clone());
            Value::List(l)
        }
        (Value::Set(mut s), Func::SetAdd(v)) => {
            s.insert(v.clone());
            Value::Set(s)
        }
        (Value::Set(mut s), Func::SetRemove(v)) => {
            s.remove(v);
            Value::Set(s)
        }
        (Value::Set(mut s), Func::SetUnion(Value::Set(o))) => {
            s.extend(o.iter().cloned());
            Value::Set(s)
        }
        (Value::Set(s), Func::SetIntersect(Value::Set(o))) => {
            Value::Set(s.intersection(o).cloned().collect::<BTreeSet<_>>())
        }
        (Value::Map(mut m), Func::MapAdd(k, v)) => {
            m.insert(k.clone(), v.clone());
            Value::Map(m)
        }
        (Value::Map(mut m), Func::MapRemove(k)) => {
            m.remove(k);
            Value::Map(m)
        }
        (Value::Map(mut m), Func::MapNum(op, k, arg)) => {
            let zero = match arg {
                Value::Float(_) => Value::Float(0.0),
                _ => Value::Int(0),
            };
            let old = m.get(k).cloned().unwrap_or(zero);
            m.insert(k.clone(), num(*op, &old, arg, what)?);
            Value::Map(m)
        }
        (Value::Map(mut m), Func::MapStringPrepend(k, Value::String(p))) => {
            let mut s = match m.remove(k) {
                Some(Value::String(s)) => s,
                _ => Vec::new(),
            };
            s.splice(0..0, p.iter().copied());
            m.insert(k.clone(), Value::String(s));
            Value::Map(m)
        }
        (Value::Map(mut m), Func::MapStringAppend(k, Value::String(p))) => {
            let mut s = match m.remove(k) {
                Some(Value::String(s)) => s,
                _ => Vec::new(),
            };
            s.extend_from_slice(p);
            m.insert(k.clone(), Value::String(s));
            Value::Map(m)
        }
        (old, func) => {
            return Err(Failure::cmpfail(format!(
                "{what}: {} cannot be applied to a {}",
                func.name(),
                old.kind()
            )))
        }
    })
}

fn check_reason(c: &Check) -> String {
    format!("check {} on \"{}\" failed", c.predicate.name(), c.attr)
}

/// Applies a write to the current object (`None`: the key has no object) and returns the
/// new object (`None`: the object is deleted), or why nothing changed.
pub fn apply(
    space: &Space,
    current: Option<&Object>,
    write: &KeyWrite,
) -> Result<Option<Object>, Failure> {
    let w = normalize_write(space, write)?;
    match current {
        None if w.erase || w.existence == Existence::MustExist => {
            return Err(Failure::new(ReturnCode::NotFound, "not found"))
        }
        Some(_) if w.existence == Existence::MustNotExist => {
            return Err(Failure::cmpfail("the object already exists"))
        }
        Some(obj) => {
            if let Some(c) = w.checks.iter().find(|c| !passes(space, &w.key, obj, c)) {
                return Err(Failure::cmpfail(check_reason(c)));
            }
        }
        None => {}
    }
    if w.erase {
        return Ok(None);
    }
    let mut obj = match current {
        Some(o) => o.clone(),
        None => default_object(space),
    };
    for fc in &w.funcs {
        let what = On(Named(&fc.func), &fc.attr);
        match resolve(space, &fc.attr)? {
            Target::Key(_) => unreachable!("normalize_write rejects the key"),
            Target::Attr(a) => {
                let old = obj
                    .remove(&a.name)
                    .unwrap_or_else(|| a.datatype.default_value());
                obj.insert(a.name.clone(), apply_attr(old, &fc.func, &what)?);
            }
            Target::Path(a, path) => {
                let Some(Value::Document(doc)) = obj.get_mut(&a.name) else {
                    return Err(Failure::cmpfail(format!("{what}: not a document")));
                };
                apply_path(doc.json_mut(), &path, &fc.func, &what)?;
            }
        }
    }
    Ok(Some(obj))
}

#[cfg(test)]
mod tests {
    use super::arith::*;
    use super::predicate::*;
    use super::*;
    use crate::op::Operation;
    use crate::op::*;
    use crate::schema::parse_space;
    use crate::value::*;

    fn space() -> Space {
        parse_space(
            "space t key k attributes string s, int i, float f, list(string) ls, set(int) si, \
             map(string, int) msi, map(string, float) msf, document d",
        )
        .unwrap()
    }

    fn write(op: Operation) -> KeyWrite {
        match op {
            Operation::Write { write, .. } => write,
            _ => unreachable!(),
        }
    }

    fn obj_with(attrs: Vec<(&str, Value)>) -> Object {
        let s = space();
        apply(&s, None, &write(Operation::put("t", "k", attrs)))
            .unwrap()
            .unwrap()
    }

    fn run(obj: &Object, op: Operation) -> Result<Option<Object>, Failure> {
        apply(&space(), Some(obj), &write(op))
    }

    #[test]
    fn int_division_floors_and_modulo_takes_the_divisors_sign() {
        assert_eq!(int_op(NumOp::Div, -7, 2), Ok(-4));
        assert_eq!(int_op(NumOp::Div, 7, -2), Ok(-4));
        assert_eq!(int_op(NumOp::Div, -8, 2), Ok(-4));
        assert_eq!(int_op(NumOp::Mod, -7, 2), Ok(1));
        assert_eq!(int_op(NumOp::Mod, 7, -2), Ok(-1));
        assert_eq!(int_op(NumOp::Div, i64::MIN, -1), Err("integer overflow"));
        assert_eq!(int_op(NumOp::Mod, i64::MIN, -1), Err("integer overflow"));
        assert_eq!(int_op(NumOp::Div, 1, 0), Err("division by zero"));
        assert_eq!(int_op(NumOp::Mod, 1, 0), Err("modulo by zero"));
    }

    #[test]
    fn overflow_is_cmpfail_with_a_reason_and_changes_nothing() {
        let obj = obj_with(vec![("i", Value::Int(i64::MAX)), ("s", "x".into())]);
        let err = run(
            &obj,
            Operation::funcs(
                "t",
                "k",
                vec![
                    Funcall::new("s", Func::StringAppend("y".into())),
                    Funcall::new("i", Func::Num(NumOp::Add, Value::Int(1))),
                ],
            ),
        )
        .unwrap_err();
        assert_eq!(err.code, ReturnCode::CmpFail);
        assert_eq!(err.reason, "integer overflow in atomic_add on \"i\"");
    }

    #[test]
    fn the_same_attribute_may_be_named_several_times_in_order() {
        let obj = obj_with(vec![("i", Value::Int(2))]);
        let new = run(
            &obj,
            Operation::funcs(
                "t",
                "k",
                vec![
                    Funcall::new("i", Func::Num(NumOp::Add, Value::Int(3))),
                    Funcall::new("i", Func::Num(NumOp::Mul, Value::Int(10))),
                ],
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(new["i"], Value::Int(50));
    }

    #[test]
    fn float_ops_outside_ieee_arithmetic_are_wrongtype() {
        let obj = obj_with(vec![]);
        let err = run(
            &obj,
            Operation::atomic(NumOp::Mod, "t", "k", vec![("f", 2.0.into())]),
        )
        .unwrap_err();
        assert_eq!(err.code, ReturnCode::WrongType);
        let new = run(
            &obj,
            Operation::atomic(NumOp::Div, "t", "k", vec![("f", 0.0.into())]),
        )
        .unwrap()
        .unwrap();
        assert!(matches!(new["f"], Value::Float(x) if x.is_nan()));
    }

    #[test]
    fn errors_name_the_problem() {
        let obj = obj_with(vec![]);
        let err = run(&obj, Operation::put("t", "k", vec![("frist", "x".into())])).unwrap_err();
        assert_eq!(err.code, ReturnCode::UnknownAttr);
        assert!(err
            .reason
            .contains("unknown attribute \"frist\" in space \"t\""));
        let err = run(&obj, Operation::put("t", "k", vec![("k", "x".into())])).unwrap_err();
        assert_eq!(err.code, ReturnCode::DontUseKey);
        let err = run(&obj, Operation::put("t", "k", vec![("i", "x".into())])).unwrap_err();
        assert_eq!(err.code, ReturnCode::WrongType);
        assert_eq!(err.reason, "put on \"i\": expected int, found string");
        let err = apply(&space(), None, &write(Operation::put("t", 5i64, vec![]))).unwrap_err();
        assert_eq!(err.code, ReturnCode::WrongType);
    }

    #[test]
    fn maps_sets_and_strings() {
        let obj = obj_with(vec![("s", "abcdef".into())]);
        let new = run(
            &obj,
            Operation::funcs(
                "t",
                "k",
                vec![
                    Funcall::new("s", Func::StringLtrim(2)),
                    Funcall::new("s", Func::StringRtrim(10)),
                    Funcall::new("si", Func::SetAdd(Value::Int(3))),
                    Funcall::new("si", Func::SetAdd(Value::Int(1))),
                    Funcall::new("msi", Func::MapNum(NumOp::Sub, "a".into(), Value::Int(5))),
                    Funcall::new("msf", Func::MapNum(NumOp::Add, "b".into(), Value::Int(1))),
                ],
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(new["s"], Value::string(""));
        assert_eq!(new["si"], Value::Set([Value::Int(1), Value::Int(3)].into()));
        assert_eq!(
            new["msi"],
            Value::Map([("a".into(), Value::Int(-5))].into())
        );
        assert_eq!(
            new["msf"],
            Value::Map([("b".into(), Value::Float(1.0))].into())
        );
    }

    #[test]
    fn documents_by_path() {
        let obj = obj_with(vec![(
            "d",
            Value::string(r#"{"a": {"b": 1}, "l": [1, "x"], "s": "str"}"#),
        )]);
        let new = run(
            &obj,
            Operation::funcs(
                "t",
                "k",
                vec![
                    Funcall::new("d.a.b", Func::Num(NumOp::Add, Value::Int(2))),
                    Funcall::new("d.a.c", Func::Set("new".into())),
                    Funcall::new("d.l", Func::ListRpush(Value::Int(7))),
                    Funcall::new("d.s", Func::DocumentRename("t".into())),
                ],
            ),
        )
        .unwrap()
        .unwrap();
        let Value::Document(d) = &new["d"] else {
            panic!()
        };
        assert_eq!(
            d.text(),
            r#"{"a":{"b":3,"c":"new"},"l":[1,"x",7],"t":"str"}"#
        );
        let s = space();
        assert!(passes(
            &s,
            &"k".into(),
            &new,
            &Check::new("d.a.b", Predicate::GreaterThan(Value::Int(2)))
        ));
        assert!(passes(
            &s,
            &"k".into(),
            &new,
            &Check::new("d.l[2]", Predicate::Equals(Value::Int(7)))
        ));

        for bad in [
            Funcall::new("d.s.x", Func::Set(Value::Int(1))),
            Funcall::new("d.s", Func::Num(NumOp::Add, Value::Int(1))),
            Funcall::new("d.missing", Func::DocumentUnset),
            Funcall::new("d.nope", Func::DocumentRename("x".into())),
            Funcall::new("d.l[9]", Func::Set(Value::Int(1))),
        ] {
            let err = run(&obj, Operation::funcs("t", "k", vec![bad.clone()])).unwrap_err();
            assert_eq!(err.code, ReturnCode::CmpFail, "{bad:?}");
        }
    }

    #[test]
    fn checks_and_existence() {
        let s = space();
        let put = write(Operation::put_if_not_exist("t", "k", vec![]));
        let obj = apply(&s, None, &put).unwrap().unwrap();
        assert_eq!(
            apply(&s, Some(&obj), &put).unwrap_err().code,
            ReturnCode::CmpFail
        );
        let del = write(Operation::del("t", "k"));
        assert_eq!(
            apply(&s, None, &del).unwrap_err().code,
            ReturnCode::NotFound
        );
        assert_eq!(apply(&s, Some(&obj), &del), Ok(None));
        let cond = write(Operation::cond_put(
            "t",
            "k",
            vec![Check::new("i", Predicate::Equals(Value::Int(1)))],
            vec![("s", "x".into())],
        ));
        let err = apply(&s, Some(&obj), &cond).unwrap_err();
        assert_eq!(err.reason, "check Equals on \"i\" failed");
        assert_eq!(
            apply(&s, None, &cond).unwrap_err().code,
            ReturnCode::NotFound
        );
        let create = write(Operation::cond_put_or_create(
            "t",
            "k",
            vec![Check::new("i", Predicate::Equals(Value::Int(1)))],
            vec![("s", "x".into())],
        ));
        assert!(apply(&s, None, &create).unwrap().is_some());
        assert_eq!(
            apply(&s, Some(&obj), &create).unwrap_err().code,
            ReturnCode::CmpFail
        );
        let regex = write(Operation::cond_put(
            "t",
            "k",
            vec![Check::new("s", Predicate::Regex("(".into()))],
            vec![],
        ));
        assert_eq!(
            apply(&s, Some(&obj), &regex).unwrap_err().code,
            ReturnCode::WrongType
        );
    }

    #[test]
    fn regular_expressions_have_a_size_limit() {
        let s = space();
        for (re, why) in [
            ("a".repeat(5000), "over the limit"),
            ("(a{1000}){1000}".to_string(), "invalid regular expression"),
        ] {
            let err = validate_checks(&s, &[Check::new("s", Predicate::Regex(re))]).unwrap_err();
            assert_eq!(err.code, ReturnCode::WrongType);
            assert!(err.reason.contains(why), "{}", err.reason);
        }
        assert!(validate_checks(&s, &[Check::new("s", Predicate::Regex("^a.*b$".into()))]).is_ok());
    }
}
