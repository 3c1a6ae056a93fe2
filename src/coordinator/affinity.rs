//! A failed server that comes back with its data takes back the regions it served, so that
//! it rejoins them incrementally (receiving only what changed while it was away) instead of
//! the coordinator finishing full transfers to other servers and then moving regions to the
//! returning one, which does not hold them.

use std::collections::BTreeSet;

use super::state::Cluster;
use crate::config::{Joiner, RegionId, ServerId};

impl Cluster {
    /// `id` is about to leave its chains as failed: remembers the regions it held completely.
    pub(super) fn note_departure(&mut self, id: ServerId) {
        let mut held = BTreeSet::new();
        for space in self.config.spaces.values() {
            for (i, (chain, joining)) in space.chains.iter().zip(&space.joining).enumerate() {
                if chain.contains(&id) && joining.map(|j| j.server) != Some(id) {
                    held.insert(RegionId {
                        space: space.id,
                        index: i as u32,
                    });
                }
            }
        }
        self.departed.insert(id, held);
    }

    /// `id` registered again: in each region it held when it failed where another server is
    /// still being filled in its place, it takes that place (the other server's join is
    /// dropped; it had only part of the region). The regions it held that are complete
    /// without it are remembered, so that rebalancing gives it those first.
    pub(super) fn take_back(&mut self, id: ServerId) {
        let Some(held) = self.departed.remove(&id) else {
            return;
        };
        let since = self.config.version + 1;
        let mut rest = BTreeSet::new();
        for region in held {
            let Some(space) = self.config.space_by_id_mut(region.space) else {
                continue;
            };
            let i = region.index as usize;
            let (Some(chain), Some(joining)) = (space.chains.get_mut(i), space.joining.get_mut(i))
            else {
                continue;
            };
            match *joining {
                Some(j) if j.server != id && j.replaces.is_none() && !chain.contains(&id) => {
                    crate::probe!("coordinator.region_taken_back");
                    chain.retain(|&m| m != j.server);
                    chain.push(id);
                    *joining = Some(Joiner {
                        server: id,
                        since,
                        replaces: None,
                    });
                }
                _ if !chain.contains(&id) => {
                    rest.insert(region);
                }
                _ => {}
            }
        }
        if !rest.is_empty() {
            self.departed.insert(id, rest);
        }
    }

    /// Whether `id` held `region` when it last failed (and has not been given it back).
    pub(super) fn held_before(&self, id: ServerId, region: RegionId) -> bool {
        self.departed.get(&id).is_some_and(|r| r.contains(&region))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::state::Command;

    fn cluster(daemons: usize) -> Cluster {
        let mut c = Cluster::new(42);
        for i in 0..daemons {
            c.apply(&Command::Register {
                id: None,
                addr: format!("127.0.0.1:{}", 2012 + i),
            })
            .expect("register");
        }
        c.apply(&Command::add_space("space s key k create 8 partitions").expect("a valid space"))
            .expect("add space");
        c
    }

    /// The regions `id` is in, as a complete member or joining.
    fn regions_of(c: &Cluster, id: ServerId) -> BTreeSet<u32> {
        c.config.spaces["s"]
            .chains
            .iter()
            .enumerate()
            .filter(|(_, chain)| chain.contains(&id))
            .map(|(i, _)| i as u32)
            .collect()
    }

    fn back(c: &mut Cluster, id: ServerId) {
        c.apply(&Command::Register {
            id: Some(id),
            addr: format!("127.0.0.1:{}", 2011 + id.0),
        })
        .expect("register again");
    }

    fn complete(c: &mut Cluster, index: u32) {
        let j = c.config.spaces["s"].joining[index as usize].expect("a join");
        let region = RegionId {
            space: c.config.spaces["s"].id,
            index,
        };
        c.apply(&Command::TransferComplete {
            server: j.server,
            region,
            since: j.since,
        })
        .expect("complete");
    }

    #[test]
    fn a_server_back_before_its_replacements_are_filled_takes_its_regions_back() {
        let mut c = cluster(3);
        let id = ServerId(2);
        let held = regions_of(&c, id);
        c.apply(&Command::ServerFailed(id)).expect("fail");
        // Its regions are being filled on the third server; it comes back meanwhile.
        assert!(held
            .iter()
            .all(|&i| c.config.spaces["s"].joining[i as usize].is_some()));
        back(&mut c, id);
        let s = &c.config.spaces["s"];
        for &i in &held {
            let joiner = s.joining[i as usize].expect("joining");
            assert_eq!(joiner.server, id, "region {i}: {:?}", s.chains[i as usize]);
            assert_eq!(s.chains[i as usize].len(), 2, "the other joiner left");
        }
    }

    #[test]
    fn a_server_back_after_its_replacements_are_filled_gets_its_own_regions_first() {
        let mut c = cluster(3);
        let id = ServerId(2);
        let held = regions_of(&c, id);
        c.apply(&Command::ServerFailed(id)).expect("fail");
        for &i in &held {
            complete(&mut c, i);
        }
        back(&mut c, id);
        // Rebalancing gives it regions back; each is one it held.
        let given = regions_of(&c, id);
        assert!(!given.is_empty());
        assert!(given.is_subset(&held), "given {given:?}, held {held:?}");
    }
}
