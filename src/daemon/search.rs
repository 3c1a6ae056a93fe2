//! Search inside one daemon: scans the regions a request names and returns the live objects
//! that pass its checks.

use hyperdex_model::apply::matches;
use hyperdex_model::db::with_key;
use hyperdex_model::value::decode;
use hyperdex_model::{Check, Object, Space};

use crate::config::{RegionId, SpaceConfig};
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
