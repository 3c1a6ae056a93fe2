//! Arithmetic of the atomic calls on ints and floats (and numbers inside documents): integer
//! overflow and division by zero fail, floor division, IEEE 754 floats.

use std::fmt::Display;

use serde_json::Value as Json;

use crate::op::NumOp;
use crate::value::Value;

use super::path::*;
use super::Failure;

pub(crate) fn int_op(op: NumOp, a: i64, b: i64) -> Result<i64, &'static str> {
    const OVERFLOW: &str = "integer overflow";
    match op {
        NumOp::Add => a.checked_add(b).ok_or(OVERFLOW),
        NumOp::Sub => a.checked_sub(b).ok_or(OVERFLOW),
        NumOp::Mul => a.checked_mul(b).ok_or(OVERFLOW),
        NumOp::Div => {
            if b == 0 {
                return Err("division by zero");
            }
            let q = a.checked_div(b).ok_or(OVERFLOW)?;
            Ok(if a % b != 0 && ((a < 0) != (b < 0)) {
                q - 1
            } else {
                q
            })
        }
        NumOp::Mod => {
            if b == 0 {
                return Err("modulo by zero");
            }
            let r = a.checked_rem(b).ok_or(OVERFLOW)?;
            Ok(if r != 0 && ((r < 0) != (b < 0)) {
                r + b
            } else {
                r
            })
        }
        NumOp::And => Ok(a & b),
        NumOp::Or => Ok(a | b),
        NumOp::Xor => Ok(a ^ b),
        NumOp::Min => Ok(a.min(b)),
        NumOp::Max => Ok(a.max(b)),
    }
}

pub(crate) fn float_op(op: NumOp, a: f64, b: f64) -> Option<f64> {
    match op {
        NumOp::Add => Some(a + b),
        NumOp::Sub => Some(a - b),
        NumOp::Mul => Some(a * b),
        NumOp::Div => Some(a / b),
        NumOp::Min => Some(a.min(b)),
        NumOp::Max => Some(a.max(b)),
        _ => None,
    }
}

/// Applies an arithmetic function to a value of the (validated) same kind.
pub(crate) fn num(
    op: NumOp,
    old: &Value,
    arg: &Value,
    what: &dyn Display,
) -> Result<Value, Failure> {
    match (old, arg) {
        (Value::Int(a), Value::Int(b)) => int_op(op, *a, *b)
            .map(Value::Int)
            .map_err(|e| Failure::cmpfail(format!("{e} in {what}"))),
        (Value::Float(a), Value::Float(b)) => {
            float_op(op, *a, *b).map(Value::Float).ok_or_else(|| {
                Failure::cmpfail(format!(
                    "{} does not apply to floats in {what}",
                    op.suffix()
                ))
            })
        }
        _ => Err(Failure::cmpfail(format!(
            "{what}: cannot apply to a {} with a {}",
            old.kind(),
            arg.kind()
        ))),
    }
}

pub(crate) fn json_num(
    op: NumOp,
    old: Option<&Json>,
    arg: &Value,
    what: &dyn Display,
) -> Result<Json, Failure> {
    let old = match old {
        None => Value::Int(0),
        Some(Json::Number(n)) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Some(other) => {
            return Err(Failure::cmpfail(format!(
                "{what}: the document holds {}, not a number",
                json_type_name(other)
            )))
        }
    };
    let (old, arg) = match (&old, arg) {
        (Value::Int(_), Value::Int(_)) => (old, arg.clone()),
        (Value::Int(a), Value::Float(_)) => (Value::Float(*a as f64), arg.clone()),
        (Value::Float(_), Value::Int(b)) => (old, Value::Float(*b as f64)),
        _ => (old, arg.clone()),
    };
    Ok(num(op, &old, &arg, what)?.to_json())
}
