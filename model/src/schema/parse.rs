//! The space-description language's syntax: a lexer and a recursive-descent parser that
//! turn the text into a [`Syntax`] tree, keeping the position of every name and number so
//! that the semantic checks (`check`) can point at what is wrong. Only the grammar is checked
//! here: the order of the clauses, options given once, the end of the text.

use std::fmt;

use super::{ParseError, RESERVED};
use crate::value::{Datatype, Primitive, TimeUnit};

/// Where a word was written (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    pub fn error(self, message: String) -> ParseError {
        ParseError {
            line: self.line,
            column: self.column,
            message,
        }
    }
}

impl Named {
    pub fn at(&self) -> Position {
        Position {
            line: self.line,
            column: self.column,
        }
    }
}

/// A space description as written, before its semantic checks.
pub(super) struct Syntax {
    pub name: Named,
    pub key: (Named, Datatype),
    pub attributes: Vec<(Named, Datatype)>,
    /// Each `subspace` clause: where the keyword is, and its names.
    pub subspaces: Vec<(Position, Vec<Named>)>,
    /// Each `index` clause: where the keyword is, and its attribute.
    pub indexes: Vec<(Position, Named)>,
    /// `create N partitions`: N and where it is.
    pub partitions: Option<(u64, Position)>,
    /// `tolerate N failures`: N and where it is.
    pub tolerate: Option<(u64, Position)>,
    pub authorization: bool,
}

/// Parses the grammar of a space description (see the `schema` module docs).
pub(super) fn parse(text: &str) -> Result<Syntax, ParseError> {
    let mut p = Parser {
        toks: lex(text)?,
        pos: 0,
    };
    p.expect_word(&["space"], "\"space\"")?;
    let name = p.name("a space name")?;
    p.expect_word(&["key"], "\"key\"")?;
    let key = p.attribute()?;
    let mut attributes = Vec::new();
    if p.at_word(&["attributes", "attribute"]) {
        p.next();
        attributes.push(p.attribute()?);
        while p.peek().tok == Tok::Comma {
            p.next();
            attributes.push(p.attribute()?);
        }
    }
    let mut subspaces = Vec::new();
    while p.at_word(&["subspace"]) {
        let at = p.next().at();
        subspaces.push((at, p.name_list()?));
    }
    let mut indexes = Vec::new();
    while p.at_word(&["index"]) {
        let at = p.next().at();
        indexes.push((at, p.name("an attribute name")?));
    }
    if p.at_word(&["subspace"]) {
        return Err(p
            .peek()
            .at()
            .error("subspace clauses must come before index clauses".to_string()));
    }
    let mut syntax = Syntax {
        name,
        key,
        attributes,
        subspaces,
        indexes,
        partitions: None,
        tolerate: None,
        authorization: false,
    };
    p.options(&mut syntax)?;
    p.end(syntax.attributes.is_empty())?;
    Ok(syntax)
}

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

impl Token {
    fn at(&self) -> Position {
        Position {
            line: self.line,
            column: self.column,
        }
    }
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
pub(super) struct Named {
    pub name: String,
    pub line: usize,
    pub column: usize,
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

    /// `{create N partitions | tolerate N failures | with authorization}*`, each at most once.
    fn options(&mut self, s: &mut Syntax) -> Result<(), ParseError> {
        loop {
            match self.peek_word() {
                Some("create") => {
                    let t = self.next();
                    if s.partitions.is_some() {
                        return Err(t
                            .at()
                            .error("\"create N partitions\" is given twice".to_string()));
                    }
                    let (n, nt) = self.number("the number of partitions")?;
                    self.expect_word(&["partitions", "partition"], "\"partitions\"")?;
                    s.partitions = Some((n, nt.at()));
                }
                Some("tolerate") => {
                    let t = self.next();
                    if s.tolerate.is_some() {
                        return Err(t
                            .at()
                            .error("\"tolerate N failures\" is given twice".to_string()));
                    }
                    let (n, nt) = self.number("the number of failures to tolerate")?;
                    self.expect_word(&["failures", "failure"], "\"failures\"")?;
                    s.tolerate = Some((n, nt.at()));
                }
                Some("with") => {
                    let t = self.next();
                    self.expect_word(&["authorization"], "\"authorization\"")?;
                    if s.authorization {
                        return Err(t
                            .at()
                            .error("\"with authorization\" is given twice".to_string()));
                    }
                    s.authorization = true;
                }
                Some("subspace" | "index") => {
                    return Err(self.peek().at().error(
                        "subspace and index clauses must come before the options (create, tolerate, with)"
                            .to_string(),
                    ));
                }
                _ => return Ok(()),
            }
        }
    }

    /// The end of the text, or an error saying what could have come instead.
    fn end(&mut self, no_attributes: bool) -> Result<(), ParseError> {
        let t = self.next();
        if t.tok == Tok::End {
            return Ok(());
        }
        let expected = if no_attributes && self.pos <= 6 {
            "\"attributes\", \"subspace\", \"index\", \"create\", \"tolerate\", \"with\" or the end"
        } else {
            "\"subspace\", \"index\", \"create\", \"tolerate\", \"with\" or the end"
        };
        Err(t
            .at()
            .error(format!("expected {expected}, found {}", t.tok)))
    }
}
