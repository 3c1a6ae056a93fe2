//! Search inside one daemon: scans the regions a request names and returns the live objects
//! that pass its checks.

use hyperdex_model::apply::{matches, validate_checks};
use hyperdex_model::db::with_key;
use hyperdex_model::value::decode;
use hyperdex_model::{Check, Object, Reply, ReturnCode, Space};

use crate::config::{Config, RegionId, ServerId, SpaceConfig};
use crate::protocol::{ClientResponse, SearchRequest};
use crate::storage::{Store, StoreError, Table};

use super::record::{region_prefix, StoredObject, REGION_PREFIX_LEN};

/// Every live object of `space` in `regions` that passes `checks` (validated), with its key.
pub fn search_store(
    store: &dyn Store,
    space: &SpaceConfig,
    regions: &[RegionId],
    checks: &[Check],
) -> Result<Vec<Object>, StoreError> {
    let schema: &Space = &space.schema;
    let mut found = Vec::new();
    for region in regions {
        for (k, v) in store.scan_prefix(Table::Objects, &region_prefix(*region))? {
            let kb = &k[REGION_PREFIX_LEN..];
            let Ok(stored) = postcard::from_bytes::<StoredObject>(&v) else {
                continue;
            };
            let (Some(obj), Ok(key)) = (stored.object, decode(kb)) else {
                continue;
            };
            if matches(schema, &key, &obj, checks) {
                found.push(with_key(schema, &key, &obj));
            }
        }
    }
    Ok(found)
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
    Ok(ClientResponse::Objects(search_store(
        store, space, &regions, &checks,
    )?))
}
