//! Searches: scatter-gather to the head of every region that can hold a match, merged in
//! key order. `count`, `sorted_search`, `group_del` and the `group_*` calls build on it; a
//! group call applies its change to each matching object through that object's chain, as a
//! conditional write with the same checks, so objects that stopped matching are left alone.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use hyperdex_model::db::sort_results;
use hyperdex_model::{Check, Funcall, Object, Operation, Predicate, Reply, ReturnCode};

use super::{unexpected, Client, ClientError, ClientResult};
use crate::config::{Config, RegionId, ServerId, SpaceConfig, SpaceId};
use crate::protocol::{ClientRequest, ClientResponse, Message, SearchRequest};
use crate::rt;

impl Client {
    /// A search, count, sorted search or group call (validated).
    pub(super) async fn search_call(&self, config: &Config, op: Operation) -> Reply {
        match op {
            Operation::Search { space, checks } => match self.search_all(&space, &checks).await {
                Ok(objs) => Reply::Objects(objs),
                Err(e) => Reply::Error(e.code, e.message),
            },
            Operation::Count { space, checks } => match self.count_all(&space, &checks).await {
                Ok(n) => Reply::Count(n),
                Err(e) => Reply::Error(e.code, e.message),
            },
            Operation::SortedSearch {
                space,
                checks,
                sort_by,
                limit,
                maximize,
            } => {
                self.sorted_search(config, &space, &checks, &sort_by, limit, maximize)
                    .await
            }
            Operation::GroupDel { space, checks } => self.group(&space, &checks, None).await,
            Operation::GroupWrite {
                space,
                checks,
                funcs,
            } => self.group(&space, &checks, Some(&funcs)).await,
            other => Reply::Error(ReturnCode::Internal, format!("not a search: {other:?}")),
        }
    }

    async fn sorted_search(
        &self,
        config: &Config,
        space: &str,
        checks: &[Check],
        sort_by: &str,
        limit: u64,
        maximize: bool,
    ) -> Reply {
        let Some(sc) = config.space(space) else {
            return Reply::Error(
                ReturnCode::UnknownSpace,
                format!("unknown space \"{space}\""),
            );
        };
        let Some(attr) = sc.schema.any_attribute(sort_by) else {
            return Reply::Error(
                ReturnCode::UnknownAttr,
                format!("cannot sort by unknown attribute \"{sort_by}\" in space \"{space}\""),
            );
        };
        if !attr.datatype.is_comparable() {
            return Reply::Error(
                ReturnCode::WrongType,
                format!("cannot sort by \"{sort_by}\" of type {}", attr.datatype),
            );
        }
        let key_name = sc.schema.key.name.clone();
        match self.search_all(space, checks).await {
            Ok(mut objs) => {
                sort_results(&mut objs, sort_by, &key_name, maximize, limit);
                Reply::Objects(objs)
            }
            Err(e) => Reply::Error(e.code, e.message),
        }
    }

    /// Every object of `space` passing `checks`, in key order (gathered in memory; see
    /// [`Client::search_stream`] for one page at a time).
    pub async fn search_all(&self, space: &str, checks: &[Check]) -> ClientResult<Vec<Object>> {
        let mut stream = self.search_stream(space, checks, false);
        let mut all = Vec::new();
        while let Some(page) = stream.next_page().await {
            all.extend(page?.objects);
        }
        let key_name = self
            .config()
            .space(space)
            .map(|s| s.schema.key.name.clone())
            .unwrap_or_default();
        all.sort_by(|a, b| a.get(&key_name).cmp(&b.get(&key_name)));
        Ok(all)
    }

    /// How many objects of `space` pass `checks`, counted by the daemons (no object is sent).
    pub async fn count_all(&self, space: &str, checks: &[Check]) -> ClientResult<u64> {
        let mut stream = self.search_stream(space, checks, true);
        let mut n = 0;
        while let Some(page) = stream.next_page().await {
            n += page?.count;
        }
        Ok(n)
    }

    /// A search that fetches its results a page at a time (of about 1 MiB at most), region
    /// by region; with `count_only`, pages carry only how many matched.
    pub fn search_stream(&self, space: &str, checks: &[Check], count_only: bool) -> SearchStream {
        SearchStream {
            client: self.clone(),
            space: space.to_string(),
            checks: checks.to_vec(),
            count_only,
            remaining: None,
            queue: None,
            cursor: None,
            deadline: rt::now() + self.inner.opts.timeout,
            began: rt::now(),
            started: false,
            candidates: None,
            began_in: None,
            lookups: None,
        }
    }

    async fn group(&self, space: &str, checks: &[Check], funcs: Option<&Vec<Funcall>>) -> Reply {
        let objs = match self.search_all(space, checks).await {
            Ok(o) => o,
            Err(e) => return Reply::Error(e.code, e.message),
        };
        let config = self.config();
        let Some(key_name) = config.space(space).map(|s| s.schema.key.name.clone()) else {
            return Reply::Error(
                ReturnCode::UnknownSpace,
                format!("unknown space \"{space}\""),
            );
        };
        let mut count = 0;
        for o in objs {
            let Some(key) = o.get(&key_name).cloned() else {
                continue;
            };
            let op = match funcs {
                None => Operation::cond_del(space, key, checks.to_vec()),
                Some(f) => Operation::funcs(space, key, f.clone()).with_checks(checks.to_vec()),
            };
            match self.key_op(op).await {
                Reply::Success => count += 1,
                Reply::CmpFail(_) | Reply::NotFound => {}
                Reply::Error(code, msg) => return Reply::Error(code, msg),
                _ => {}
            }
        }
        Reply::Count(count)
    }
}

/// One page of a search's results.
#[derive(Debug, Default)]
pub struct SearchPage {
    pub objects: Vec<Object>,
    pub count: u64,
}

/// A search in progress (see [`Client::search_stream`]). Regions are visited head by head,
/// each request naming every region left on that head; a page ends at a cursor (a region and
/// a key) from which the next one goes on. After RECONFIGURE or a lost connection the
/// remaining regions are planned again on the new configuration, the cursor's region first,
/// so no object is skipped or returned twice.
pub struct SearchStream {
    client: Client,
    space: String,
    checks: Vec<Check>,
    count_only: bool,
    /// Regions not done yet (`None`: not started).
    remaining: Option<BTreeSet<RegionId>>,
    /// Requests still to make, each the sorted regions of one head (`None`: to plan).
    queue: Option<VecDeque<Vec<RegionId>>>,
    cursor: Option<(RegionId, Vec<u8>)>,
    deadline: rt::Instant,
    began: rt::Instant,
    /// Whether a page has been returned (a space replaced after that is an error; before,
    /// the search starts over on the new one).
    started: bool,
    /// While the regions scanned are another subspace's: the candidate keys found so far.
    candidates: Option<BTreeSet<Vec<u8>>>,
    /// The space the regions planned belong to.
    began_in: Option<SpaceId>,
    /// Once the candidates are in: the lookups left, each a key region and some of its
    /// candidates (the first starts after the cursor's key, if any).
    lookups: Option<VecDeque<(RegionId, Vec<Vec<u8>>)>>,
}

impl SearchStream {
    /// The next page; `None` when every region is done.
    pub async fn next_page(&mut self) -> Option<ClientResult<SearchPage>> {
        loop {
            let mut config = self.client.config();
            if self.remaining.is_none() && config.space(&self.space).is_none() {
                // The space may be new: look again before saying it is unknown.
                match self
                    .client
                    .refresh_within(self.client.inner.opts.timeout)
                    .await
                {
                    Ok(c) => config = c,
                    Err(e) => {
                        return Some(Err(ClientError::new(
                            ReturnCode::CoordFail,
                            format!("cannot look up space \"{}\": {e}", self.space),
                        )))
                    }
                }
            }
            if self.queue.is_none() && self.lookups.is_none() {
                match self.plan(&config) {
                    Ok(q) => self.queue = Some(q),
                    Err(e) => return Some(Err(e)),
                }
            }
            let attempt = if let Some(lookups) = &self.lookups {
                let (region, keys) = lookups.front()?.clone();
                self.request(&config, &[region], keys).await
            } else {
                let Some(group) = self.queue.as_ref()?.front().cloned() else {
                    self.candidates.as_ref()?;
                    match self.candidates_in(&config) {
                        Ok(()) => continue,
                        Err(e) => return Some(Err(e)),
                    }
                };
                self.request(&config, &group, Vec::new()).await
            };
            let problem = match attempt {
                Ok(Ok(page)) if self.candidates.is_some() => {
                    self.take_candidates(&config, page);
                    continue;
                }
                Ok(Ok(page)) => {
                    self.started = true;
                    return Some(Ok(page));
                }
                Ok(Err(e)) => return Some(Err(e)),
                Err(why) => why,
            };
            if rt::now() >= self.deadline {
                return Some(Err(ClientError::new(
                    ReturnCode::Timeout,
                    format!("search did not complete: {problem}"),
                )));
            }
            rt::sleep(Duration::from_millis(20)).await;
            let _ = self.client.refresh().await;
            self.queue = None;
        }
    }

    /// The requests for the regions left: the cursor's region alone first (its key applies
    /// to it only), then the others grouped by their head.
    fn plan(&mut self, config: &Config) -> ClientResult<VecDeque<Vec<RegionId>>> {
        let Some(sc) = config.space(&self.space) else {
            return Err(ClientError::new(
                ReturnCode::UnknownSpace,
                format!("unknown space \"{}\"", self.space),
            ));
        };
        if self
            .remaining
            .as_ref()
            .is_some_and(|rem| rem.iter().any(|r| r.space != sc.id))
        {
            // The space was removed and another of the same name added.
            if self.started {
                crate::probe!("client.space_removed_mid_call");
                return Err(ClientError::new(
                    ReturnCode::UnknownSpace,
                    format!("space \"{}\" was removed during the search", self.space),
                ));
            }
            (self.remaining, self.cursor) = (None, None);
        }
        if self.remaining.is_none() {
            let (regions, candidates) = search_regions(sc, &self.checks);
            self.remaining = Some(regions.into_iter().collect());
            self.candidates = candidates.then(BTreeSet::new);
            self.began_in = Some(sc.id);
        }
        let remaining = self.remaining.get_or_insert_with(BTreeSet::new);
        let mut queue = VecDeque::new();
        let mut by_head: BTreeMap<Option<ServerId>, Vec<RegionId>> = BTreeMap::new();
        for r in remaining.iter() {
            if self.cursor.as_ref().is_some_and(|(c, _)| c == r) {
                queue.push_front(vec![*r]);
            } else {
                by_head
                    .entry(config.chain(*r).first().copied())
                    .or_default()
                    .push(*r);
            }
        }
        queue.extend(by_head.into_values());
        Ok(queue)
    }

    /// One request to the head of `group`: `Err` to plan again and retry, `Ok(Err)` final.
    async fn request(
        &mut self,
        config: &Config,
        group: &[RegionId],
        keys: Vec<Vec<u8>>,
    ) -> Result<ClientResult<SearchPage>, String> {
        let head = *config
            .chain(group[0])
            .first()
            .ok_or_else(|| format!("region {} has no servers", group[0]))?;
        let addr = config
            .server(head)
            .ok_or_else(|| format!("unknown server {head}"))?
            .addr
            .clone();
        let msg = Message::ToDaemon(ClientRequest::Search(SearchRequest {
            config_version: config.version,
            space: self.space.clone(),
            regions: group.to_vec(),
            checks: self.checks.clone(),
            after: self.cursor.clone(),
            // Candidates are gathered whole; what they resolve to may be only counted.
            count_only: self.count_only && self.candidates.is_none(),
            keys,
        }));
        let conn = self.client.conn(&addr).await.map_err(|e| e.to_string())?;
        let answer = conn
            .call(msg, self.client.inner.opts.attempt_timeout)
            .await
            .map_err(|e| e.to_string())?;
        match answer {
            Message::FromDaemon(ClientResponse::Page {
                objects,
                count,
                next,
            }) => {
                self.advance(next);
                Ok(Ok(SearchPage { objects, count }))
            }
            Message::FromDaemon(ClientResponse::Reply(Reply::Error(
                ReturnCode::Reconfigure | ReturnCode::Offline,
                why,
            ))) => Err(why),
            Message::FromDaemon(ClientResponse::Reply(r)) => Ok(Err(unexpected(r))),
            Message::Error { code, message } => Ok(Err(ClientError { code, message })),
            other => Err(format!("unexpected reply {}", other.name())),
        }
    }

    /// The keys of a page of candidates.
    fn take_candidates(&mut self, config: &Config, page: SearchPage) {
        let (Some(found), Some(sc)) = (self.candidates.as_mut(), config.space(&self.space)) else {
            return;
        };
        let key = &sc.schema.key.name;
        let keys = page.objects.iter().filter_map(|o| o.get(key));
        found.extend(keys.filter_map(|k| crate::config::key_bytes(&sc.schema, k)));
    }

    /// Every region of the other subspace has been read: its candidates are looked up at
    /// their key regions' heads, a batch at a time. Their regions kept the values a key's
    /// head showed for a search's life after it stopped showing them, so the reading must
    /// have ended within that life of the search's start.
    fn candidates_in(&mut self, config: &Config) -> ClientResult<()> {
        let Some(found) = self.candidates.take() else {
            return Err(ClientError::new(ReturnCode::Internal, "no candidates"));
        };
        if rt::now().saturating_duration_since(self.began) >= crate::limits::SEARCH_LIFE {
            return Err(ClientError::new(
                ReturnCode::Timeout,
                "the search read its subspace's regions for longer than a search may live",
            ));
        }
        // The candidates' space, as the first request's regions name it.
        let read = self.began_in;
        let Some(sc) = config
            .space(&self.space)
            .filter(|sc| read.is_none_or(|id| id == sc.id))
        else {
            return Err(ClientError::new(
                ReturnCode::UnknownSpace,
                format!("space \"{}\" was removed during the search", self.space),
            ));
        };
        crate::probe!("search.candidates_looked_up");
        let mut by_region: BTreeMap<RegionId, Vec<Vec<u8>>> = BTreeMap::new();
        for k in found {
            by_region.entry(sc.region_of_bytes(&k)).or_default().push(k);
        }
        let lookups = by_region
            .into_iter()
            .flat_map(|(r, keys)| batches(keys).into_iter().map(move |b| (r, b)))
            .collect();
        (self.lookups, self.queue, self.cursor) = (Some(lookups), None, None);
        Ok(())
    }

    /// After a page: on from its cursor, or to the next request when the group is done.
    fn advance(&mut self, next: Option<(RegionId, Vec<u8>)>) {
        if let Some(lookups) = self.lookups.as_mut() {
            // A lookup's page ends after a key: the next asks for the keys after it.
            match next {
                Some((_, after)) => {
                    if let Some((_, keys)) = lookups.front_mut() {
                        keys.retain(|k| *k > after);
                    }
                }
                None => {
                    lookups.pop_front();
                }
            }
            return;
        }
        let (Some(queue), Some(remaining)) = (self.queue.as_mut(), self.remaining.as_mut()) else {
            return;
        };
        let Some(front) = queue.front_mut() else {
            return;
        };
        // The daemon scans a request's regions in order: those before the cursor's are done.
        let done_before = next.as_ref().map(|(r, _)| *r);
        for r in front.iter().filter(|r| done_before.is_none_or(|c| **r < c)) {
            remaining.remove(r);
        }
        match next {
            Some(c) => {
                front.retain(|r| *r >= c.0);
                self.cursor = Some(c);
            }
            None => {
                queue.pop_front();
                self.cursor = None;
            }
        }
    }
}

/// `keys` in lookup requests: at most [`RESOLVE_KEYS`](crate::daemon::search::RESOLVE_KEYS)
/// keys and about [`PAGE_BYTES`](crate::daemon::search::PAGE_BYTES) of them each (always at
/// least one), so a request stays far below the frame limit whatever the keys' sizes.
fn batches(keys: Vec<Vec<u8>>) -> Vec<Vec<Vec<u8>>> {
    use crate::daemon::search::{PAGE_BYTES, RESOLVE_KEYS};
    let mut out: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut bytes = 0;
    for k in keys {
        let full = out
            .last()
            .is_none_or(|b| b.len() >= RESOLVE_KEYS || bytes + k.len() > PAGE_BYTES);
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += k.len();
        out.last_mut().expect("a batch").push(k);
    }
    out
}

/// A search reads another subspace only when the regions of it that can match are at most
/// this fraction of the key subspace's: each candidate costs a lookup at its key's head after
/// the subspace is read, which a search that narrows little would pay for most objects.
const NARROW: u64 = 4;

/// The regions a search must visit, and whether they are another subspace's (whose keys are
/// candidates to look up at their key regions): the one region that can hold the object when
/// a check pins the key with `Equals` (the daemon still validates every check); otherwise the
/// regions of the subspace whose regions that can hold a match are fewest, if at most a
/// [`NARROW`]th of the key subspace's (every one of them).
pub(super) fn search_regions(sc: &SpaceConfig, checks: &[Check]) -> (Vec<RegionId>, bool) {
    let pinned = checks.iter().find_map(|c| match &c.predicate {
        Predicate::Equals(v) if c.attr == sc.schema.key.name => sc.region_of(v),
        _ => None,
    });
    if let Some(r) = pinned {
        return (vec![r], false);
    }
    let best = crate::hyperspace::of_space(sc)
        .iter()
        .enumerate()
        .map(|(i, s)| (i + 1, s.matching(checks)))
        .filter(|(_, r)| r.count() > 0)
        .min_by_key(|(_, r)| r.count());
    match best {
        Some((i, regions)) if regions.count() * NARROW <= u64::from(sc.key_regions()) => (
            regions.iter().map(|r| sc.subspace_region(i, r)).collect(),
            true,
        ),
        _ => (sc.key_region_ids().collect(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::state::{Cluster, Command};
    use hyperdex_model::Value;

    fn space() -> SpaceConfig {
        space_of("space people key name attributes int age")
    }

    fn space_of(description: &str) -> SpaceConfig {
        let mut cluster = Cluster::new(1);
        for port in 0..3 {
            cluster
                .apply(&Command::Register {
                    id: None,
                    addr: format!("127.0.0.1:{}", 2012 + port),
                })
                .expect("register");
        }
        cluster
            .apply(&Command::add_space(description).expect("a valid space"))
            .expect("add space");
        cluster.config.space("people").expect("space").clone()
    }

    #[test]
    fn a_search_pinning_the_key_visits_one_region() {
        let sc = space();
        assert_eq!(sc.chains.len(), 64);
        let (all, _) = search_regions(&sc, &[Check::new("age", Predicate::Equals(Value::Int(3)))]);
        assert_eq!(all.len(), 64);
        let key = Value::String(b"jane".to_vec());
        let (one, _) = search_regions(
            &sc,
            &[
                Check::new("age", Predicate::GreaterEqual(Value::Int(3))),
                Check::new("name", Predicate::Equals(key.clone())),
            ],
        );
        assert_eq!(one, vec![sc.region_of(&key).expect("a key")]);
        // Other predicates on the key, and values that cannot be a key, still visit everything
        // (so the daemons report the type error).
        let (range, _) = search_regions(&sc, &[Check::new("name", Predicate::Regex("j.*".into()))]);
        assert_eq!(range.len(), 64);
        let (wrong, _) =
            search_regions(&sc, &[Check::new("name", Predicate::Equals(Value::Int(1)))]);
        assert_eq!(wrong.len(), 64);
    }

    #[test]
    fn a_search_that_narrows_a_subspace_reads_only_its_regions_that_can_match() {
        let sc = space_of(
            "space people key name attributes int age, string city subspace city subspace age",
        );
        let city = Check::new("city", Predicate::Equals(Value::string("Ithaca")));
        let (regions, candidates) = search_regions(&sc, std::slice::from_ref(&city));
        assert!(candidates);
        assert_eq!(regions.len(), 1);
        assert_eq!(sc.subspace_of(regions[0].index).0, 1);
        // A narrow range of an int: a few regions of the `age` subspace, in order.
        let young = Check::new("age", Predicate::Range(Value::Int(20), Value::Int(21)));
        let (regions, candidates) = search_regions(&sc, &[young]);
        assert!(candidates);
        assert!(regions.len() < 64 && !regions.is_empty(), "{regions:?}");
        assert!(regions.iter().all(|r| sc.subspace_of(r.index).0 == 2));
        // Half the ages: reading the subspace would look up most objects one by one.
        let adults = Check::new("age", Predicate::Range(Value::Int(0), Value::Int(i64::MAX)));
        assert_eq!(
            search_regions(&sc, &[adults]),
            (sc.key_region_ids().collect(), false)
        );
        // Nothing narrowed: every key region; the key pinned: its one region.
        let any = Check::new("city", Predicate::Regex("I.*".into()));
        assert_eq!(
            search_regions(&sc, &[any]),
            (sc.key_region_ids().collect(), false)
        );
        let jane = Value::string("jane");
        let pinned = Check::new("name", Predicate::Equals(jane.clone()));
        let (regions, candidates) = search_regions(&sc, &[city, pinned]);
        assert_eq!(
            (regions, candidates),
            (vec![sc.region_of(&jane).unwrap()], false)
        );
    }

    #[test]
    fn lookups_are_batched_by_count_and_by_bytes() {
        use crate::daemon::search::{PAGE_BYTES, RESOLVE_KEYS};
        let small: Vec<Vec<u8>> = (0..RESOLVE_KEYS as u32 + 1)
            .map(|i| i.to_be_bytes().to_vec())
            .collect();
        let sizes: Vec<usize> = batches(small).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![RESOLVE_KEYS, 1]);
        let big = vec![vec![7u8; PAGE_BYTES / 2 + 1]; 3];
        let sizes: Vec<usize> = batches(big).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
        let huge = vec![vec![7u8; PAGE_BYTES * 2]];
        assert_eq!(
            batches(huge).len(),
            1,
            "a key larger than a batch still goes alone"
        );
        assert!(batches(Vec::new()).is_empty());
    }
}
