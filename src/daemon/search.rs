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

use crate::bugs::{planted, Bug};
use crate::config::{Config, RegionId, ServerId, SpaceConfig};
use crate::hyperspace::entry::Entry;
use crate::protocol::{ClientResponse, SearchRequest};
use crate::storage::{Store, StoreError, Table};

use super::index::{self, Plan};
use super::record::{region_prefix, REGION_PREFIX_LEN};

/// Most objects a page examines (one store scan per page, however many match). The simulation
/// uses tiny pages, so that its searches span many pages and writes land between them.
pub const PAGE_SCAN: usize = if cfg!(madsim) { 6 } else { 8192 };
/// About the most bytes of objects one page returns (a page always holds at least one).
pub const PAGE_BYTES: usize = 1 << 20;
/// The most keys one request may ask to look up (`SearchRequest::keys`).
pub const RESOLVE_KEYS: usize = PAGE_SCAN;

/// One page of a search: the matching objects (or only their number), and where the next
/// page starts (`None`: the regions are done).
#[derive(Debug, Default, PartialEq)]
pub struct Page {
    pub objects: Vec<Object>,
    pub count: u64,
    pub next: Option<(RegionId, Vec<u8>)>,
}

/// Where a page ended, as the client hands it back (opaque to it): after a key of a region
/// read in key order, or at the start of a region (its first byte [`START`], which no key
/// encoding is).
#[derive(Debug, PartialEq)]
enum Position<'a> {
    Start,
    Key(&'a [u8]),
}

const START: u8 = 0xff;

impl Position<'_> {
    fn parse(bytes: &[u8]) -> Position<'_> {
        match bytes {
            [START] => Position::Start,
            key => Position::Key(key),
        }
    }
}

/// How much a page has examined, and the bytes of the objects it holds.
#[derive(Clone, Copy, Default)]
struct Mark {
    scanned: usize,
    bytes: usize,
}

/// The live objects of `space` in `regions` (sorted, deduplicated) that pass `checks`
/// (validated), starting after `after`: at most [`PAGE_SCAN`] objects or index entries
/// examined and about [`PAGE_BYTES`] returned, so a page costs the same whatever the region's
/// size.
///
/// With a `plan` (for a key region) or checks that bound an attribute of its subspace (for a
/// region of another subspace), a region whose entries within the bounds fit in what is left
/// of the page is read through them, all of it in this page (`through_entries`); any other
/// region is read in key order, a page at a time.
pub fn search_store(
    store: &dyn Store,
    space: &SpaceConfig,
    regions: &[RegionId],
    (after, plan): (Option<&(RegionId, Vec<u8>)>, Option<&Plan>),
    (checks, count_only): (&[Check], bool),
) -> Result<Page, StoreError> {
    let schema: &Space = &space.schema;
    let mut page = Page::default();
    let mut at = Mark::default();
    let full = |at: &Mark| at.scanned >= PAGE_SCAN || at.bytes >= PAGE_BYTES;
    let subspace_specs = index::subspace::SubspaceSpecs::of(space);
    for region in regions
        .iter()
        .filter(|r| after.is_none_or(|(a, _)| *r >= a))
    {
        if full(&at) {
            page.next = Some((*region, vec![START]));
            return Ok(page);
        }
        let from = after
            .filter(|(a, _)| a == region)
            .map_or(Position::Start, |(_, p)| Position::parse(p));
        // A region of another subspace than the key's holds candidates (`hyperspace::entry`),
        // read through its own entries in value order (`index::subspace`).
        let subspace = space.subspace_of(region.index).0 > 0;
        let own;
        let plan = match subspace {
            true => {
                own = subspace_specs.plan(*region, checks);
                own.as_ref()
            }
            false => plan,
        };
        if let (Position::Start, Some(plan)) = (&from, plan) {
            let read = (*region, plan, subspace);
            match through_entries(
                store,
                schema,
                read,
                (checks, count_only),
                &mut page,
                &mut at,
            )? {
                Through::Done => continue,
                Through::NextPage => {
                    page.next = Some((*region, vec![START]));
                    return Ok(page);
                }
                Through::KeyOrder => {}
            }
        }
        // In key order, from where the last page of this region ended.
        let from = match from {
            Position::Key(k) => Some(super::record::object_key(*region, k)),
            Position::Start => None,
        };
        let prefix = region_prefix(*region);
        let table = if subspace {
            Table::Subspace
        } else {
            Table::Objects
        };
        let entries = store.scan_from(
            table,
            &prefix,
            from.as_deref(),
            PAGE_SCAN.saturating_sub(at.scanned).max(1),
        )?;
        for (k, v) in &entries {
            let kb = &k[REGION_PREFIX_LEN..];
            at.scanned += 1;
            if subspace {
                take(
                    &mut page,
                    &mut at,
                    candidate(schema, kb, v, checks),
                    v.len(),
                    false,
                );
            } else if count_only && checks.is_empty() {
                // Counting every live object: no need to decode it.
                page.count += u64::from(super::record::is_live(v) == Some(true));
            } else {
                let found = matching(schema, kb, v, checks, None);
                take(&mut page, &mut at, found, v.len(), count_only);
            }
            if full(&at) {
                page.next = Some((*region, kb.to_vec()));
                return Ok(page);
            }
        }
    }
    Ok(page)
}

/// What became of a region read through entries in value order.
enum Through {
    /// Read whole into the page.
    Done,
    /// Not started: the page ends before it.
    NextPage,
    /// Not started: read it in key order instead, from this page on.
    KeyOrder,
}

/// Reads `region` through the entries of `plan` (of a subspace region's own entries when
/// `subspace`), all of it into this page if its entries within the plan's bounds fit in what
/// is left of the page; otherwise leaves it (and the page) as they were. A region is never
/// paged in value order: an object whose value changes between two pages would move across
/// the page boundary and be seen twice or not at all, while keys do not move.
fn through_entries(
    store: &dyn Store,
    schema: &Space,
    (region, plan, subspace): (RegionId, &Plan, bool),
    (checks, count_only): (&[Check], bool),
    page: &mut Page,
    at: &mut Mark,
) -> Result<Through, StoreError> {
    let budget = PAGE_SCAN - at.scanned;
    let entries = index::scan_region(store, region, plan, None, budget + 1)?;
    let started = at.scanned > 0;
    if entries.len() > budget {
        return Ok(if started {
            Through::NextPage
        } else {
            Through::KeyOrder
        });
    }
    let before = (*at, page.objects.len(), page.count);
    // A subspace region has an entry per value it keeps for a key: each key once, in key
    // order as a scan would give them.
    let mut keys = std::collections::BTreeSet::new();
    for suffix in &entries {
        at.scanned += 1;
        let Some((value, key)) = index::split_entry(plan.spec.ty, suffix) else {
            continue;
        };
        if subspace {
            keys.insert(key);
            continue;
        }
        let stored = store
            .get(Table::Objects, &super::record::object_key(region, key))?
            .unwrap_or_default();
        let found = matching(schema, key, &stored, checks, Some((value, &plan.spec)));
        take(page, at, found, stored.len(), count_only);
    }
    for key in keys {
        let stored = store
            .get(Table::Subspace, &super::record::object_key(region, key))?
            .unwrap_or_default();
        let found = candidate(schema, key, &stored, checks);
        take(page, at, found, key.len(), false);
    }
    if at.bytes < PAGE_BYTES {
        return Ok(Through::Done);
    }
    // Too much to send in one page: take the region back, and read it in key order (in the
    // next page if this one holds anything else).
    (*at, _, page.count) = before;
    page.objects.truncate(before.1);
    Ok(if started {
        Through::NextPage
    } else {
        Through::KeyOrder
    })
}

/// Adds an object a page found.
fn take(page: &mut Page, at: &mut Mark, found: Option<Object>, size: usize, count_only: bool) {
    let Some(o) = found else {
        return;
    };
    page.count += 1;
    if !count_only {
        at.bytes += size;
        page.objects.push(o);
    }
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
    let stored = super::record::decode(stored)?;
    let (obj, key) = (stored.object?, decode(kb).ok()?);
    if let Some((value, spec)) = entry {
        let current = obj.get(&spec.attr).and_then(index::encode::sortable);
        if current.as_deref() != Some(value) {
            return None;
        }
    }
    matches(schema, &key, &obj, checks).then(|| with_key(schema, &key, &obj))
}

/// A key a subspace region holds values for that may pass `checks` (current or kept for
/// searches in progress), as an object holding only the key: a candidate for the key's head
/// to resolve (its values there are what counts).
fn candidate(schema: &Space, kb: &[u8], stored: &[u8], checks: &[Check]) -> Option<Object> {
    let entry: Entry<Object> = postcard::from_bytes(stored).ok()?;
    let key = decode(kb).ok()?;
    let passes = |o: &Object| matches(schema, &key, o, checks);
    let formers = entry
        .formers
        .iter()
        .filter(|_| !planted(Bug::CandidatesCurrentOnly));
    entry
        .current
        .iter()
        .chain(formers.map(|f| &f.values))
        .find(|o| passes(o))?;
    Some(with_key(schema, &key, &Object::new()))
}

/// The objects among `keys` (sorted, deduplicated) of key region `region` that are live and
/// pass `checks`, starting after `after`: a page ends once about [`PAGE_BYTES`] are taken.
pub fn resolve_keys(
    store: &dyn Store,
    schema: &Space,
    region: RegionId,
    (keys, after): (&[Vec<u8>], Option<&[u8]>),
    (checks, count_only): (&[Check], bool),
) -> Result<Page, StoreError> {
    let mut page = Page::default();
    let mut at = Mark::default();
    let mut last = None;
    for kb in keys
        .iter()
        .filter(|k| after.is_none_or(|a| k.as_slice() > a))
    {
        if let (true, Some(last)) = (at.bytes >= PAGE_BYTES, last) {
            page.next = Some((region, Vec::clone(last)));
            return Ok(page);
        }
        let stored = store
            .get(Table::Objects, &super::record::object_key(region, kb))?
            .unwrap_or_default();
        let found = matching(schema, kb, &stored, checks, None);
        take(&mut page, &mut at, found, stored.len(), count_only);
        last = Some(kb);
    }
    Ok(page)
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
    if !req.keys.is_empty() {
        let key_region = regions.len() == 1 && space.subspace_of(regions[0].index).0 == 0;
        if !key_region || req.keys.len() > RESOLVE_KEYS {
            return error(
                ReturnCode::Garbage,
                format!("a lookup of keys names one key region and at most {RESOLVE_KEYS} keys"),
            );
        }
        let mut keys = req.keys.clone();
        keys.sort();
        keys.dedup();
        let after = req.after.as_ref().map(|(_, k)| k.as_slice());
        let page = resolve_keys(
            store,
            &space.schema,
            regions[0],
            (&keys, after),
            (&checks, req.count_only),
        )?;
        return Ok(ClientResponse::Page {
            objects: page.objects,
            count: page.count,
            next: page.next,
        });
    }
    // Each page decides afresh: a region is read through an index all at once or in key
    // order, so pages of one search need not read alike.
    let plan = index::plan(store, space, &checks)?;
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
    use crate::daemon::record::{stage, StoredObject};
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

    /// Every page of a search (or a count) over `regions`, following each page's cursor.
    fn every_page(
        store: &MemStore,
        sc: &SpaceConfig,
        regions: &[RegionId],
        checks: &[hyperdex_model::Check],
        count_only: bool,
    ) -> Vec<Page> {
        let (mut pages, mut after) = (Vec::new(), None);
        loop {
            let page = search_store(
                store,
                sc,
                regions,
                (after.as_ref(), None),
                (checks, count_only),
            )
            .unwrap();
            after = page.next.clone();
            pages.push(page);
            if after.is_none() {
                return pages;
            }
        }
    }

    #[test]
    fn pages_cover_every_object_once_and_counts_add_up() {
        let mut store = MemStore::new();
        let n = 20_000;
        for i in 0..n {
            // Every seventh object is deleted: counted by no search.
            let obj = StoredObject {
                version: 1,
                object: (i % 7 != 0).then(|| [("n".to_string(), Value::Int(i))].into()),
                dedupe: Vec::new(),
            };
            let key = hyperdex_model::value::encode(&Value::string(format!("k{i:05}")));
            stage(&mut store, region((i % 2) as u32), &key, &obj).unwrap();
        }
        let sc = space();
        let regions = [region(0), region(1)];
        let even = [hyperdex_model::Check::new(
            "n",
            Predicate::LessThan(Value::Int(n)),
        )];
        let pages = every_page(&store, &sc, &regions, &even, false);
        let mut seen = std::collections::BTreeSet::new();
        for o in pages.iter().flat_map(|p| &p.objects) {
            assert!(seen.insert(o["n"].clone()), "{:?} twice", o["n"]);
        }
        assert!(pages.iter().all(|p| p.objects.len() <= PAGE_SCAN));
        let live = (0..n).filter(|i| i % 7 != 0).count();
        assert_eq!(seen.len(), live);
        assert!(pages.len() >= 3, "{} pages", pages.len());
        // Counted with a check (objects decoded) and without (liveness read from the bytes).
        for checks in [&even[..], &[]] {
            let pages = every_page(&store, &sc, &regions, checks, true);
            assert!(
                pages.iter().all(|p| p.objects.is_empty()),
                "a count ships no objects"
            );
            let counted: u64 = pages.iter().map(|p| p.count).sum();
            assert_eq!(counted, live as u64, "{checks:?}");
        }
    }

    /// A space with a subspace on `t`, 2 regions per subspace.
    fn subspace_space() -> SpaceConfig {
        SpaceConfig {
            id: SpaceId(1),
            schema: parse_space(
                "space s key k attributes int n, string t subspace t create 2 partitions",
            )
            .unwrap(),
            chains: vec![vec![crate::config::ServerId(1)]; 4],
            joining: vec![None; 4],
        }
    }

    fn obj(n: i64, t: &str) -> Object {
        [
            ("n".to_string(), Value::Int(n)),
            ("t".to_string(), Value::string(t)),
        ]
        .into()
    }

    fn key(k: &str) -> Vec<u8> {
        hyperdex_model::value::encode(&Value::string(k))
    }

    #[test]
    fn a_subspace_region_answers_its_candidates_current_or_former() {
        let mut store = MemStore::new();
        let sc = subspace_space();
        let sub = sc.subspace_region(1, 0);
        let mut moved = Entry::new();
        // "b" had t = "x" here at version 1, and version 2 moved it away: kept for searches.
        moved.absorb(crate::hyperspace::entry::Update {
            version: 1,
            now: Some(obj(1, "x")),
        });
        moved.absorb(crate::hyperspace::entry::Update {
            version: 2,
            now: None,
        });
        let mut here = Entry::new();
        here.absorb(crate::hyperspace::entry::Update {
            version: 4,
            now: Some(obj(2, "x")),
        });
        let mut other = Entry::new();
        other.absorb(crate::hyperspace::entry::Update {
            version: 1,
            now: Some(obj(3, "y")),
        });
        // Through the store that keeps the region's entries in value order, as every write is.
        let mut config = crate::config::Config::default();
        config.spaces.insert("s".into(), sc.clone());
        let specs = std::sync::Arc::new(index::Specs::of(&config));
        let mut indexed = index::Indexed::new(&mut store, specs);
        for (k, e) in [("a", &here), ("b", &moved), ("c", &other)] {
            crate::daemon::replica::stage_entry(&mut indexed, sub, &key(k), e);
        }
        let x = [hyperdex_model::Check::new(
            "t",
            Predicate::Equals(Value::string("x")),
        )];
        let pages = every_page(&store, &sc, &[sub], &x, false);
        let keys: Vec<Value> = pages
            .iter()
            .flat_map(|p| &p.objects)
            .map(|o| o["k"].clone())
            .collect();
        assert_eq!(keys, vec![Value::string("a"), Value::string("b")]);
    }

    #[test]
    fn a_lookup_returns_the_live_matching_objects_among_its_keys() {
        let mut store = MemStore::new();
        let sc = subspace_space();
        let r = region(0);
        for (k, n, live) in [("a", 1, true), ("b", 5, true), ("c", 1, false)] {
            let o = StoredObject {
                version: 1,
                object: live.then(|| obj(n, "x")),
                dedupe: Vec::new(),
            };
            stage(&mut store, r, &key(k), &o).unwrap();
        }
        let small = [hyperdex_model::Check::new(
            "n",
            Predicate::LessThan(Value::Int(3)),
        )];
        let keys = [key("a"), key("b"), key("c"), key("d")];
        let page = resolve_keys(&store, &sc.schema, r, (&keys, None), (&small, false)).unwrap();
        assert_eq!(page.objects.len(), 1);
        assert_eq!(page.objects[0]["k"], Value::string("a"));
        assert_eq!(page.next, None);
        // After "a": nothing left that matches.
        let page = resolve_keys(
            &store,
            &sc.schema,
            r,
            (&keys, Some(&key("a"))),
            (&small, true),
        )
        .unwrap();
        assert_eq!(page.count, 0);
    }

    #[test]
    fn a_lookup_naming_a_subspace_region_or_too_many_keys_is_refused() {
        let store = MemStore::new();
        let sc = subspace_space();
        let mut config = Config::default();
        config.spaces.insert("s".to_string(), sc.clone());
        let request = |regions: Vec<RegionId>, keys: usize| SearchRequest {
            config_version: 0,
            space: "s".into(),
            regions,
            checks: Vec::new(),
            after: None,
            count_only: false,
            keys: (0..keys).map(|i| key(&format!("k{i}"))).collect(),
        };
        let me = crate::config::ServerId(1);
        for req in [
            request(vec![sc.subspace_region(1, 0)], 1),
            request(vec![region(0)], RESOLVE_KEYS + 1),
            request(vec![region(0), region(1)], 1),
        ] {
            match run(&store, &config, me, &req).unwrap() {
                ClientResponse::Reply(Reply::Error(ReturnCode::Garbage, _)) => {}
                other => panic!("{other:?}"),
            }
        }
        match run(&store, &config, me, &request(vec![region(0)], RESOLVE_KEYS)).unwrap() {
            ClientResponse::Page { objects, .. } => assert!(objects.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}
