//! Per-object authorization in spaces `with authorization`, as HyperDex does it with
//! macaroons.
//!
//! Every object of such a space has a secret (the hidden attribute `__secret`, set by the
//! write that creates the object: `put(..., secret=S)` in Python). Any later operation on
//! the object must carry a macaroon minted with that secret (`auth=[token, discharges...]`):
//! the first token is the macaroon, the others discharge its third-party caveats (bound to it
//! with `prepare_for_request`). First-party caveats the head understands:
//!
//! - `op = read` — reads only; `op = write` — writes only;
//! - `time < N` — before `N` seconds since the Unix epoch (the head's clock).
//!
//! Any other first-party caveat is unsatisfied. A read of an object that does not exist is
//! UNAUTHORIZED (existence is not revealed); a write to one that does not exist must set the
//! secret. Searches in such spaces are refused: they would bypass the per-object check.
//! Verification is pure: the head passes the time in.

use hyperdex_model::schema::SECRET_ATTRIBUTE;
use hyperdex_model::{Func, Object, Operation, Space, Value};

use crate::macaroon::{Macaroon, Verifier};

/// The most tokens one request may carry.
pub const MAX_TOKENS: usize = 16;

/// Whether a `time < N` caveat holds at `now` (seconds since the Unix epoch).
fn before(caveat: &[u8], now: u64) -> bool {
    std::str::from_utf8(caveat)
        .ok()
        .and_then(|t| t.strip_prefix("time < "))
        .and_then(|n| n.parse::<u64>().ok())
        .is_some_and(|expiry| now < expiry)
}

/// Whether `op` on `current` (the latest state of its key) is authorized by `tokens` at
/// `unix_now` (seconds). Always true outside spaces with authorization.
pub fn authorized(
    space: &Space,
    current: Option<&Object>,
    op: &Operation,
    tokens: &[String],
    unix_now: u64,
) -> bool {
    if !space.authorization {
        return true;
    }
    let write = op.is_mutation();
    let Some(object) = current else {
        return write && sets_secret(op);
    };
    let Some(Value::String(secret)) = object.get(SECRET_ATTRIBUTE) else {
        return false;
    };
    verify(
        secret,
        tokens,
        if write { "op = write" } else { "op = read" },
        unix_now,
    )
}

/// Whether a write sets the object's secret.
fn sets_secret(op: &Operation) -> bool {
    let Operation::Write { write, .. } = op else {
        return false;
    };
    write
        .funcs
        .iter()
        .any(|f| f.attr == SECRET_ATTRIBUTE && matches!(f.func, Func::Set(_)))
}

fn verify(secret: &[u8], tokens: &[String], op: &str, unix_now: u64) -> bool {
    if tokens.is_empty() || tokens.len() > MAX_TOKENS {
        return false;
    }
    let Ok(mut parsed) = tokens
        .iter()
        .map(|t| Macaroon::deserialize(t.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
    else {
        return false;
    };
    let root = parsed.remove(0);
    let mut verifier = Verifier::default();
    verifier.satisfy_exact(op.as_bytes());
    verifier.satisfy_general(|c| before(c, unix_now));
    verifier.verify(&root, secret, &parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperdex_model::{parse_space, NumOp};

    const SECRET: &[u8] = b"this is the password for the account";

    fn space() -> Space {
        parse_space(
            "space accounts key account attributes string name, int balance with authorization",
        )
        .expect("space")
    }

    fn object() -> Object {
        [
            ("name".to_string(), Value::string("John Smith")),
            ("balance".to_string(), Value::Int(10)),
            (SECRET_ATTRIBUTE.to_string(), Value::string(SECRET)),
        ]
        .into()
    }

    fn token(caveats: &[&str]) -> String {
        let mut m = Macaroon::create(b"account 1", SECRET, b"");
        for c in caveats {
            m = m.add_first_party_caveat(c.as_bytes());
        }
        m.serialize()
    }

    fn get() -> Operation {
        Operation::get("accounts", "a")
    }

    fn add() -> Operation {
        Operation::atomic(
            NumOp::Add,
            "accounts",
            "a",
            vec![("balance", Value::Int(5))],
        )
    }

    #[test]
    fn a_macaroon_from_the_objects_secret_grants_reads_and_writes() {
        let (s, o) = (space(), object());
        let t = vec![token(&[])];
        assert!(authorized(&s, Some(&o), &get(), &t, 100));
        assert!(authorized(&s, Some(&o), &add(), &t, 100));
        assert!(!authorized(&s, Some(&o), &get(), &[], 100), "no token");
        let wrong = Macaroon::create(b"", b"another password entirely", b"").serialize();
        assert!(
            !authorized(&s, Some(&o), &get(), &[wrong], 100),
            "another secret"
        );
        assert!(!authorized(&s, Some(&o), &get(), &["garbage".into()], 100));
    }

    #[test]
    fn caveats_limit_the_operation_and_the_time() {
        let (s, o) = (space(), object());
        let read_only = vec![token(&["op = read"])];
        assert!(authorized(&s, Some(&o), &get(), &read_only, 100));
        assert!(!authorized(&s, Some(&o), &add(), &read_only, 100));
        let until = vec![token(&["op = read", "time < 130"])];
        assert!(authorized(&s, Some(&o), &get(), &until, 129));
        assert!(!authorized(&s, Some(&o), &get(), &until, 130));
        let unknown = vec![token(&["account = 7"])];
        assert!(!authorized(&s, Some(&o), &get(), &unknown, 100));
    }

    #[test]
    fn a_missing_object_is_created_only_with_its_secret() {
        let s = space();
        assert!(!authorized(&s, None, &get(), &[token(&[])], 100));
        let without = Operation::put("accounts", "a", vec![("balance", Value::Int(1))]);
        assert!(!authorized(&s, None, &without, &[], 100));
        let with = Operation::put(
            "accounts",
            "a",
            vec![
                ("balance", Value::Int(1)),
                (SECRET_ATTRIBUTE, Value::string(SECRET)),
            ],
        );
        assert!(authorized(&s, None, &with, &[], 100));
        let open = parse_space("space open key k attributes int n").expect("space");
        assert!(authorized(&open, None, &get(), &[], 100));
    }
}
