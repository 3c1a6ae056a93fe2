//! Hyperspace hashing: the region of a subspace an object falls in, and the regions a search
//! must ask (pure; no I/O).
//!
//! A subspace over attributes `a₁ … a_d` is a d-dimensional space. Each attribute maps a value
//! to a coordinate in `[0, 2⁶⁴)`:
//!
//! - ints, floats and timestamps **keep their order** (the sign bit flipped; floats in
//!   `total_cmp` order, as the index encodings do), so a range of values is a range of
//!   coordinates and a range predicate prunes;
//! - every other type (strings, and the container types) is **hashed** like a key (the
//!   placement hash of its canonical encoding), which spreads values evenly but prunes only
//!   on equality.
//!
//! The subspace's `partitions` regions are a grid: `partitions` is factored into primes, each
//! given (largest first) to the dimension with the fewest cuts so far, so 64 regions over two
//! attributes are 8 × 8 and over three 4 × 4 × 4. A dimension with `c` cuts splits the
//! coordinates into `c` equal ranges (as the key subspace does with its `partitions` ranges of
//! the key's hash), and a region is numbered by its cells in mixed radix, first attribute
//! fastest. The key subspace is the one-dimensional subspace over the key, so its regions are
//! those of [`crate::config::region_index`].
//!
//! A search's checks narrow each dimension to a range of cells (an equality on a hashed
//! attribute to one; bounds on an ordered one to the cells their coordinates span); the
//! regions it must ask are the product of those ranges, a superset of the regions holding
//! matches. Of several subspaces, the one with the fewest such regions is asked.
//!
//! Ordered coordinates are not spread: values that are close together (small counters, recent
//! timestamps) share a few regions. That is the price of range pruning; a subspace over a
//! hashed attribute balances load instead.

use std::ops::Bound;

use hyperdex_model::value::{coerce, encode, Datatype};
use hyperdex_model::{Check, Object, Predicate, Space, Value};

use crate::config::{placement_hash, region_index};
use crate::daemon::index::encode::{bounds, sortable};

pub mod entry;

/// How an attribute's values become coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Order-preserving: ints, floats, timestamps.
    Ordered,
    /// The placement hash of the canonical encoding: every other type.
    Hashed,
}

/// One dimension of a subspace.
#[derive(Clone, Debug, PartialEq)]
struct Dim {
    attr: String,
    /// Whether the attribute is the space's key.
    is_key: bool,
    ty: Datatype,
    kind: Kind,
    /// Into how many equal ranges of coordinates the dimension is cut.
    cuts: u32,
}

/// A subspace's geometry: its dimensions and how each is cut.
#[derive(Clone, Debug, PartialEq)]
pub struct Subspace {
    dims: Vec<Dim>,
}

/// The regions of a subspace a search must ask: for each dimension, an inclusive range of
/// cells (empty when the checks cannot all hold).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Regions {
    cells: Vec<(u32, u32)>,
    radix: Vec<u32>,
    empty: bool,
}

impl Subspace {
    /// The subspace of `space` over `attributes` cut into `partitions` regions; `None` when an
    /// attribute is not one of the space's or `partitions` is 0.
    pub fn new(space: &Space, attributes: &[String], partitions: u32) -> Option<Subspace> {
        if partitions == 0 || attributes.is_empty() {
            return None;
        }
        let mut dims = Vec::with_capacity(attributes.len());
        for name in attributes {
            let (is_key, ty) = if *name == space.key.name {
                (true, space.key.datatype)
            } else {
                let a = space.attributes.iter().find(|a| a.name == *name)?;
                (false, a.datatype)
            };
            let kind = match ty {
                Datatype::Int | Datatype::Float | Datatype::Timestamp(_) => Kind::Ordered,
                _ => Kind::Hashed,
            };
            dims.push(Dim {
                attr: name.clone(),
                is_key,
                ty,
                kind,
                cuts: 1,
            });
        }
        for p in prime_factors(partitions).into_iter().rev() {
            let fewest = dims
                .iter_mut()
                .min_by_key(|d| d.cuts)
                .expect("at least one dimension");
            fewest.cuts *= p;
        }
        Some(Subspace { dims })
    }

    /// The key subspace of `space`: the key alone, in `space.partitions` regions.
    pub fn of_key(space: &Space) -> Option<Subspace> {
        Subspace::new(
            space,
            std::slice::from_ref(&space.key.name),
            space.partitions,
        )
    }

    /// How many regions the subspace has.
    pub fn regions(&self) -> u32 {
        self.dims.iter().map(|d| d.cuts).product()
    }

    /// The region holding the object with `key` and `object` (an attribute it lacks counts as
    /// its type's default, as reads show it).
    pub fn region_of(&self, key: &Value, object: &Object) -> u32 {
        let mut region = 0;
        let mut radix = 1;
        for d in &self.dims {
            let value = if d.is_key {
                Some(key.clone())
            } else {
                object.get(&d.attr).cloned()
            };
            let value = value.unwrap_or_else(|| d.ty.default_value());
            region += cell(d, &value) * radix;
            radix *= d.cuts;
        }
        region
    }

    /// The regions that can hold an object passing every one of `checks` (validated against
    /// the space): a superset, never missing one.
    pub fn matching(&self, checks: &[Check]) -> Regions {
        let mut cells = Vec::with_capacity(self.dims.len());
        let mut empty = false;
        for d in &self.dims {
            let (mut lo, mut hi) = (0, d.cuts - 1);
            for c in checks.iter().filter(|c| c.attr == d.attr) {
                if let Some((l, h)) = narrowed(d, &c.predicate) {
                    lo = lo.max(l);
                    hi = hi.min(h);
                }
            }
            empty |= lo > hi;
            cells.push((lo, hi));
        }
        Regions {
            radix: self.dims.iter().map(|d| d.cuts).collect(),
            cells,
            empty,
        }
    }
}

impl Regions {
    /// How many regions.
    pub fn count(&self) -> u64 {
        if self.empty {
            return 0;
        }
        self.cells
            .iter()
            .map(|(lo, hi)| u64::from(hi - lo + 1))
            .product()
    }

    /// The regions, in increasing order of number.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let total = self.count();
        let mut at: Vec<u32> = self.cells.iter().map(|(lo, _)| *lo).collect();
        (0..total).map(move |_| {
            let region = number(&at, &self.radix);
            // The first dimension is the lowest digit, so it steps first (an odometer).
            for (i, (lo, hi)) in self.cells.iter().enumerate() {
                if at[i] < *hi {
                    at[i] += 1;
                    break;
                }
                at[i] = *lo;
            }
            region
        })
    }
}

/// A region's number from its cells (mixed radix, first dimension lowest).
fn number(cells: &[u32], radix: &[u32]) -> u32 {
    let mut n = 0;
    let mut weight = 1;
    for (c, r) in cells.iter().zip(radix) {
        n += c * weight;
        weight *= r;
    }
    n
}

/// The cell of `value` along `d`.
fn cell(d: &Dim, value: &Value) -> u32 {
    region_index(coordinate(d, value), d.cuts as usize)
}

/// The coordinate of `value` along `d` (a value that does not have the dimension's type, which
/// validation rules out, is hashed).
fn coordinate(d: &Dim, value: &Value) -> u64 {
    match (d.kind, sortable(value)) {
        (Kind::Ordered, Some(bytes)) if bytes.len() == 8 && fits(value, d.ty) => {
            u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
        }
        _ => {
            let coerced = coerce(value.clone(), d.ty).unwrap_or_else(|_| value.clone());
            placement_hash(&encode(&coerced))
        }
    }
}

fn fits(v: &Value, ty: Datatype) -> bool {
    matches!(
        (v, ty),
        (Value::Int(_), Datatype::Int)
            | (Value::Float(_), Datatype::Float)
            | (Value::Timestamp(_), Datatype::Timestamp(_))
    )
}

/// The cells along `d` that a value passing `p` can fall in; `None`: any.
fn narrowed(d: &Dim, p: &Predicate) -> Option<(u32, u32)> {
    match d.kind {
        Kind::Hashed => match p {
            Predicate::Equals(v) => {
                let c = cell(d, v);
                Some((c, c))
            }
            _ => None,
        },
        Kind::Ordered => {
            let values: &[&Value] = match p {
                Predicate::Range(lo, hi) => &[lo, hi],
                Predicate::Equals(v)
                | Predicate::LessThan(v)
                | Predicate::LessEqual(v)
                | Predicate::GreaterEqual(v)
                | Predicate::GreaterThan(v) => &[v],
                _ => return None,
            };
            if !values.iter().all(|v| fits(v, d.ty)) {
                return None;
            }
            let (lo, hi) = bounds(p)?;
            let at = |b: Bound<Vec<u8>>, unbounded: u32| match b {
                Bound::Included(bytes) | Bound::Excluded(bytes) => bytes
                    .try_into()
                    .map(|a: [u8; 8]| region_index(u64::from_be_bytes(a), d.cuts as usize))
                    .unwrap_or(unbounded),
                Bound::Unbounded => unbounded,
            };
            Some((at(lo, 0), at(hi, d.cuts - 1)))
        }
    }
}

/// `n`'s prime factors, smallest first.
fn prime_factors(mut n: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut p = 2;
    while p * p <= n {
        while n.is_multiple_of(p) {
            out.push(p);
            n /= p;
        }
        p += 1;
    }
    if n > 1 {
        out.push(n);
    }
    out
}

/// The geometry of each `subspace` clause of `space`, in order (subspace `i + 1` of
/// [`SpaceConfig::subspace_region`](crate::config::SpaceConfig::subspace_region)).
pub fn of_space(space: &crate::config::SpaceConfig) -> Vec<Subspace> {
    let schema = &space.schema;
    schema
        .subspaces
        .iter()
        .filter_map(|s| Subspace::new(schema, &s.attributes, space.key_regions()))
        .collect()
}

/// Of `subspaces`, the one whose regions matching `checks` are fewest (the first of equals),
/// and those regions.
pub fn best<'a>(subspaces: &'a [Subspace], checks: &[Check]) -> Option<(&'a Subspace, Regions)> {
    subspaces
        .iter()
        .map(|s| (s, s.matching(checks)))
        .min_by_key(|(_, r)| r.count())
}

#[cfg(test)]
mod tests;
