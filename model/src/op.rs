//! Every client call as data: [`Operation`], its parts ([`Check`], [`Funcall`], [`KeyWrite`]),
//! and what comes back ([`Reply`], [`ReturnCode`]).
//!
//! HyperDex reduces every mutating call on one key to a single shape, and so does this crate:
//! a [`KeyWrite`] is a key, a list of checks (predicates the current object must pass), a list
//! of functions applied in order to the object's attributes, whether the object must exist or
//! must not exist, and whether the write erases the object. Each named call is a constructor:
//!
//! | call | existence | checks | functions |
//! |---|---|---|---|
//! | `put` | any (creates) | – | `Set` per attribute |
//! | `put_if_not_exist` | must not exist (else CMPFAIL) | – | `Set` |
//! | `cond_put` | must exist (else NOTFOUND) | given | `Set` |
//! | `cond_put_or_create` | any: checks apply only to an existing object | given | `Set` |
//! | `del`, `cond_del` | must exist | `cond_del`: given | erase |
//! | `atomic_*`, `string_*`, `list_*`, `set_*`, `map_*`, `document_*` | must exist | – | one per attribute |
//! | `cond_X` | as X | given | as X |
//! | microtransaction `commit` | any (creates, like put) | – | all collected |
//! | microtransaction `cond_commit` | any: checks apply only to an existing object (HyperDex 1.8) | given | all collected |
//!
//! `group_X(checks, ...)` applies X's functions to every object matching the checks and
//! returns how many objects changed; `count` and `search` read; `group_del` erases.
//!
//! An attribute name may be a document path (`doc.a.b`, `doc.list[3]`) when its first component
//! is a document attribute.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::schema::Space;
use crate::value::Value;

/// A search predicate on one attribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Predicate {
    Equals(Value),
    LessThan(Value),
    LessEqual(Value),
    GreaterEqual(Value),
    GreaterThan(Value),
    /// Inclusive at both ends.
    Range(Value, Value),
    /// Unanchored regular expression over a string's bytes.
    Regex(String),
    LengthEquals(u64),
    LengthLessEqual(u64),
    LengthGreaterEqual(u64),
    /// An element of a list or set, or a key of a map.
    Contains(Value),
}

impl Predicate {
    pub fn name(&self) -> &'static str {
        match self {
            Predicate::Equals(_) => "Equals",
            Predicate::LessThan(_) => "LessThan",
            Predicate::LessEqual(_) => "LessEqual",
            Predicate::GreaterEqual(_) => "GreaterEqual",
            Predicate::GreaterThan(_) => "GreaterThan",
            Predicate::Range(_, _) => "Range",
            Predicate::Regex(_) => "Regex",
            Predicate::LengthEquals(_) => "LengthEquals",
            Predicate::LengthLessEqual(_) => "LengthLessEqual",
            Predicate::LengthGreaterEqual(_) => "LengthGreaterEqual",
            Predicate::Contains(_) => "Contains",
        }
    }
}

/// A predicate applied to a named attribute. Several checks are ANDed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Check {
    pub attr: String,
    pub predicate: Predicate,
}

impl Check {
    pub fn new(attr: &str, predicate: Predicate) -> Check {
        Check {
            attr: attr.to_string(),
            predicate,
        }
    }

    /// `{attr: value}` checks, as `cond_put`'s first argument is usually written.
    pub fn equals_all(attrs: &[(&str, Value)]) -> Vec<Check> {
        attrs
            .iter()
            .map(|(a, v)| Check::new(a, Predicate::Equals(v.clone())))
            .collect()
    }
}

/// The arithmetic and bitwise functions of `atomic_*` and `map_atomic_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum NumOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    And,
    Or,
    Xor,
    Min,
    Max,
}

impl NumOp {
    pub const ALL: [NumOp; 10] = [
        NumOp::Add,
        NumOp::Sub,
        NumOp::Mul,
        NumOp::Div,
        NumOp::Mod,
        NumOp::And,
        NumOp::Or,
        NumOp::Xor,
        NumOp::Min,
        NumOp::Max,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            NumOp::Add => "add",
            NumOp::Sub => "sub",
            NumOp::Mul => "mul",
            NumOp::Div => "div",
            NumOp::Mod => "mod",
            NumOp::And => "and",
            NumOp::Or => "or",
            NumOp::Xor => "xor",
            NumOp::Min => "min",
            NumOp::Max => "max",
        }
    }

    pub fn from_suffix(s: &str) -> Option<NumOp> {
        NumOp::ALL.into_iter().find(|op| op.suffix() == s)
    }

    /// Whether the function is defined on floats (the others are WRONGTYPE on floats).
    pub fn applies_to_floats(self) -> bool {
        matches!(
            self,
            NumOp::Add | NumOp::Sub | NumOp::Mul | NumOp::Div | NumOp::Min | NumOp::Max
        )
    }
}

/// One function applied to one attribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Func {
    /// Overwrite the attribute (what `put` does).
    Set(Value),
    /// `atomic_add` and friends.
    Num(NumOp, Value),
    StringPrepend(Value),
    StringAppend(Value),
    /// Remove this many bytes from the front (clamped to the length).
    StringLtrim(i64),
    /// Remove this many bytes from the back (clamped to the length).
    StringRtrim(i64),
    ListLpush(Value),
    ListRpush(Value),
    SetAdd(Value),
    SetRemove(Value),
    SetUnion(Value),
    SetIntersect(Value),
    /// Insert or overwrite one map entry.
    MapAdd(Value, Value),
    MapRemove(Value),
    /// An atomic function on the value under a map key (a missing key starts at the default).
    MapNum(NumOp, Value, Value),
    MapStringPrepend(Value, Value),
    MapStringAppend(Value, Value),
    /// Move the document path named by the attribute to this path (within the same document).
    DocumentRename(String),
    /// Remove the document path named by the attribute.
    DocumentUnset,
}

impl Func {
    /// The HyperDex name of the call this function comes from (for messages).
    pub fn name(&self) -> String {
        match self {
            Func::Set(_) => "put".into(),
            Func::Num(op, _) => format!("atomic_{}", op.suffix()),
            Func::StringPrepend(_) => "string_prepend".into(),
            Func::StringAppend(_) => "string_append".into(),
            Func::StringLtrim(_) => "string_ltrim".into(),
            Func::StringRtrim(_) => "string_rtrim".into(),
            Func::ListLpush(_) => "list_lpush".into(),
            Func::ListRpush(_) => "list_rpush".into(),
            Func::SetAdd(_) => "set_add".into(),
            Func::SetRemove(_) => "set_remove".into(),
            Func::SetUnion(_) => "set_union".into(),
            Func::SetIntersect(_) => "set_intersect".into(),
            Func::MapAdd(_, _) => "map_add".into(),
            Func::MapRemove(_) => "map_remove".into(),
            Func::MapNum(op, _, _) => format!("map_atomic_{}", op.suffix()),
            Func::MapStringPrepend(_, _) => "map_string_prepend".into(),
            Func::MapStringAppend(_, _) => "map_string_append".into(),
            Func::DocumentRename(_) => "document_rename".into(),
            Func::DocumentUnset => "document_unset".into(),
        }
    }
}

/// A function bound to an attribute name (or a document path).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Funcall {
    pub attr: String,
    pub func: Func,
}

impl Funcall {
    pub fn new(attr: &str, func: Func) -> Funcall {
        Funcall {
            attr: attr.to_string(),
            func,
        }
    }
}

/// What a write requires of the object's existence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Existence {
    /// Create the object from defaults if it is missing.
    Any,
    /// NOTFOUND if the object is missing.
    MustExist,
    /// CMPFAIL if the object exists.
    MustNotExist,
}

/// Every mutating call on one key (see the module docs for how calls map onto it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyWrite {
    pub key: Value,
    pub checks: Vec<Check>,
    pub funcs: Vec<Funcall>,
    pub existence: Existence,
    pub erase: bool,
}

impl KeyWrite {
    fn new(key: Value, existence: Existence, funcs: Vec<Funcall>) -> KeyWrite {
        KeyWrite {
            key,
            checks: Vec::new(),
            funcs,
            existence,
            erase: false,
        }
    }

    /// The `cond_` form: adds checks (and, as every `cond_` call does, requires the object).
    pub fn with_checks(mut self, checks: Vec<Check>) -> KeyWrite {
        self.checks = checks;
        if self.existence == Existence::Any {
            self.existence = Existence::MustExist;
        }
        self
    }
}

fn set_funcs(attrs: Vec<(&str, Value)>) -> Vec<Funcall> {
    attrs
        .into_iter()
        .map(|(a, v)| Funcall::new(a, Func::Set(v)))
        .collect()
}

/// One call a client can make, as data.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operation {
    AddSpace(Space),
    RmSpace(String),
    Get {
        space: String,
        key: Value,
    },
    GetPartial {
        space: String,
        key: Value,
        attrs: Vec<String>,
    },
    Write {
        space: String,
        write: KeyWrite,
    },
    Search {
        space: String,
        checks: Vec<Check>,
    },
    SortedSearch {
        space: String,
        checks: Vec<Check>,
        sort_by: String,
        limit: u64,
        maximize: bool,
    },
    Count {
        space: String,
        checks: Vec<Check>,
    },
    GroupDel {
        space: String,
        checks: Vec<Check>,
    },
    /// `group_X`: X's functions applied to every object matching the checks.
    GroupWrite {
        space: String,
        checks: Vec<Check>,
        funcs: Vec<Funcall>,
    },
}

impl Operation {
    pub fn get(space: &str, key: impl Into<Value>) -> Operation {
        Operation::Get {
            space: space.into(),
            key: key.into(),
        }
    }

    pub fn get_partial(space: &str, key: impl Into<Value>, attrs: &[&str]) -> Operation {
        Operation::GetPartial {
            space: space.into(),
            key: key.into(),
            attrs: attrs.iter().map(|a| a.to_string()).collect(),
        }
    }

    pub fn write(space: &str, write: KeyWrite) -> Operation {
        Operation::Write {
            space: space.into(),
            write,
        }
    }

    pub fn put(space: &str, key: impl Into<Value>, attrs: Vec<(&str, Value)>) -> Operation {
        Operation::write(
            space,
            KeyWrite::new(key.into(), Existence::Any, set_funcs(attrs)),
        )
    }

    pub fn put_if_not_exist(
        space: &str,
        key: impl Into<Value>,
        attrs: Vec<(&str, Value)>,
    ) -> Operation {
        Operation::write(
            space,
            KeyWrite::new(key.into(), Existence::MustNotExist, set_funcs(attrs)),
        )
    }

    pub fn cond_put(
        space: &str,
        key: impl Into<Value>,
        checks: Vec<Check>,
        attrs: Vec<(&str, Value)>,
    ) -> Operation {
        Operation::write(
            space,
            KeyWrite::new(key.into(), Existence::MustExist, set_funcs(attrs)).with_checks(checks),
        )
    }

    pub fn cond_put_or_create(
        space: &str,
        key: impl Into<Value>,
        checks: Vec<Check>,
        attrs: Vec<(&str, Value)>,
    ) -> Operation {
        let mut w = KeyWrite::new(key.into(), Existence::Any, set_funcs(attrs));
        w.checks = checks;
        Operation::write(space, w)
    }

    pub fn del(space: &str, key: impl Into<Value>) -> Operation {
        let mut w = KeyWrite::new(key.into(), Existence::MustExist, Vec::new());
        w.erase = true;
        Operation::write(space, w)
    }

    pub fn cond_del(space: &str, key: impl Into<Value>, checks: Vec<Check>) -> Operation {
        let mut w = KeyWrite::new(key.into(), Existence::MustExist, Vec::new()).with_checks(checks);
        w.erase = true;
        Operation::write(space, w)
    }

    /// Any function-based call (`atomic_add`, `set_add`, `map_add`, ...): the object must exist.
    pub fn funcs(space: &str, key: impl Into<Value>, funcs: Vec<Funcall>) -> Operation {
        Operation::write(
            space,
            KeyWrite::new(key.into(), Existence::MustExist, funcs),
        )
    }

    /// `atomic_add(space, key, {attr: n, ...})` and the other `atomic_*` calls.
    pub fn atomic(
        op: NumOp,
        space: &str,
        key: impl Into<Value>,
        attrs: Vec<(&str, Value)>,
    ) -> Operation {
        Operation::funcs(
            space,
            key,
            attrs
                .into_iter()
                .map(|(a, v)| Funcall::new(a, Func::Num(op, v)))
                .collect(),
        )
    }

    /// The `cond_` form of a write built by another constructor.
    pub fn with_checks(self, checks: Vec<Check>) -> Operation {
        match self {
            Operation::Write { space, write } => Operation::Write {
                space,
                write: write.with_checks(checks),
            },
            other => other,
        }
    }

    pub fn search(space: &str, checks: Vec<Check>) -> Operation {
        Operation::Search {
            space: space.into(),
            checks,
        }
    }

    pub fn count(space: &str, checks: Vec<Check>) -> Operation {
        Operation::Count {
            space: space.into(),
            checks,
        }
    }

    /// The space the operation addresses (`None` for adding a space).
    pub fn space(&self) -> Option<&str> {
        match self {
            Operation::AddSpace(_) => None,
            Operation::RmSpace(s)
            | Operation::Get { space: s, .. }
            | Operation::GetPartial { space: s, .. }
            | Operation::Write { space: s, .. }
            | Operation::Search { space: s, .. }
            | Operation::SortedSearch { space: s, .. }
            | Operation::Count { space: s, .. }
            | Operation::GroupDel { space: s, .. }
            | Operation::GroupWrite { space: s, .. } => Some(s),
        }
    }

    /// The key of a single-key operation.
    pub fn key(&self) -> Option<&Value> {
        match self {
            Operation::Get { key, .. } | Operation::GetPartial { key, .. } => Some(key),
            Operation::Write { write, .. } => Some(&write.key),
            _ => None,
        }
    }

    /// Whether the operation can change the database.
    pub fn is_mutation(&self) -> bool {
        !matches!(
            self,
            Operation::Get { .. }
                | Operation::GetPartial { .. }
                | Operation::Search { .. }
                | Operation::SortedSearch { .. }
                | Operation::Count { .. }
        )
    }
}

/// A microtransaction: several functions collected against one space and committed to one
/// object as a single all-or-nothing write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Microtransaction {
    pub space: String,
    pub funcs: Vec<Funcall>,
}

impl Microtransaction {
    pub fn init(space: &str) -> Microtransaction {
        Microtransaction {
            space: space.into(),
            funcs: Vec::new(),
        }
    }

    pub fn add(&mut self, attr: &str, func: Func) -> &mut Self {
        self.funcs.push(Funcall::new(attr, func));
        self
    }

    /// Applies everything collected to `key`, creating the object from defaults if needed.
    pub fn commit(&self, key: impl Into<Value>) -> Operation {
        Operation::write(
            &self.space,
            KeyWrite::new(key.into(), Existence::Any, self.funcs.clone()),
        )
    }

    /// Applies everything collected to `key` if it passes `checks`; a missing object is
    /// created, as HyperDex 1.8 does (its microtransactions never require the object).
    pub fn cond_commit(&self, key: impl Into<Value>, checks: Vec<Check>) -> Operation {
        Operation::write(
            &self.space,
            KeyWrite {
                checks,
                ..KeyWrite::new(key.into(), Existence::Any, self.funcs.clone())
            },
        )
    }

    /// Applies everything collected to every object matching `checks`.
    pub fn group_commit(&self, checks: Vec<Check>) -> Operation {
        Operation::GroupWrite {
            space: self.space.clone(),
            checks,
            funcs: self.funcs.clone(),
        }
    }
}

macro_rules! return_codes {
    ($($name:ident = $num:literal, $symbol:literal, $text:literal;)*) => {
        /// HyperDex's return codes, with HyperDex's numbers (client codes 84xx–85xx, admin
        /// codes 87xx–88xx).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum ReturnCode {
            $($name = $num,)*
        }

        impl ReturnCode {
            pub const ALL: &'static [ReturnCode] = &[$(ReturnCode::$name,)*];

            /// HyperDex's number for the code.
            pub fn number(self) -> u32 {
                self as u32
            }

            pub fn from_number(n: u32) -> Option<ReturnCode> {
                match n {
                    $($num => Some(ReturnCode::$name),)*
                    _ => None,
                }
            }

            /// The C symbol, e.g. `HYPERDEX_CLIENT_UNKNOWNSPACE`.
            pub fn symbol(self) -> &'static str {
                match self {
                    $(ReturnCode::$name => $symbol,)*
                }
            }

            /// A one-line description for users.
            pub fn description(self) -> &'static str {
                match self {
                    $(ReturnCode::$name => $text,)*
                }
            }
        }
    };
}

return_codes! {
    Success = 8448, "HYPERDEX_CLIENT_SUCCESS", "success";
    NotFound = 8449, "HYPERDEX_CLIENT_NOTFOUND", "not found";
    SearchDone = 8450, "HYPERDEX_CLIENT_SEARCHDONE", "search done";
    CmpFail = 8451, "HYPERDEX_CLIENT_CMPFAIL", "comparison failed";
    ReadOnly = 8452, "HYPERDEX_CLIENT_READONLY", "the cluster is in read-only mode";
    UnknownSpace = 8512, "HYPERDEX_CLIENT_UNKNOWNSPACE", "unknown space";
    CoordFail = 8513, "HYPERDEX_CLIENT_COORDFAIL", "could not reach the coordinator";
    ServerError = 8514, "HYPERDEX_CLIENT_SERVERERROR", "a server failed the request";
    PollFailed = 8515, "HYPERDEX_CLIENT_POLLFAILED", "polling failed";
    Overflow = 8516, "HYPERDEX_CLIENT_OVERFLOW", "integer overflow";
    Reconfigure = 8517, "HYPERDEX_CLIENT_RECONFIGURE", "the cluster reconfigured during the request";
    Timeout = 8519, "HYPERDEX_CLIENT_TIMEOUT", "timed out";
    UnknownAttr = 8520, "HYPERDEX_CLIENT_UNKNOWNATTR", "unknown attribute";
    DupeAttr = 8521, "HYPERDEX_CLIENT_DUPEATTR", "duplicate attribute";
    NonePending = 8523, "HYPERDEX_CLIENT_NONEPENDING", "no operations are pending";
    DontUseKey = 8524, "HYPERDEX_CLIENT_DONTUSEKEY", "the key cannot be used as an attribute";
    WrongType = 8525, "HYPERDEX_CLIENT_WRONGTYPE", "wrong type";
    NoMem = 8526, "HYPERDEX_CLIENT_NOMEM", "out of memory";
    Interrupted = 8530, "HYPERDEX_CLIENT_INTERRUPTED", "interrupted";
    ClusterJump = 8531, "HYPERDEX_CLIENT_CLUSTER_JUMP", "connected to a different cluster";
    Offline = 8533, "HYPERDEX_CLIENT_OFFLINE", "the servers for the request are offline";
    Unauthorized = 8534, "HYPERDEX_CLIENT_UNAUTHORIZED", "unauthorized";
    Internal = 8573, "HYPERDEX_CLIENT_INTERNAL", "internal error";
    Exception = 8574, "HYPERDEX_CLIENT_EXCEPTION", "exception";
    Garbage = 8575, "HYPERDEX_CLIENT_GARBAGE", "garbage";
    AdminSuccess = 8704, "HYPERDEX_ADMIN_SUCCESS", "success";
    AdminNoMem = 8768, "HYPERDEX_ADMIN_NOMEM", "out of memory";
    AdminNonePending = 8769, "HYPERDEX_ADMIN_NONEPENDING", "no operations are pending";
    AdminPollFailed = 8770, "HYPERDEX_ADMIN_POLLFAILED", "polling failed";
    AdminTimeout = 8771, "HYPERDEX_ADMIN_TIMEOUT", "timed out";
    AdminInterrupted = 8772, "HYPERDEX_ADMIN_INTERRUPTED", "interrupted";
    AdminServerError = 8773, "HYPERDEX_ADMIN_SERVERERROR", "a server failed the request";
    AdminCoordFail = 8774, "HYPERDEX_ADMIN_COORDFAIL", "could not reach the coordinator";
    BadSpace = 8775, "HYPERDEX_ADMIN_BADSPACE", "bad space description";
    Duplicate = 8776, "HYPERDEX_ADMIN_DUPLICATE", "already exists";
    AdminNotFound = 8777, "HYPERDEX_ADMIN_NOTFOUND", "not found";
    LocalError = 8778, "HYPERDEX_ADMIN_LOCALERROR", "local error";
    AdminInternal = 8829, "HYPERDEX_ADMIN_INTERNAL", "internal error";
    AdminException = 8830, "HYPERDEX_ADMIN_EXCEPTION", "exception";
    AdminGarbage = 8831, "HYPERDEX_ADMIN_GARBAGE", "garbage";
}

impl fmt::Display for ReturnCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// An object as clients see it: attribute name → value. `get` returns every non-key
/// attribute; search results also carry the key under the key attribute's name.
pub type Object = BTreeMap<String, Value>;

/// The answer to an [`Operation`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reply {
    /// SUCCESS for a write or an admin call.
    Success,
    /// SUCCESS for `get` / `get_partial`.
    Found(Object),
    NotFound,
    /// CMPFAIL, with why: which check failed, or which function could not be applied.
    CmpFail(String),
    /// SUCCESS for `count` and the `group_*` calls: how many objects.
    Count(u64),
    /// SUCCESS for `search` and `sorted_search`, in key order (or sort order).
    Objects(Vec<Object>),
    /// Any other code, with a message for users.
    Error(ReturnCode, String),
}

impl Reply {
    pub fn code(&self) -> ReturnCode {
        match self {
            Reply::Success | Reply::Found(_) | Reply::Count(_) | Reply::Objects(_) => {
                ReturnCode::Success
            }
            Reply::NotFound => ReturnCode::NotFound,
            Reply::CmpFail(_) => ReturnCode::CmpFail,
            Reply::Error(code, _) => *code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_codes_keep_hyperdex_numbers() {
        assert_eq!(ReturnCode::Success.number(), 8448);
        assert_eq!(ReturnCode::CmpFail.number(), 8451);
        assert_eq!(ReturnCode::UnknownSpace.number(), 8512);
        assert_eq!(ReturnCode::WrongType.number(), 8525);
        assert_eq!(ReturnCode::Garbage.number(), 8575);
        assert_eq!(ReturnCode::BadSpace.number(), 8775);
        assert_eq!(ReturnCode::AdminGarbage.number(), 8831);
        for &code in ReturnCode::ALL {
            assert_eq!(ReturnCode::from_number(code.number()), Some(code));
        }
        assert_eq!(ReturnCode::from_number(1), None);
        assert_eq!(
            ReturnCode::UnknownSpace.symbol(),
            "HYPERDEX_CLIENT_UNKNOWNSPACE"
        );
    }

    #[test]
    fn cond_forms_require_the_object() {
        let op = Operation::put("s", "k", vec![]).with_checks(vec![]);
        let Operation::Write { write, .. } = op else {
            panic!()
        };
        assert_eq!(write.existence, Existence::MustExist);
    }
}
