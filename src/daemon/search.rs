//! Search inside one daemon: reads the regions a request names and returns the live objects
//! that pass its checks, a page at a time (the client asks for the next page with the cursor
//! the last one ended at), or only their number for a count. A search with an equality or a
//! range on an attribute whose index this daemon has built reads only that index's entries
//! within the predicate's bounds (`daemon::index`); any other scans the regions. A page
//! examines a bounded number of objects, so neither a search nor a count over a large region
//! holds the daemon's actor for long or builds a large answer.

use hyperdex_model::apply::{matches, validate_checks};
use hyperdex_model::db::with_key;
use hyperdex_model::value::decode;
use hyperdex_model::{Check, Object, Reply, ReturnCode, Space};

use crate::config::{Config, RegionId, ServerId, SpaceConfig};
use crate::protocol::{ClientResponse, SearchRequest};
use crate::storage::{Store, StoreError, Table};

use super::index::{self, Plan};
use super::record::{region_prefix, StoredObject, REGION_PREFIX_LEN};

/// Most objects a page examines (one store scan per page, however many match).
pub const PAGE_SCAN: usize = 8192;
/// About the most bytes of objects one page returns (a page always holds at least one).
pub const PAGE_BYTES: usize = 1 << 20;

/// One page of a search: the matching objects (or only their number), and where the next
/// page starts (`None`: the regions are done).
#[derive(Debug, Default, PartialEq)]
pub struct Page {
    pub objects: Vec<Object>,
    pub count: u64,
    pub next: Option<(RegionId, Vec<u8>)>,
}

/// Where a page ended, as the client hands it back (opaque to it): a key of a region read in
/// key order, or an index entry of a region read through an index (the attribute's position,
/// then the entry), so the next page reads the same way.
#[derive(Debug, PartialEq)]
enum Position<'a> {
    Key(&'a [u8]),
    Index(u16, &'a [u8]),
}

impl Position<'_> {
    fn parse(bytes: &[u8]) -> Option<Position<'_>> {
        match bytes.split_first()? {
            (0, key) => Some(Position::Key(key)),
            (1, [a, b, entry @ ..]) => Some(Position::Index(u16::from_be_bytes([*a, *b]), entry)),
            _ => None,
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Position::Key(k) => [&[0u8][..], k].concat(),
            Position::Index(pos, e) => [&[1u8][..], &pos.to_be_bytes(), e].concat(),
        }
    }
}

/// An object a page examines: the position after it, its key, its stored bytes, and (read
/// through an index) the value its entry says it has.
type Candidate = (Vec<u8>, Vec<u8>, Vec<u8>, Option<Vec<u8>>);

/// The live objects of `space` in `regions` (sorted, deduplicated) that pass `checks`
/// (validated), read in key order or through `plan`'s index, starting after `after`: at most
/// [`PAGE_SCAN`] objects or entries examined and about [`PAGE_BYTES`] returned, so a page
/// costs the same whatever the region's size. `after` must be a position of the same plan.
pub fn search_store(
    store: &dyn Store,
    space: &SpaceConfig,
    regions: &[RegionId],
    (after, plan): (Option<&(RegionId, Vec<u8>)>, Option<&Plan>),
    (checks, count_only): (&[Check], bool),
) -> Result<Page, StoreError> {
    let schema: &Space = &space.schema;
    let mut page = Page::default();
    let (mut scanned, mut bytes) = (0usize, 0usize);
    for region in regions
        .iter()
        .filter(|r| after.is_none_or(|(a, _)| *r >= a))
    {
        let from = after
            .filter(|(a, _)| a == region)
            .and_then(|(_, p)| Position::parse(p));
        let budget = PAGE_SCAN - scanned;
        let candidates: Vec<Candidate> = match plan {
            None => {
                let from = match from {
                    Some(Position::Key(k)) => Some(super::record::object_key(*region, k)),
                    _ => None,
                };
                let prefix = region_prefix(*region);
                store
                    .scan_from(Table::Objects, &prefix, from.as_deref(), budget)?
                    .into_iter()
                    .map(|(k, v)| {
                        let kb = k[REGION_PREFIX_LEN..].to_vec();
                        (Position::Key(&kb).encode(), kb, v, None)
                    })
                    .collect()
            }
            Some(plan) => {
                let from = match from {
                    Some(Position::Index(_, e)) => Some(e),
                    _ => None,
                };
                let mut out = Vec::new();
                for suffix in index::scan_region(store, *region, plan, from, budget)? {
                    let Some((value, key)) = index::split_entry(plan.spec.ty, &suffix) else {
                        continue;
                    };
                    let stored = store
                        .get(Table::Objects, &super::record::object_key(*region, key))?
                        .unwrap_or_default();
                    let cursor = Position::Index(plan.spec.pos, &suffix).encode();
                    out.push((cursor, key.to_vec(), stored, Some(value.to_vec())));
                }
                out
            }
        };
        for (cursor, kb, v, value) in &candidates {
            scanned += 1;
            let expect = value.as_deref().zip(plan.map(|p| &p.spec));
            if let Some(o) = matching(schema, kb, v, checks, expect) {
                page.count += 1;
                if !count_only {
                    bytes += v.len();
                    page.objects.push(o);
                }
            }
            if scanned >= PAGE_SCAN || bytes >= PAGE_BYTES {
                page.next = Some((*region, cursor.clone()));
                return Ok(page);
            }
        }
    }
    Ok(page)
}

/// The object under `kb` as a search returns it, if it is live and passes `checks` (and, read
/// through an index, still has the entry's value: a stale entry is skipped).
fn matching(
    schema: &Space,
    kb: &[u8],
    stored: &[u8],
    checks: &[Check],
    entry: Option<(&[u8], &index::Spec)>,
) -> Option<Object> {
    let stored = postcard::from_bytes::<StoredObject>(stored).ok()?;
    let (obj, key) = (stored.object?, decode(kb).ok()?);
    if let Some((value, spec)) = entry {
        let current = obj.get(&spec.attr).and_then(index::encode::sortable);
        if current.as_deref() != Some(value) {
            return None;
        }
    }
    matches(schema, &key, &obj, checks).then(|| with_key(schema, &key, &obj))
}

/// Answers a search request (whose configuration and lease the replica has checked): every
/// region named must be one this server heads, and the checks must be valid for the space.
pub fn run(
    store: &dyn Store,
    config: &Config,
    me: ServerId,
    req: &SearchRequest,
) -> Result<ClientResponse, StoreError> {
    let error = |code, message| Ok(ClientResponse::Reply(Reply::Error(code, message)));
    let Some(space) = config.space(&req.space) else {
        return error(
            ReturnCode::UnknownSpace,
            format!("unknown space \"{}\"", req.space),
        );
    };
    if space.schema.authorization {
        return error(
            ReturnCode::Unauthorized,
            format!(
                "space \"{}\" has authorization: searches would bypass its objects' macaroons",
                req.space
            ),
        );
    }
    // Each region once, however often the request names it.
    let regions: Vec<RegionId> = req
        .regions
        .iter()
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if let Some(r) = regions
        .iter()
        .find(|r| r.space != space.id || config.chain(**r).first() != Some(&me))
    {
        return error(
            ReturnCode::Reconfigure,
            format!("server {me} is not the head of region {r}"),
        );
    }
    let checks = match validate_checks(&space.schema, &req.checks) {
        Ok(c) => c,
        Err(f) => return Ok(ClientResponse::Reply(f.into_reply())),
    };
    // A search reads the way its first page did: through the same index, or in key order.
    let plan = match req.after.as_ref().map(|(_, p)| Position::parse(p)) {
        None => index::plan(store, space, &checks)?,
        Some(Some(Position::Key(_))) => None,
        Some(Some(Position::Index(pos, _))) => match index::resume(store, space, &checks, pos)? {
            Some(plan) => Some(plan),
            None => {
                return error(
                    ReturnCode::Reconfigure,
                    format!("server {me} has no complete index for this search's next page"),
                )
            }
        },
        Some(None) => {
            return error(
                ReturnCode::Garbage,
                "the search's position is malformed".to_string(),
            )
        }
    };
    if plan.is_some() {
        crate::probe!("search.read_through_index");
    }
    let page = search_store(
        store,
        space,
        &regions,
        (req.after.as_ref(), plan.as_ref()),
        (&checks, req.count_only),
    )?;
    Ok(ClientResponse::Page {
        objects: page.objects,
        count: page.count,
        next: page.next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SpaceId;
    use crate::daemon::record::stage;
    use crate::storage::MemStore;
    use hyperdex_model::{parse_space, Predicate, Value};

    fn space() -> SpaceConfig {
        SpaceConfig {
            id: SpaceId(1),
            schema: parse_space("space s key k attributes int n create 2 partitions").unwrap(),
            chains: vec![Vec::new(); 2],
            joining: vec![None; 2],
        }
    }

    fn region(index: u32) -> RegionId {
        RegionId {
            space: SpaceId(1),
            index,
        }
    }

    #[test]
    fn pages_cover_every_object_once_and_counts_add_up() {
        let mut store = MemStore::new();
        let n = 20_000;
        for i in 0..n {
            let obj = StoredObject {
                version: 1,
                object: Some([("n".to_string(), Value::Int(i))].into()),
                dedupe: Vec::new(),
            };
            let key = hyperdex_model::value::encode(&Value::string(format!("k{i:05}")));
            stage(&mut store, region((i % 2) as u32), &key, &obj);
        }
        let sc = space();
        let regions = [region(0), region(1)];
        let even = [hyperdex_model::Check::new(
            "n",
            Predicate::LessThan(Value::Int(n)),
        )];
        let (mut seen, mut pages, mut after) = (std::collections::BTreeSet::new(), 0, None);
        loop {
            let page = search_store(
                &store,
                &sc,
                &regions,
                (after.as_ref(), None),
                (&even, false),
            )
            .unwrap();
            pages += 1;
            assert!(page.objects.len() <= PAGE_SCAN);
            for o in &page.objects {
                assert!(seen.insert(o["n"].clone()), "{:?} twice", o["n"]);
            }
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        assert_eq!(seen.len(), n as usize);
        assert!(pages >= 3, "{pages} pages");
        let (mut counted, mut after) = (0, None);
        loop {
            let page =
                search_store(&store, &sc, &regions, (after.as_ref(), None), (&even, true)).unwrap();
            assert!(page.objects.is_empty(), "a count ships no objects");
            counted += page.count;
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        assert_eq!(counted, n as u64);
    }
}
