//! What a region of a (non-key) subspace keeps for one key, as a state machine without I/O.
//!
//! A subspace region is a set of **candidates**: the keys a search asking this region must
//! consider. Its answers are resolved at the key's head (the one place that orders a key's
//! versions), so a candidate too many costs a lookup and a candidate too few is a missed
//! object. The rule this module keeps is therefore one-sided:
//!
//! > While the key's head shows version `v` of an object whose values place it in this
//! > region, this region holds `v`'s values (as its current values or as a *former*).
//!
//! The key region's tail sends each write of the key, as an [`Update`], to the region of the
//! new values and to the region of the values it replaces (once when they agree). Updates can
//! arrive in any order and more than once (retransmissions, a new tail resending), and a
//! version the region never hears of may come between two it does (the object was
//! elsewhere), so:
//!
//! - the newest version heard of gives the current values (or none: the object is not here);
//! - values that an update replaces, and values of an update older than what is held, are kept
//!   as *formers*, each with the version that replaced them (`until`): the head shows them at
//!   most until it commits `until`;
//! - the region acknowledges a version only once it has taken in that version's own update
//!   (holding a newer one is not enough: the newer one may have come first, and the head
//!   would then show values this region never had), and the head commits a version only once
//!   every region it touches has acknowledged it;
//! - a former may go once the head has committed `until` ([`Entry::settle`], from asking it)
//!   and a search's longest life has passed since ([`Entry::expire`]), so a search that began
//!   while the head showed it still finds it; an entry with neither current values nor formers
//!   goes the same way (its version is kept until then, so a late duplicate is recognised);
//! - an update of the version held with other values is of another write given the same
//!   version (the first was dropped before any head committed it): it becomes the current
//!   values, and the values it replaces a former;
//! - likewise an update older than what is held whose version the region keeps other values
//!   for (the dropped write's, and newer ones built on them): its values are kept as a former
//!   beside those, not in their place.
//!
//! The tests drive random deliveries against a head that commits a version only once this
//! region has acknowledged it, and check the rule at every step, and that everything settled
//! and expired leaves exactly the current values.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bugs::{planted, Bug};
use crate::rt::Instant;

/// One write of a key as a subspace region hears of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Update<T> {
    /// The version the write gave the object.
    pub version: u64,
    /// The object's values after the write, if they place it in this region (`None`: the
    /// write deleted the object or moved it to another region).
    pub now: Option<T>,
}

/// Values the object had here at an older version, which the head may still show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Former<T> {
    /// The version that replaced them.
    pub until: u64,
    pub values: T,
    /// When the head was known to have committed `until` (not stored: a restarted server
    /// asks again).
    #[serde(skip)]
    pub settled: Option<Instant>,
}

/// What a subspace region keeps for one key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry<T> {
    /// The newest version heard of.
    pub version: u64,
    /// Its values, if they place the object here.
    pub current: Option<T>,
    pub formers: Vec<Former<T>>,
    /// Without current values: when the head was known to have committed `version`.
    #[serde(skip)]
    pub settled: Option<Instant>,
}

impl<T: Clone + PartialEq> Entry<T> {
    /// The entry of a key this region has kept nothing for.
    pub fn new() -> Entry<T> {
        Entry {
            version: 0,
            current: None,
            formers: Vec::new(),
            settled: None,
        }
    }

    /// Takes in one update (in any order, any number of times).
    pub fn absorb(&mut self, u: Update<T>) {
        if u.version > self.version {
            if let Some(current) = self.current.take() {
                self.keep(self.version + 1, current);
            }
            self.version = u.version;
            self.current = u.now;
            self.settled = None;
        } else if u.version < self.version {
            if let Some(now) = u.now {
                self.keep(u.version + 1, now);
            }
        } else if u.now != self.current && !planted(Bug::VersionGivenAgainIgnored) {
            // Two writes given the same version: one the key's chain dropped before
            // committing it (all its members left or rejoined) and one a later head ordered
            // in its place. Updates of an older configuration are not taken once a region has
            // a newer one, so the later one is the one heard last; the other's values stay a
            // former (a candidate too many at worst).
            crate::probe!("subspace.version_given_again");
            if let Some(current) = self.current.take() {
                self.keep(self.version + 1, current);
            }
            self.current = u.now;
            self.settled = None;
        }
    }

    /// Takes in another copy of the entry (a state transfer's): what either holds stays.
    pub fn merge(&mut self, other: Entry<T>) {
        for f in other.formers {
            self.keep(f.until, f.values);
        }
        self.absorb(Update {
            version: other.version,
            now: other.current,
        });
    }

    fn keep(&mut self, until: u64, values: T) {
        // The values of version `until - 1` (a duplicate update brings them again). Two
        // writes given that version (one dropped) have values of their own: both are kept.
        let one_per_version = planted(Bug::FormersOnePerVersion);
        if self
            .formers
            .iter()
            .any(|f| f.until == until && (one_per_version || f.values == values))
        {
            return;
        }
        self.formers.push(Former {
            until,
            values,
            settled: None,
        });
    }

    /// Whether this region has taken in the update of `version` (`values`: whether it carried
    /// values), as far as it can matter: values kept until the head committed what replaced
    /// them may be gone once it has.
    pub fn took(&self, version: u64, values: bool) -> bool {
        if !values {
            return self.version >= version;
        }
        (self.version == version && self.current.is_some())
            || self.formers.iter().any(|f| f.until == version + 1)
    }

    /// Whether a search whose checks `matches` must consider this key.
    pub fn candidate(&self, matches: impl Fn(&T) -> bool) -> bool {
        self.current.as_ref().is_some_and(&matches)
            || self.formers.iter().any(|f| matches(&f.values))
    }

    /// The lowest version the head must be asked about: what a former (or an entry without
    /// current values) waits for, if anything does.
    pub fn unsettled(&self) -> Option<u64> {
        let formers = self.formers.iter().filter(|f| f.settled.is_none());
        let tomb = (self.current.is_none() && self.settled.is_none()).then_some(self.version);
        formers.map(|f| f.until).chain(tomb).min()
    }

    /// The key's head has committed version `committed` (it was asked at or before `now`).
    pub fn settle(&mut self, committed: u64, now: Instant) {
        for f in &mut self.formers {
            if f.until <= committed && f.settled.is_none() {
                f.settled = Some(now);
            }
        }
        if self.current.is_none() && self.version <= committed && self.settled.is_none() {
            self.settled = Some(now);
        }
    }

    /// Drops what was settled at least `keep` (a search's longest life) before `now`.
    /// Returns whether nothing is left (the entry may be deleted).
    pub fn expire(&mut self, now: Instant, keep: Duration) -> bool {
        let gone = |s: Option<Instant>| s.is_some_and(|s| now >= s + keep);
        self.formers.retain(|f| !gone(f.settled));
        self.current.is_none() && self.formers.is_empty() && gone(self.settled)
    }
}

impl<T: Clone + PartialEq> Default for Entry<T> {
    fn default() -> Entry<T> {
        Entry::new()
    }
}

#[cfg(test)]
#[path = "entry_tests.rs"]
mod tests;
