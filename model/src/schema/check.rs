//! The semantic rules of a space description, checked on its [`Syntax`] tree; each error
//! points at the word that breaks the rule. Duplicates are found with ordered sets, so a
//! description with many attributes costs `n log n`, not `n²`.

use std::collections::{BTreeMap, BTreeSet};

use super::parse::{Named, Syntax};
use super::{
    Attribute, ParseError, Space, Subspace, DEFAULT_PARTITIONS, DEFAULT_TOLERATE, MAX_PARTITIONS,
    MAX_TOLERATE,
};
use crate::value::Datatype;

fn err(n: &Named, message: String) -> ParseError {
    n.at().error(message)
}

/// Checks every rule and builds the space.
pub(super) fn check(s: Syntax) -> Result<Space, ParseError> {
    let (key, key_ty) = &s.key;
    if !key_ty.is_hashable() {
        return Err(err(
            key,
            format!(
                "the key \"{}\" has type {key_ty}, which cannot be hashed (use string, int, float or timestamp)",
                key.name
            ),
        ));
    }
    let types = attribute_types(&s)?;
    let subspaces = subspaces(&s, &types)?;
    let indexes = indexes(&s, &types)?;
    let partitions = match s.partitions {
        Some((n, at)) if n == 0 || n > u64::from(MAX_PARTITIONS) => {
            return Err(at.error(format!(
                "the number of partitions must be between 1 and {MAX_PARTITIONS}, not {n}"
            )))
        }
        Some((n, _)) => n as u32,
        None => DEFAULT_PARTITIONS,
    };
    let tolerate = match s.tolerate {
        Some((n, at)) if n > u64::from(MAX_TOLERATE) => {
            return Err(at.error(format!(
                "at most {MAX_TOLERATE} failures can be tolerated, not {n}"
            )))
        }
        Some((n, _)) => n as u32,
        None => DEFAULT_TOLERATE,
    };
    let attributes: Vec<Attribute> = s
        .attributes
        .into_iter()
        .map(|(n, t)| Attribute {
            name: n.name,
            datatype: t,
        })
        .collect();
    Ok(Space {
        name: s.name.name,
        key: Attribute {
            name: s.key.0.name,
            datatype: s.key.1,
        },
        attributes,
        subspaces,
        indexes,
        partitions,
        tolerate,
        authorization: s.authorization,
    })
}

/// Every attribute's type, by name; an attribute declared twice (or named like the key) is an
/// error.
fn attribute_types(s: &Syntax) -> Result<BTreeMap<&str, Datatype>, ParseError> {
    let mut types = BTreeMap::new();
    for (a, ty) in &s.attributes {
        if a.name == s.key.0.name || types.insert(a.name.as_str(), *ty).is_some() {
            return Err(err(
                a,
                format!("attribute \"{}\" is declared more than once", a.name),
            ));
        }
    }
    Ok(types)
}

fn unknown(s: &Syntax, n: &Named, clause: &str) -> ParseError {
    let names: Vec<&str> = s.attributes.iter().map(|(a, _)| a.name.as_str()).collect();
    err(
        n,
        format!(
            "{clause} names unknown attribute \"{}\" (attributes: {})",
            n.name,
            names.join(", ")
        ),
    )
}

fn subspaces(s: &Syntax, types: &BTreeMap<&str, Datatype>) -> Result<Vec<Subspace>, ParseError> {
    let mut out = Vec::new();
    for (at, names) in &s.subspaces {
        if s.attributes.is_empty() {
            return Err(at.error("a subspace needs an attributes clause".to_string()));
        }
        let mut seen = BTreeSet::new();
        for n in names {
            if n.name == s.key.0.name {
                return Err(err(
                    n,
                    format!(
                        "subspace cannot use the key \"{}\" (subspace 0 is the key)",
                        n.name
                    ),
                ));
            }
            let ty = types
                .get(n.name.as_str())
                .ok_or_else(|| unknown(s, n, "subspace"))?;
            if !ty.is_hashable() {
                return Err(err(
                    n,
                    format!(
                        "subspace attribute \"{}\" has type {ty}, which cannot be hashed",
                        n.name
                    ),
                ));
            }
            if !seen.insert(n.name.as_str()) {
                return Err(err(
                    n,
                    format!("subspace names attribute \"{}\" twice", n.name),
                ));
            }
        }
        out.push(Subspace {
            attributes: names.iter().map(|n| n.name.clone()).collect(),
        });
    }
    Ok(out)
}

fn indexes(s: &Syntax, types: &BTreeMap<&str, Datatype>) -> Result<Vec<String>, ParseError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (at, n) in &s.indexes {
        if s.attributes.is_empty() {
            return Err(at.error("an index needs an attributes clause".to_string()));
        }
        if n.name == s.key.0.name {
            return Err(err(n, format!("the key \"{}\" is always indexed", n.name)));
        }
        let ty = types
            .get(n.name.as_str())
            .ok_or_else(|| unknown(s, n, "index"))?;
        if !ty.is_indexable() {
            return Err(err(
                n,
                format!(
                    "attribute \"{}\" has type {ty}, which cannot be indexed",
                    n.name
                ),
            ));
        }
        if !seen.insert(n.name.as_str()) {
            return Err(err(n, format!("attribute \"{}\" is indexed twice", n.name)));
        }
        out.push(n.name.clone());
    }
    Ok(out)
}
