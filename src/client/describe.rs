//! `search_describe`: how a search would run, without running it.

use std::collections::BTreeSet;

use hyperdex_model::apply::validate_checks;
use hyperdex_model::{Check, Predicate, ReturnCode};

use super::search::search_regions;
use super::{Client, ClientError, ClientResult};
use crate::daemon::index::encode::bounds;

impl Client {
    /// Describes how a search of `space` with `checks` would run: how many regions it asks and
    /// on how many servers, and which index those servers read where they have built it.
    pub async fn search_describe(&self, space: &str, checks: &[Check]) -> ClientResult<String> {
        let mut config = self.config();
        if config.space(space).is_none() {
            config = self.refresh().await?;
        }
        let Some(sc) = config.space(space) else {
            return Err(ClientError::new(
                ReturnCode::UnknownSpace,
                format!("unknown space \"{space}\""),
            ));
        };
        let checks =
            validate_checks(&sc.schema, checks).map_err(|f| ClientError::new(f.code, f.reason))?;
        let (regions, candidates) = search_regions(sc, &checks);
        let servers: BTreeSet<_> = regions
            .iter()
            .filter_map(|r| config.chain(*r).first())
            .collect();
        let how = if candidates {
            let (subspace, _) = sc.subspace_of(regions[0].index);
            let attrs = sc.schema.subspaces[subspace - 1].attributes.join(", ");
            format!(
                "the checks narrow the subspace of {attrs}: the keys its regions hold are                  looked up at their key regions' heads"
            )
        } else if regions.len() == 1 && sc.key_regions() > 1 {
            "the key is pinned by an equality".to_string()
        } else {
            "no check pins the key or narrows a subspace".to_string()
        };
        // The checks an index can serve: those the daemons' index planning bounds.
        let usable: Vec<&Check> = checks
            .iter()
            .filter(|c| sc.schema.indexes.contains(&c.attr) && bounds(&c.predicate).is_some())
            .collect();
        let equality = usable
            .iter()
            .find(|c| matches!(c.predicate, Predicate::Equals(_)));
        let range = usable.first();
        let read = match equality.or(range) {
            Some(c) => format!(
                "each server reads the index on \"{}\" ({}) where it has built it, and scans \
                 the region otherwise",
                c.attr,
                c.predicate.name()
            ),
            None => "each server scans its regions (no index serves these checks)".to_string(),
        };
        Ok(format!(
            "search of space \"{space}\" with {} check(s): {} of {} regions on {} server(s) ({how}); {read}",
            checks.len(),
            regions.len(),
            sc.key_regions(),
            servers.len()
        ))
    }
}
