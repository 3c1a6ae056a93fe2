//! Spaces: their attributes, subspaces, indexes and options, and the space-description
//! language that defines them.
//!
//! The grammar, as HyperDex 1.x accepts it:
//!
//! ```text
//! space NAME
//! key [TYPE] KEYATTR
//! [attributes [TYPE] ATTR, [TYPE] ATTR, ...]
//! {subspace ATTR[, ATTR...]}*
//! {index ATTR}*
//! {create N partitions | tolerate N failures | with authorization}*
//! ```
//!
//! TYPE is `string` (the default when omitted), `int` (alias `int64`), `float`, `document`,
//! `timestamp(UNIT)` with UNIT one of `second minute hour day week month`, `list(T)`,
//! `set(T)` and `map(K, V)` with T, K, V each `string`, `int` or `float`. The singular
//! keywords `attribute`, `partition` and `failure` are accepted. `#` starts a comment that runs
//! to the end of the line; whitespace, including newlines, is free.
//!
//! Rules checked after parsing (each error carries the line and column of the offending word):
//! every keyword is reserved; names starting with `__` are rejected; attribute names are
//! unique; the key's type must be hashable (string, int, float, timestamp); subspace
//! attributes exist, are hashable, are not the key and are not repeated; an index is on an
//! existing, indexable attribute other than the key and is not repeated; `create 0 partitions`
//! is rejected; each option appears at most once.
//!
//! Defaults: 64 partitions, tolerate 1 failure.
//!
//! [`Space`]'s `Display` prints the canonical description; `parse_space(&s.to_string())`
//! gives back `s`.
//!
//! Parsing is two steps in two files: `parse` checks the grammar and builds a syntax tree
//! that keeps every word's position; `check` applies the rules above to it.

mod check;
mod parse;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::value::Datatype;

/// Default number of partitions of each subspace.
pub const DEFAULT_PARTITIONS: u32 = 64;
/// Default number of failures each region tolerates (replicas = tolerate + 1).
pub const DEFAULT_TOLERATE: u32 = 1;
/// Upper bound on `create N partitions`, to keep configurations a sane size.
pub const MAX_PARTITIONS: u32 = 65_536;
/// Upper bound on `tolerate N failures`.
pub const MAX_TOLERATE: u32 = 64;

/// The hidden attribute of a space `with authorization`: each object's secret, the key of
/// the macaroons that grant access to it. It is set by a write like any attribute, but never
/// read back, searched on or changed by anything but a plain set.
pub const SECRET_ATTRIBUTE: &str = "__secret";

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attribute {
    pub name: String,
    pub datatype: Datatype,
}

/// An extra hyperspace over some attributes (subspace 0, over the key, is implicit).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Subspace {
    pub attributes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Space {
    pub name: String,
    pub key: Attribute,
    /// The non-key attributes, in declaration order.
    pub attributes: Vec<Attribute>,
    pub subspaces: Vec<Subspace>,
    /// Attributes with a secondary index.
    pub indexes: Vec<String>,
    pub partitions: u32,
    pub tolerate: u32,
    pub authorization: bool,
}

impl Space {
    /// A space with the given key and attributes and default options.
    pub fn new(name: &str, key: Attribute, attributes: Vec<Attribute>) -> Space {
        Space {
            name: name.to_string(),
            key,
            attributes,
            subspaces: Vec::new(),
            indexes: Vec::new(),
            partitions: DEFAULT_PARTITIONS,
            tolerate: DEFAULT_TOLERATE,
            authorization: false,
        }
    }

    /// The non-key attribute called `name` (in a space with authorization, the hidden
    /// secret too).
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        static SECRET: std::sync::LazyLock<Attribute> = std::sync::LazyLock::new(|| Attribute {
            name: SECRET_ATTRIBUTE.to_string(),
            datatype: Datatype::String,
        });
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .or_else(|| (self.authorization && name == SECRET_ATTRIBUTE).then(|| &*SECRET))
    }

    /// The attribute called `name`, the key included.
    pub fn any_attribute(&self, name: &str) -> Option<&Attribute> {
        if self.key.name == name {
            Some(&self.key)
        } else {
            self.attribute(name)
        }
    }

    /// `first, last, friends`: for error messages that list what exists.
    pub fn attribute_names(&self) -> String {
        let names: Vec<&str> = self.visible_attributes().map(|a| a.name.as_str()).collect();
        names.join(", ")
    }

    /// Why `attr` cannot get an index (the rules of an `index` clause), or `None` if it can.
    /// Indexing an attribute twice is not an error here: the caller decides.
    pub fn index_error(&self, attr: &str) -> Option<String> {
        if self.key.name == attr {
            return Some(format!("the key \"{attr}\" is always indexed"));
        }
        let Some(a) = self.visible_attributes().find(|a| a.name == attr) else {
            return Some(format!(
                "space \"{}\" has no attribute \"{attr}\" (attributes: {})",
                self.name,
                self.attribute_names()
            ));
        };
        (!a.datatype.is_indexable()).then(|| {
            format!(
                "attribute \"{attr}\" has type {}, which cannot be indexed",
                a.datatype
            )
        })
    }

    /// The attributes a client can read (all but the hidden secret).
    pub fn visible_attributes(&self) -> impl Iterator<Item = &Attribute> {
        self.attributes.iter().filter(|a| !is_hidden(&a.name))
    }
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "space {}", self.name)?;
        writeln!(f, "key {} {}", self.key.datatype, self.key.name)?;
        if self.visible_attributes().next().is_some() {
            let attrs: Vec<String> = self
                .visible_attributes()
                .map(|a| format!("{} {}", a.datatype, a.name))
                .collect();
            writeln!(f, "attributes {}", attrs.join(", "))?;
        }
        for s in &self.subspaces {
            writeln!(f, "subspace {}", s.attributes.join(", "))?;
        }
        for i in &self.indexes {
            writeln!(f, "index {i}")?;
        }
        writeln!(f, "create {} partitions", self.partitions)?;
        writeln!(f, "tolerate {} failures", self.tolerate)?;
        if self.authorization {
            writeln!(f, "with authorization")?;
        }
        Ok(())
    }
}

/// A syntax or semantic error in a space description, with its position (1-based).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Words that cannot name a space or an attribute.
pub const RESERVED: &[&str] = &[
    "space",
    "key",
    "attributes",
    "attribute",
    "subspace",
    "index",
    "create",
    "partitions",
    "partition",
    "tolerate",
    "failures",
    "failure",
    "with",
    "authorization",
    "string",
    "int",
    "int64",
    "float",
    "document",
    "timestamp",
    "list",
    "set",
    "map",
    "second",
    "minute",
    "hour",
    "day",
    "week",
    "month",
];

/// Whether `name` is an attribute clients never read (see [`SECRET_ATTRIBUTE`]).
pub fn is_hidden(name: &str) -> bool {
    name == SECRET_ATTRIBUTE
}

/// Parses a space description (see the module docs for the grammar and the rules).
pub fn parse_space(text: &str) -> Result<Space, ParseError> {
    check::check(parse::parse(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Primitive;

    #[test]
    fn parses_the_seed_friendlists_space() {
        let s = parse_space(
            "\nspace friendlists\nkey username\nattributes\n   string first,\n   string last,\n   set(string) friends\n",
        )
        .unwrap();
        assert_eq!(s.name, "friendlists");
        assert_eq!(s.key.datatype, Datatype::String);
        assert_eq!(s.attribute_names(), "first, last, friends");
        assert_eq!(
            s.attribute("friends").unwrap().datatype,
            Datatype::Set(Primitive::String)
        );
        assert_eq!(s.partitions, DEFAULT_PARTITIONS);
        assert_eq!(s.tolerate, DEFAULT_TOLERATE);
    }

    #[test]
    fn parses_every_clause() {
        let s = parse_space(
            "space t # a comment\nkey int id attribute timestamp(day) when, document d, map(int, float) m, a\n\
             subspace a, when\nsubspace a\nindex d\ncreate 8 partition\ntolerate 2 failure\nwith authorization",
        )
        .unwrap();
        assert_eq!(s.key.datatype, Datatype::Int);
        assert_eq!(s.attributes.len(), 4);
        // With authorization, every object has a hidden secret.
        assert_eq!(
            s.attribute(SECRET_ATTRIBUTE).map(|a| a.datatype),
            Some(Datatype::String)
        );
        assert_eq!(s.subspaces.len(), 2);
        assert_eq!(s.indexes, vec!["d".to_string()]);
        assert_eq!((s.partitions, s.tolerate, s.authorization), (8, 2, true));
        assert_eq!(parse_space(&s.to_string()).unwrap(), s);
    }

    fn error(text: &str) -> ParseError {
        parse_space(text).unwrap_err()
    }

    #[test]
    fn errors_carry_line_column_and_reason() {
        let e = error("space s\nkey k\nattributes a, b,\n  frist frist");
        assert_eq!((e.line, e.column), (4, 9));
        assert!(e.message.contains("expected"), "{e}");

        let e = error("space s\nkey k\nattributes a\nsubspace frist");
        assert_eq!((e.line, e.column), (4, 10));
        assert_eq!(
            e.message,
            "subspace names unknown attribute \"frist\" (attributes: a)"
        );

        let e = error("space s key k attributes a, a");
        assert!(e.message.contains("more than once"), "{e}");
        let e = error("space s key k attributes a create 0 partitions");
        assert!(e.message.contains("between 1 and"), "{e}");
        let e = error("space s key k attributes set x");
        assert!(e.message.contains("expected \"(\""), "{e}");
        let e = error("space index key k");
        assert!(e.message.contains("reserved"), "{e}");
        let e = error("space s key __k");
        assert!(e.message.contains("__"), "{e}");
        let e = error("space s key list(string) k");
        assert!(e.message.contains("cannot be hashed"), "{e}");
        let e = error("space s key k attributes a index a subspace a");
        assert!(e.message.contains("before index"), "{e}");
        let e = error("space s key k attributes a tolerate 1 failures index a");
        assert!(e.message.contains("before the options"), "{e}");
        let e = error("space s key k subspace a");
        assert!(e.message.contains("attributes clause"), "{e}");
        let e = error("space s key k attributes set(int) a index a");
        assert!(e.message.contains("cannot be indexed"), "{e}");
        let e = error("space s key k attributes a index k");
        assert!(e.message.contains("always indexed"), "{e}");
        let e = error("space s key k attributes a create 2 partitions create 3 partitions");
        assert!(e.message.contains("twice"), "{e}");
        let e = error("space s key k attributes a; b");
        assert!(e.message.contains("unexpected character ';'"), "{e}");
        let e = error("");
        assert_eq!((e.line, e.column), (1, 1));
    }
}
