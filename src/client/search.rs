//! Searches: scatter-gather to the head of every region that can hold a match, merged in
//! key order. `count`, `sorted_search`, `group_del` and the `group_*` calls build on it; a
//! group call applies its change to each matching object through that object's chain, as a
//! conditional write with the same checks, so objects that stopped matching are left alone.

use std::collections::BTreeMap;
use std::time::Duration;

use hyperdex_model::db::sort_results;
use hyperdex_model::{Check, Funcall, Object, Operation, Predicate, Reply, ReturnCode, Value};

use super::{unexpected, Client, ClientError, ClientResult};
use crate::config::{Config, RegionId, ServerId, SpaceConfig};
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
            Operation::Count { space, checks } => match self.search_all(&space, &checks).await {
                Ok(objs) => Reply::Count(objs.len() as u64),
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

    /// Every object of `space` passing `checks`, in key order.
    pub async fn search_all(&self, space: &str, checks: &[Check]) -> ClientResult<Vec<Object>> {
        let deadline = rt::now() + self.inner.opts.timeout;
        loop {
            let config = self.config();
            let last = match self.search_once(&config, space, checks).await {
                Ok(result) => return result,
                Err(why) => why,
            };
            if rt::now() >= deadline {
                return Err(ClientError::new(
                    ReturnCode::Timeout,
                    format!("search did not complete: {last}"),
                ));
            }
            rt::sleep(Duration::from_millis(20)).await;
            let _ = self.refresh().await;
        }
    }

    /// One scatter-gather round: `Err` to retry, `Ok(Err)` for a final error.
    async fn search_once(
        &self,
        config: &Config,
        space: &str,
        checks: &[Check],
    ) -> Result<ClientResult<Vec<Object>>, String> {
        let Some(sc) = config.space(space) else {
            return Ok(Err(ClientError::new(
                ReturnCode::UnknownSpace,
                format!("unknown space \"{space}\""),
            )));
        };
        let mut by_head: BTreeMap<ServerId, Vec<RegionId>> = BTreeMap::new();
        for r in search_regions(sc, checks) {
            let head = *config
                .chain(r)
                .first()
                .ok_or_else(|| format!("region {r} has no servers"))?;
            by_head.entry(head).or_default().push(r);
        }
        let mut calls = Vec::new();
        for (head, regions) in by_head {
            let addr = config
                .server(head)
                .ok_or_else(|| format!("unknown server {head}"))?
                .addr
                .clone();
            let msg = Message::ToDaemon(ClientRequest::Search(SearchRequest {
                config_version: config.version,
                space: space.to_string(),
                regions,
                checks: checks.to_vec(),
            }));
            let this = self.clone();
            calls.push(rt::spawn(async move {
                let conn = this.conn(&addr).await.map_err(|e| e.to_string())?;
                conn.call(msg, this.inner.opts.attempt_timeout)
                    .await
                    .map_err(|e| e.to_string())
            }));
        }
        let key_name = &sc.schema.key.name;
        let mut all: BTreeMap<Option<Value>, Object> = BTreeMap::new();
        for c in calls {
            match c.await.map_err(|e| e.to_string())? {
                Ok(Message::FromDaemon(ClientResponse::Objects(objs))) => {
                    for o in objs {
                        all.insert(o.get(key_name).cloned(), o);
                    }
                }
                Ok(Message::FromDaemon(ClientResponse::Reply(Reply::Error(
                    ReturnCode::Reconfigure | ReturnCode::Offline,
                    why,
                )))) => return Err(why),
                Ok(Message::FromDaemon(ClientResponse::Reply(r))) => return Ok(Err(unexpected(r))),
                Ok(other) => return Err(format!("unexpected reply {}", other.name())),
                Err(e) => return Err(e),
            }
        }
        Ok(Ok(all.into_values().collect()))
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

/// The regions a search must visit: the one region that can hold the object when a check
/// pins the key with `Equals` (the daemon still validates every check), otherwise all.
fn search_regions(sc: &SpaceConfig, checks: &[Check]) -> Vec<RegionId> {
    let pinned = checks.iter().find_map(|c| match &c.predicate {
        Predicate::Equals(v) if c.attr == sc.schema.key.name => sc.region_of(v),
        _ => None,
    });
    match pinned {
        Some(r) => vec![r],
        None => (0..sc.chains.len())
            .map(|index| RegionId {
                space: sc.id,
                index: index as u32,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::state::{Cluster, Command};

    fn space() -> SpaceConfig {
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
            .apply(
                &Command::add_space("space people key name attributes int age")
                    .expect("a valid space"),
            )
            .expect("add space");
        cluster.config.space("people").expect("space").clone()
    }

    #[test]
    fn a_search_pinning_the_key_visits_one_region() {
        let sc = space();
        assert_eq!(sc.chains.len(), 64);
        let all = search_regions(&sc, &[Check::new("age", Predicate::Equals(Value::Int(3)))]);
        assert_eq!(all.len(), 64);
        let key = Value::String(b"jane".to_vec());
        let one = search_regions(
            &sc,
            &[
                Check::new("age", Predicate::GreaterEqual(Value::Int(3))),
                Check::new("name", Predicate::Equals(key.clone())),
            ],
        );
        assert_eq!(one, vec![sc.region_of(&key).expect("a key")]);
        // Other predicates on the key, and values that cannot be a key, still visit everything
        // (so the daemons report the type error).
        let range = search_regions(&sc, &[Check::new("name", Predicate::Regex("j.*".into()))]);
        assert_eq!(range.len(), 64);
        let wrong = search_regions(&sc, &[Check::new("name", Predicate::Equals(Value::Int(1)))]);
        assert_eq!(wrong.len(), 64);
    }
}
