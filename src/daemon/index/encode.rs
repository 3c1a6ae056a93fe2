//! Order-preserving encodings of the values an index holds: for two values `a` and `b` of one
//! type, `a < b` exactly when `sortable(a) < sortable(b)` byte-wise, and no encoding is a
//! prefix of another (so an entry's value part ends where its key part begins).
//!
//! - ints and timestamps: 8 bytes big-endian with the sign bit flipped;
//! - floats: the IEEE bits, all flipped for negatives and the sign bit flipped for the rest,
//!   which is the order values compare in (`f64::total_cmp`: `-0.0 < 0.0`, NaN after +∞ or
//!   before −∞ by its sign);
//! - strings: every `0x00` byte escaped as `0x00 0xff`, then the terminator `0x00 0x01`.

use std::ops::Bound;

use hyperdex_model::{Predicate, Value};

/// The encoding of `v`, for the types an index orders; `None` for any other.
pub fn sortable(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Int(i) | Value::Timestamp(i) => Some(int(*i).to_vec()),
        Value::Float(f) => Some(float(*f).to_vec()),
        Value::String(s) => {
            let mut out = Vec::with_capacity(s.len() + 2);
            for &b in s {
                out.push(b);
                if b == 0 {
                    out.push(0xff);
                }
            }
            out.extend_from_slice(&[0, 1]);
            Some(out)
        }
        _ => None,
    }
}

fn int(i: i64) -> [u8; 8] {
    ((i as u64) ^ (1 << 63)).to_be_bytes()
}

fn float(f: f64) -> [u8; 8] {
    let bits = f.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    ordered.to_be_bytes()
}

/// Lower and upper bounds on encoded values.
pub type Bounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The encoded values a predicate can match, as bounds on [`sortable`]: a superset (the caller
/// checks every candidate against the predicate itself, and that its values have the indexed
/// attribute's type). `None` when the predicate gives no bounds (a regex, a length).
pub fn bounds(p: &Predicate) -> Option<Bounds> {
    use Bound::{Included, Unbounded};
    Some(match p {
        Predicate::Equals(v) => (Included(sortable(v)?), Included(sortable(v)?)),
        Predicate::LessThan(v) | Predicate::LessEqual(v) => (Unbounded, Included(sortable(v)?)),
        Predicate::GreaterThan(v) | Predicate::GreaterEqual(v) => {
            (Included(sortable(v)?), Unbounded)
        }
        Predicate::Range(lo, hi) => (Included(sortable(lo)?), Included(sortable(hi)?)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ordered(a: &Value, b: &Value) {
        let (ea, eb) = (sortable(a).unwrap(), sortable(b).unwrap());
        assert_eq!(ea.cmp(&eb), a.cmp(b), "{a:?} vs {b:?}");
        if ea != eb {
            assert!(!ea.starts_with(&eb) && !eb.starts_with(&ea), "{a:?} {b:?}");
        }
    }

    proptest! {
        #[test]
        fn ints_keep_their_order(a: i64, b: i64) {
            ordered(&Value::Int(a), &Value::Int(b));
        }

        #[test]
        fn floats_keep_their_order(a: f64, b: f64) {
            ordered(&Value::Float(a), &Value::Float(b));
        }

        #[test]
        fn strings_keep_their_order(a: Vec<u8>, b: Vec<u8>) {
            ordered(&Value::String(a), &Value::String(b));
        }
    }

    #[test]
    fn edges() {
        for (a, b) in [
            (Value::Int(i64::MIN), Value::Int(-1)),
            (Value::Int(-1), Value::Int(0)),
            (Value::Int(0), Value::Int(i64::MAX)),
            (Value::Float(f64::NEG_INFINITY), Value::Float(-0.5)),
            (Value::Float(-0.0), Value::Float(0.0)),
            (Value::Float(0.5), Value::Float(f64::INFINITY)),
            (Value::Float(f64::INFINITY), Value::Float(f64::NAN)),
            (Value::Float(-f64::NAN), Value::Float(f64::NEG_INFINITY)),
            (Value::string(""), Value::String(vec![0])),
            (Value::String(vec![0]), Value::String(vec![0, 0])),
            (Value::String(vec![0]), Value::String(vec![1])),
            (Value::string("a"), Value::string("ab")),
        ] {
            ordered(&a, &b);
        }
        assert_eq!(bounds(&Predicate::Regex("a".into())), None);
        assert_eq!(bounds(&Predicate::LengthEquals(1)), None);
    }
}
