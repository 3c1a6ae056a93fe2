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

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::value::{Datatype, Primitive, TimeUnit};

/// Default number of partitions of each subspace.
pub const DEFAULT_PARTITIONS: u32 = 64;
/// Default number of failures each region tolerates (replicas = tolerate + 1).
pub const DEFAULT_TOLERATE: u32 = 1;
/// Upper bound on `create N partitions`, to keep configurations a sane size.
pub const MAX_PARTITIONS: u32 = 65_536;
/// Upper bound on `tolerate N failures`.
pub const MAX_TOLERATE: u32 = 64;

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

    /// The non-key attribute called `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
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
        let names: Vec<&str> = self.attributes.iter().map(|a| a.name.as_str()).collect();
        names.join(", ")
    }
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "space {}", self.name)?;
        writeln!(f, "key {} {}", self.key.datatype, self.key.name)?;
        if !self.attributes.is_empty() {
            let attrs: Vec<String> = self
                .attributes
                .iter()
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

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Number(u64),
    Open,
    Close,
    Comma,
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(w) => write!(f, "\"{w}\""),
            Tok::Number(n) => write!(f, "number {n}"),
            Tok::Open => f.write_str("\"(\""),
            Tok::Close => f.write_str("\")\""),
            Tok::Comma => f.write_str("\",\""),
            Tok::End => f.write_str("the end of the description"),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
    column: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let (mut line, mut column) = (1usize, 1usize);
    while let Some(&c) = chars.peek() {
        let (tl, tc) = (line, column);
        let mut bump = |chars: &mut std::iter::Peekable<std::str::Chars>| {
            let c = chars.next();
            if c == Some('\n') {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
            c
        };
        if c.is_whitespace() {
            bump(&mut chars);
        } else if c == '#' {
            while let Some(&c) = chars.peek() {
                if c == '\n' {
                    break;
                }
                bump(&mut chars);
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    w.push(c);
                    bump(&mut chars);
                } else {
                    break;
                }
            }
            out.push(Token {
                tok: Tok::Word(w),
                line: tl,
                column: tc,
            });
        } else if c.is_ascii_digit() {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    w.push(c);
                    bump(&mut chars);
                } else {
                    break;
                }
            }
            let n = w.parse::<u64>().map_err(|_| ParseError {
                line: tl,
                column: tc,
                message: format!("\"{w}\" is not a number (names must start with a letter or _)"),
            })?;
            out.push(Token {
                tok: Tok::Number(n),
                line: tl,
                column: tc,
            });
        } else {
            let tok = match c {
                '(' => Tok::Open,
                ')' => Tok::Close,
                ',' => Tok::Comma,
                other => {
                    return Err(ParseError {
                        line: tl,
                        column: tc,
                        message: format!("unexpected character {other:?}"),
                    })
                }
            };
            bump(&mut chars);
            out.push(Token {
                tok,
                line: tl,
                column: tc,
            });
        }
    }
    out.push(Token {
        tok: Tok::End,
        line,
        column,
    });
    Ok(out)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

/// A name with the position it was written at, kept for semantic error messages.
struct Named {
    name: String,
    line: usize,
    column: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn error_at(t: &Token, message: String) -> ParseError {
        ParseError {
            line: t.line,
            column: t.column,
            message,
        }
    }

    fn peek_word(&self) -> Option<&str> {
        match &self.peek().tok {
            Tok::Word(w) => Some(w),
            _ => None,
        }
    }

    fn at_word(&self, words: &[&str]) -> bool {
        self.peek_word().is_some_and(|w| words.contains(&w))
    }

    fn expect_word(&mut self, words: &[&str], what: &str) -> Result<Token, ParseError> {
        if self.at_word(words) {
            Ok(self.next())
        } else {
            let t = self.peek().clone();
            Err(Self::error_at(
                &t,
                format!("expected {what}, found {}", t.tok),
            ))
        }
    }

    fn expect(&mut self, tok: Tok) -> Result<(), ParseError> {
        let t = self.next();
        if t.tok == tok {
            Ok(())
        } else {
            Err(Self::error_at(
                &t,
                format!("expected {tok}, found {}", t.tok),
            ))
        }
    }

    fn name(&mut self, what: &str) -> Result<Named, ParseError> {
        let t = self.next();
        match &t.tok {
            Tok::Word(w) if RESERVED.contains(&w.as_str()) => Err(Self::error_at(
                &t,
                format!("\"{w}\" is a reserved word and cannot be used as {what}"),
            )),
            Tok::Word(w) if w.starts_with("__") => Err(Self::error_at(
                &t,
                format!("{what} \"{w}\" starts with \"__\", which is reserved"),
            )),
            Tok::Word(w) => Ok(Named {
                name: w.clone(),
                line: t.line,
                column: t.column,
            }),
            other => Err(Self::error_at(
                &t,
                format!("expected {what}, found {other}"),
            )),
        }
    }

    fn number(&mut self, what: &str) -> Result<(u64, Token), ParseError> {
        let t = self.next();
        match t.tok {
            Tok::Number(n) => Ok((n, t)),
            ref other => Err(Self::error_at(
                &t,
                format!("expected {what}, found {other}"),
            )),
        }
    }

    fn primitive(&mut self) -> Result<Primitive, ParseError> {
        let t = self.expect_word(&["string", "int", "int64", "float"], "string, int or float")?;
        Ok(match &t.tok {
            Tok::Word(w) if w == "string" => Primitive::String,
            Tok::Word(w) if w == "float" => Primitive::Float,
            _ => Primitive::Int,
        })
    }

    /// `[TYPE] NAME`
    fn attribute(&mut self) -> Result<(Named, Datatype), ParseError> {
        let ty = match self.peek_word() {
            Some("string") => {
                self.next();
                Datatype::String
            }
            Some("int" | "int64") => {
                self.next();
                Datatype::Int
            }
            Some("float") => {
                self.next();
                Datatype::Float
            }
            Some("document") => {
                self.next();
                Datatype::Document
            }
            Some("timestamp") => {
                self.next();
                self.expect(Tok::Open)?;
                let t = self.expect_word(
                    &["second", "minute", "hour", "day", "week", "month"],
                    "a time unit (second, minute, hour, day, week or month)",
                )?;
                self.expect(Tok::Close)?;
                let Tok::Word(w) = &t.tok else { unreachable!() };
                Datatype::Timestamp(TimeUnit::from_name(w).unwrap_or(TimeUnit::Second))
            }
            Some("list") => {
                self.next();
                self.expect(Tok::Open)?;
                let p = self.primitive()?;
                self.expect(Tok::Close)?;
                Datatype::List(p)
            }
            Some("set") => {
                self.next();
                self.expect(Tok::Open)?;
                let p = self.primitive()?;
                self.expect(Tok::Close)?;
                Datatype::Set(p)
            }
            Some("map") => {
                self.next();
                self.expect(Tok::Open)?;
                let k = self.primitive()?;
                self.expect(Tok::Comma)?;
                let v = self.primitive()?;
                self.expect(Tok::Close)?;
                Datatype::Map(k, v)
            }
            _ => Datatype::String,
        };
        Ok((self.name("an attribute name")?, ty))
    }

    fn name_list(&mut self) -> Result<Vec<Named>, ParseError> {
        let mut names = vec![self.name("an attribute name")?];
        while self.peek().tok == Tok::Comma {
            self.next();
            names.push(self.name("an attribute name")?);
        }
        Ok(names)
    }
}

fn err(n: &Named, message: String) -> ParseError {
    ParseError {
        line: n.line,
        column: n.column,
        message,
    }
}

/// Parses a space description (see the module docs for the grammar and the rules).
pub fn parse_space(text: &str) -> Result<Space, ParseError> {
    let mut p = Parser {
        toks: lex(text)?,
        pos: 0,
    };
    p.expect_word(&["space"], "\"space\"")?;
    let name = p.name("a space name")?;
    p.expect_word(&["key"], "\"key\"")?;
    let (key, key_ty) = p.attribute()?;
    if !key_ty.is_hashable() {
        return Err(err(
            &key,
            format!(
                "the key \"{}\" has type {key_ty}, which cannot be hashed (use string, int, float or timestamp)",
                key.name
            ),
        ));
    }
    let mut attrs: Vec<(Named, Datatype)> = Vec::new();
    if p.at_word(&["attributes", "attribute"]) {
        p.next();
        attrs.push(p.attribute()?);
        while p.peek().tok == Tok::Comma {
            p.next();
            attrs.push(p.attribute()?);
        }
    }
    for (i, (a, _)) in attrs.iter().enumerate() {
        if a.name == key.name || attrs[..i].iter().any(|(b, _)| b.name == a.name) {
            return Err(err(
                a,
                format!("attribute \"{}\" is declared more than once", a.name),
            ));
        }
    }
    let lookup = |n: &Named| {
        attrs
            .iter()
            .find(|(a, _)| a.name == n.name)
            .map(|(_, t)| *t)
    };
    let unknown = |n: &Named, clause: &str| {
        let names: Vec<&str> = attrs.iter().map(|(a, _)| a.name.as_str()).collect();
        err(
            n,
            format!(
                "{clause} names unknown attribute \"{}\" (attributes: {})",
                n.name,
                names.join(", ")
            ),
        )
    };

    let mut subspaces = Vec::new();
    while p.at_word(&["subspace"]) {
        let t = p.next();
        if attrs.is_empty() {
            return Err(Parser::error_at(
                &t,
                "a subspace needs an attributes clause".to_string(),
            ));
        }
        let names = p.name_list()?;
        for (i, n) in names.iter().enumerate() {
            if n.name == key.name {
                return Err(err(
                    n,
                    format!(
                        "subspace cannot use the key \"{}\" (subspace 0 is the key)",
                        n.name
                    ),
                ));
            }
            let ty = lookup(n).ok_or_else(|| unknown(n, "subspace"))?;
            if !ty.is_hashable() {
                return Err(err(
                    n,
                    format!(
                        "subspace attribute \"{}\" has type {ty}, which cannot be hashed",
                        n.name
                    ),
                ));
            }
            if names[..i].iter().any(|m| m.name == n.name) {
                return Err(err(
                    n,
                    format!("subspace names attribute \"{}\" twice", n.name),
                ));
            }
        }
        subspaces.push(Subspace {
            attributes: names.into_iter().map(|n| n.name).collect(),
        });
    }

    let mut indexes: Vec<String> = Vec::new();
    while p.at_word(&["index"]) {
        let t = p.next();
        if attrs.is_empty() {
            return Err(Parser::error_at(
                &t,
                "an index needs an attributes clause".to_string(),
            ));
        }
        let n = p.name("an attribute name")?;
        if n.name == key.name {
            return Err(err(&n, format!("the key \"{}\" is always indexed", n.name)));
        }
        let ty = lookup(&n).ok_or_else(|| unknown(&n, "index"))?;
        if !ty.is_indexable() {
            return Err(err(
                &n,
                format!(
                    "attribute \"{}\" has type {ty}, which cannot be indexed",
                    n.name
                ),
            ));
        }
        if indexes.contains(&n.name) {
            return Err(err(
                &n,
                format!("attribute \"{}\" is indexed twice", n.name),
            ));
        }
        indexes.push(n.name);
    }
    if p.at_word(&["subspace"]) {
        let t = p.peek().clone();
        return Err(Parser::error_at(
            &t,
            "subspace clauses must come before index clauses".to_string(),
        ));
    }

    let (mut partitions, mut tolerate, mut authorization) = (None, None, false);
    loop {
        match p.peek_word() {
            Some("create") => {
                let t = p.next();
                if partitions.is_some() {
                    return Err(Parser::error_at(
                        &t,
                        "\"create N partitions\" is given twice".to_string(),
                    ));
                }
                let (n, nt) = p.number("the number of partitions")?;
                p.expect_word(&["partitions", "partition"], "\"partitions\"")?;
                if n == 0 || n > u64::from(MAX_PARTITIONS) {
                    return Err(Parser::error_at(
                        &nt,
                        format!("the number of partitions must be between 1 and {MAX_PARTITIONS}, not {n}"),
                    ));
                }
                partitions = Some(n as u32);
            }
            Some("tolerate") => {
                let t = p.next();
                if tolerate.is_some() {
                    return Err(Parser::error_at(
                        &t,
                        "\"tolerate N failures\" is given twice".to_string(),
                    ));
                }
                let (n, nt) = p.number("the number of failures to tolerate")?;
                p.expect_word(&["failures", "failure"], "\"failures\"")?;
                if n > u64::from(MAX_TOLERATE) {
                    return Err(Parser::error_at(
                        &nt,
                        format!("at most {MAX_TOLERATE} failures can be tolerated, not {n}"),
                    ));
                }
                tolerate = Some(n as u32);
            }
            Some("with") => {
                let t = p.next();
                p.expect_word(&["authorization"], "\"authorization\"")?;
                if authorization {
                    return Err(Parser::error_at(
                        &t,
                        "\"with authorization\" is given twice".to_string(),
                    ));
                }
                authorization = true;
            }
            Some("subspace" | "index") => {
                let t = p.peek().clone();
                return Err(Parser::error_at(
                    &t,
                    "subspace and index clauses must come before the options (create, tolerate, with)"
                        .to_string(),
                ));
            }
            _ => break,
        }
    }
    let t = p.next();
    if t.tok != Tok::End {
        let expected = if attrs.is_empty() && p.pos <= 6 {
            "\"attributes\", \"subspace\", \"index\", \"create\", \"tolerate\", \"with\" or the end"
        } else {
            "\"subspace\", \"index\", \"create\", \"tolerate\", \"with\" or the end"
        };
        return Err(Parser::error_at(
            &t,
            format!("expected {expected}, found {}", t.tok),
        ));
    }
    Ok(Space {
        name: name.name,
        key: Attribute {
            name: key.name,
            datatype: key_ty,
        },
        attributes: attrs
            .into_iter()
            .map(|(n, t)| Attribute {
                name: n.name,
                datatype: t,
            })
            .collect(),
        subspaces,
        indexes,
        partitions: partitions.unwrap_or(DEFAULT_PARTITIONS),
        tolerate: tolerate.unwrap_or(DEFAULT_TOLERATE),
        authorization,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
