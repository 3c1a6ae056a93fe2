//! State transfers in progress, as the joiners report them with their heartbeats. Kept in
//! memory only: a restarted coordinator hears every joiner again within a heartbeat.
//!
//! A joiner does not know how large a region is until it has all of it, but the placement
//! hash spreads a space's objects evenly over its regions: once one transfer of a space has
//! completed, the average size of the regions completed estimates the others, and with each
//! transfer's rate, the time left.

use std::collections::BTreeMap;

use crate::config::{Config, RegionId, ServerId, SpaceId};
use crate::protocol::coordinator::{JoinProgress, TransferReport};
use crate::rt::Instant;

/// What was heard of one join: first and latest report.
#[derive(Clone, Copy, Debug)]
struct Seen {
    first: Instant,
    first_objects: u64,
    last: Instant,
    objects: u64,
    bytes: u64,
}

/// Every join heard of, by (region, joining server, join).
#[derive(Debug, Default)]
pub struct Progress {
    seen: BTreeMap<(RegionId, ServerId, u64), Seen>,
    /// For each space: how many transfers completed, and their objects in all.
    completed: BTreeMap<SpaceId, (u64, u64)>,
}

impl Progress {
    /// `server` reported `joining` at `now`; joins the configuration no longer has are
    /// forgotten.
    pub fn heard(
        &mut self,
        config: &Config,
        server: ServerId,
        joining: &[JoinProgress],
        now: Instant,
    ) {
        for j in joining {
            let entry = self
                .seen
                .entry((j.region, server, j.since))
                .or_insert(Seen {
                    first: now,
                    first_objects: j.objects,
                    last: now,
                    objects: j.objects,
                    bytes: j.bytes,
                });
            entry.last = now;
            entry.objects = j.objects;
            entry.bytes = j.bytes;
        }
        self.seen.retain(|join, _| current(config, join));
    }

    /// A join completed: its last report tells the region's size.
    pub fn completed(&mut self, region: RegionId, server: ServerId, since: u64) {
        if let Some(s) = self.seen.remove(&(region, server, since)) {
            let c = self.completed.entry(region.space).or_default();
            c.0 += 1;
            c.1 += s.objects;
        }
    }

    /// The average size of the space's regions whose transfers completed.
    fn region_size(&self, space: SpaceId) -> Option<u64> {
        self.completed
            .get(&space)
            .filter(|(n, _)| *n > 0)
            .map(|(n, objects)| objects / n)
    }

    /// The transfers in progress in `config`, as last reported.
    pub fn reports(&self, config: &Config) -> Vec<TransferReport> {
        self.seen
            .iter()
            .filter(|(join, _)| current(config, join))
            .map(|((region, server, _), s)| {
                let secs = s.last.saturating_duration_since(s.first).as_secs_f64();
                let rate = if secs > 0.0 {
                    (s.objects - s.first_objects.min(s.objects)) as f64 / secs
                } else {
                    0.0
                };
                let eta_secs = self
                    .region_size(region.space)
                    .filter(|_| rate > 0.0)
                    .map(|size| size.saturating_sub(s.objects) as f64 / rate);
                TransferReport {
                    region: *region,
                    server: *server,
                    objects: s.objects,
                    bytes: s.bytes,
                    objects_per_sec: rate,
                    eta_secs,
                }
            })
            .collect()
    }
}

/// Whether `config` still has the join (region, joining server, start version).
fn current(config: &Config, (region, server, since): &(RegionId, ServerId, u64)) -> bool {
    config
        .joiner(*region)
        .is_some_and(|j| j.server == *server && j.since == *since)
}

/// One line per transfer, as `show-config` and `wait-until-stable` print them.
pub fn describe(reports: &[TransferReport]) -> Vec<String> {
    reports
        .iter()
        .map(|r| {
            let left = r
                .eta_secs
                .map_or(String::new(), |s| format!(", about {s:.0} s left"));
            format!(
                "region {} to server {}: {} objects compared ({:.1} MB sent whole), {:.0} objects/s{left}",
                r.region,
                r.server,
                r.objects,
                r.bytes as f64 / 1e6,
                r.objects_per_sec
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{Joiner, SpaceId};
    use crate::coordinator::state::{Cluster, Command};

    #[test]
    fn a_join_is_reported_with_its_rate_until_it_ends() {
        let mut c = Cluster::new(1);
        c.apply(&Command::add_space("space s key k attributes int n").expect("space"))
            .expect("add");
        let mut config = c.config;
        let region = RegionId {
            space: SpaceId(1),
            index: 0,
        };
        config.spaces.get_mut("s").expect("s").joining[0] = Some(Joiner {
            server: ServerId(4),
            since: 9,
            replaces: None,
        });
        let t0 = crate::rt::now();
        let report = |objects| JoinProgress {
            region,
            since: 9,
            objects,
            bytes: objects * 100,
        };
        let mut p = Progress::default();
        p.heard(&config, ServerId(4), &[report(1000)], t0);
        p.heard(
            &config,
            ServerId(4),
            &[report(3000)],
            t0 + Duration::from_secs(2),
        );
        let r = p.reports(&config);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].objects, r[0].bytes), (3000, 300_000));
        assert!((r[0].objects_per_sec - 1000.0).abs() < 1e-6, "{r:?}");
        assert!(
            describe(&r)[0].contains("3000 objects compared (0.3 MB sent whole), 1000 objects/s"),
            "{:?}",
            describe(&r)
        );
        assert_eq!(
            r[0].eta_secs, None,
            "no region of the space has completed yet"
        );
        // A report of an earlier join is not this one; the join ending forgets it.
        config.spaces.get_mut("s").expect("s").joining[0] = None;
        assert!(p.reports(&config).is_empty());
        p.heard(&config, ServerId(4), &[], t0 + Duration::from_secs(3));
        assert!(p.seen.is_empty());
    }

    #[test]
    fn the_time_left_is_estimated_from_the_regions_completed() {
        let mut c = Cluster::new(1);
        c.apply(&Command::add_space("space s key k attributes int n").expect("space"))
            .expect("add");
        let mut config = c.config;
        let region = |index| RegionId {
            space: SpaceId(1),
            index,
        };
        let joins = &mut config.spaces.get_mut("s").expect("s").joining;
        for join in joins.iter_mut().take(2) {
            *join = Some(Joiner {
                server: ServerId(4),
                since: 9,
                replaces: None,
            });
        }
        let report = |index, objects| JoinProgress {
            region: region(index),
            since: 9,
            objects,
            bytes: 0,
        };
        let t0 = crate::rt::now();
        let mut p = Progress::default();
        p.heard(&config, ServerId(4), &[report(0, 0), report(1, 0)], t0);
        let t1 = t0 + Duration::from_secs(10);
        p.heard(
            &config,
            ServerId(4),
            &[report(0, 5000), report(1, 2000)],
            t1,
        );
        p.completed(region(0), ServerId(4), 9);
        let r = p.reports(&config);
        assert_eq!(r.len(), 1, "{r:?}");
        // Region 0 had 5,000 objects; region 1 has 3,000 to go at 200 objects/s.
        assert_eq!(r[0].eta_secs, Some(15.0));
        assert!(
            describe(&r)[0].ends_with("about 15 s left"),
            "{:?}",
            describe(&r)
        );
    }
}
