//! Choosing the index a search reads, and reading one region's entries within its bounds.

use std::cmp::Ordering;
use std::ops::Bound;

use hyperdex_model::value::Datatype;
use hyperdex_model::{Check, Predicate, Value};

use crate::config::{RegionId, SpaceConfig};
use crate::storage::{Store, StoreError, Table};

use super::{is_built, region_entries, specs_of, Spec};

/// A search read through an index: the attribute and the bounds of the encoded values that
/// can match (a superset: every candidate is still checked).
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub spec: Spec,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
}

fn same_type(v: &Value, ty: Datatype) -> bool {
    matches!(
        (v, ty),
        (Value::String(_), Datatype::String)
            | (Value::Int(_), Datatype::Int)
            | (Value::Float(_), Datatype::Float)
            | (Value::Timestamp(_), Datatype::Timestamp(_))
    )
}

fn bounds(p: &Predicate, ty: Datatype) -> Option<super::encode::Bounds> {
    let values: &[&Value] = match p {
        Predicate::Equals(v)
        | Predicate::LessThan(v)
        | Predicate::LessEqual(v)
        | Predicate::GreaterEqual(v)
        | Predicate::GreaterThan(v) => &[v],
        Predicate::Range(lo, hi) => &[lo, hi],
        _ => return None,
    };
    if !values.iter().all(|v| same_type(v, ty)) {
        return None;
    }
    super::encode::bounds(p)
}

/// The index this daemon reads for `checks` (validated) on `space`: of the attributes whose
/// index is built here and that checks bound, one whose checks pin a single value, else the
/// first; the bounds of every check on it together (checks all hold at once, so their bounds
/// intersect). `None`: scan the regions.
pub fn plan(
    store: &dyn Store,
    space: &SpaceConfig,
    checks: &[Check],
) -> Result<Option<Plan>, StoreError> {
    let mut built = Vec::new();
    for spec in specs_of(&space.schema) {
        if is_built(store, space.id, spec.pos)? {
            built.push(spec);
        }
    }
    Ok(plan_over(&built, checks))
}

/// Of `specs` (entries complete), the one to read for `checks`, as [`plan`] chooses.
pub(super) fn plan_over(specs: &[Spec], checks: &[Check]) -> Option<Plan> {
    let mut best: Option<Plan> = None;
    for spec in specs {
        let mut bounded = checks
            .iter()
            .filter(|c| c.attr == spec.attr)
            .filter_map(|c| bounds(&c.predicate, spec.ty))
            .peekable();
        if bounded.peek().is_none() {
            continue;
        }
        let (lo, hi) = bounded.fold((Bound::Unbounded, Bound::Unbounded), |(lo, hi), (l, h)| {
            (
                tighter(lo, l, Ordering::Greater),
                tighter(hi, h, Ordering::Less),
            )
        });
        let plan = Plan {
            spec: spec.clone(),
            lo,
            hi,
        };
        if best
            .as_ref()
            .is_none_or(|b| plan.is_equality() && !b.is_equality())
        {
            best = Some(plan);
        }
    }
    best
}

/// Of two inclusive bounds, the one further in the direction `wins` (the greater of two
/// lower bounds, the lesser of two upper bounds).
fn tighter(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>, wins: Ordering) -> Bound<Vec<u8>> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (Bound::Included(x), Bound::Included(y)) => {
            Bound::Included(if y.cmp(&x) == wins { y } else { x })
        }
        // `encode::bounds` gives inclusive bounds only; keep the first otherwise.
        (x, _) => x,
    }
}

impl Plan {
    fn is_equality(&self) -> bool {
        matches!((&self.lo, &self.hi), (Bound::Included(a), Bound::Included(b)) if a == b)
    }
}

/// Splits an entry's suffix (after the region's prefix) into the encoded value and the key.
pub fn split_entry(ty: Datatype, suffix: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = match ty {
        Datatype::String => {
            let mut i = 0;
            loop {
                match suffix.get(i..i + 2)? {
                    [0, 1] => break i + 2,
                    [0, _] => i += 2,
                    _ => i += 1,
                }
            }
        }
        _ => 8,
    };
    (suffix.len() >= len).then(|| suffix.split_at(len))
}

/// Up to `limit` entries of `region` within the plan's bounds after `after` (an entry suffix,
/// exclusive), as suffixes (encoded value, then key), in value order; fewer than `limit` when
/// the region has no more. (Searches read a region's entries all at once, never from a
/// position: see `daemon::search`.)
pub fn scan_region(
    store: &dyn Store,
    region: RegionId,
    plan: &Plan,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let prefix = region_entries(region, plan.spec.pos);
    let with_prefix = |s: &[u8]| [prefix.as_slice(), s].concat();
    // Entries of a value start with the value's bytes, so "after the value alone" is the
    // first of them.
    let mut from = match &plan.lo {
        Bound::Included(v) | Bound::Excluded(v) => Some(with_prefix(v)),
        Bound::Unbounded => None,
    };
    if let Some(a) = after.map(with_prefix) {
        if from.as_ref().is_none_or(|f| a > *f) {
            from = Some(a);
        }
    }
    let mut out = Vec::new();
    while out.len() < limit {
        let want = (limit - out.len()).min(1024);
        let batch = store.scan_from(Table::Index, &prefix, from.as_deref(), want)?;
        let exhausted = batch.len() < want;
        for (k, _) in batch {
            let suffix = &k[prefix.len()..];
            let Some((value, _)) = split_entry(plan.spec.ty, suffix) else {
                from = Some(k.clone());
                continue;
            };
            let beyond = match &plan.hi {
                Bound::Included(h) => value > h.as_slice(),
                Bound::Excluded(h) => value >= h.as_slice(),
                Bound::Unbounded => false,
            };
            if beyond {
                return Ok(out);
            }
            out.push(suffix.to_vec());
            from = Some(k);
        }
        if exhausted {
            break;
        }
    }
    Ok(out)
}
