use std::time::Duration;

use proptest::prelude::*;

use super::{Entry, Update};

/// A search's longest life in these tests.
const KEEP: Duration = Duration::from_secs(10);

/// One step of a run. The values of version `v` are `v` itself, so a value names its version.
#[derive(Clone, Debug)]
enum Step {
    /// The key region's tail sends the next version's update (if it touches this region).
    Send,
    /// One update in flight arrives (index modulo how many there are); `again`: it stays in
    /// flight, to arrive once more.
    Deliver { pick: usize, again: bool },
    /// The head commits, in order, every version this region (and, in the model, every other)
    /// has acknowledged.
    Commit,
    /// The region asks the head what it has committed.
    Settle,
    /// Time passes; the region drops what expired.
    Wait(u64),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        3 => Just(Step::Send),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(pick, again)| Step::Deliver { pick, again }),
        2 => Just(Step::Commit),
        1 => Just(Step::Settle),
        1 => (1u64..8).prop_map(Step::Wait),
    ];
    proptest::collection::vec(step, 0..80)
}

/// The run's state outside the region: which versions place the object here, what was sent,
/// what the head shows and since when each version stopped showing.
struct World {
    /// `here[v]`: whether version `v`'s values place the object in this region (version 0 is
    /// "no object").
    here: Vec<bool>,
    sent: u64,
    in_flight: Vec<Update<u64>>,
    acked: Vec<bool>,
    committed: u64,
    /// When the head stopped showing each version (it committed the next one), in seconds.
    stopped: Vec<Option<u64>>,
    now: u64,
}

impl World {
    fn update(&self, v: u64) -> Option<Update<u64>> {
        let now = self.here[v as usize].then_some(v);
        let touches = now.is_some() || self.here[v as usize - 1];
        touches.then_some(Update { version: v, now })
    }
}

fn run(here: Vec<bool>, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let last = here.len() as u64 - 1;
    let t0 = crate::rt::now();
    let mut w = World {
        acked: vec![true; here.len()],
        stopped: vec![None; here.len()],
        here,
        sent: 0,
        in_flight: Vec::new(),
        committed: 0,
        now: 0,
    };
    let mut entry: Entry<u64> = Entry::new();
    let all = steps
        .into_iter()
        .chain(std::iter::repeat_n(Step::Send, last as usize))
        .chain(std::iter::repeat_n(
            Step::Deliver {
                pick: 0,
                again: false,
            },
            2 * last as usize,
        ))
        .chain([Step::Commit, Step::Settle, Step::Wait(KEEP.as_secs())]);
    for step in all {
        match step {
            Step::Send if w.sent < last => {
                w.sent += 1;
                if let Some(u) = w.update(w.sent) {
                    w.acked[w.sent as usize] = false;
                    w.in_flight.push(u);
                }
            }
            Step::Send => {}
            Step::Deliver { pick, again } if !w.in_flight.is_empty() => {
                let i = pick % w.in_flight.len();
                let u = if again {
                    w.in_flight[i].clone()
                } else {
                    w.in_flight.swap_remove(i)
                };
                w.acked[u.version as usize] = true;
                entry.absorb(u);
            }
            Step::Deliver { .. } => {}
            Step::Commit => {
                // A region acknowledges a version once it has taken in that version's own update;
                // holding a newer one is not enough (the newer update may have arrived first,
                // and the head would then show values this region never had).
                while w.committed < w.sent && w.acked[w.committed as usize + 1] {
                    w.stopped[w.committed as usize] = Some(w.now);
                    w.committed += 1;
                }
            }
            Step::Settle => entry.settle(w.committed, t0 + Duration::from_secs(w.now)),
            Step::Wait(s) => {
                w.now += s;
                if entry.expire(t0 + Duration::from_secs(w.now), KEEP) {
                    entry = Entry::new();
                }
                // A copy of an update still travelling arrives within a search's life of its
                // version's commit (its sender stops resending once acknowledged).
                let late = |u: &Update<u64>| {
                    w.stopped[u.version as usize - 1].is_some_and(|s| w.now >= s + KEEP.as_secs())
                };
                w.in_flight.retain(|u| !late(u));
            }
        }
        // A search that began while the head showed a version placing the object here finds
        // its values, as long as such a search may last.
        for v in 0..=w.committed {
            let shown = w.stopped[v as usize].is_none_or(|s| w.now < s + KEEP.as_secs());
            if w.here[v as usize] && shown {
                prop_assert!(
                    entry.candidate(|x| *x == v),
                    "version {v} shown until {:?}, now {}: {entry:?}",
                    w.stopped[v as usize],
                    w.now
                );
            }
        }
    }
    // Everything delivered, committed, settled and expired: only the last version is left.
    prop_assert_eq!(w.committed, last);
    if entry.expire(t0 + Duration::from_secs(w.now), KEEP) {
        entry = Entry::new();
    }
    prop_assert!(entry.formers.is_empty(), "{entry:?}");
    let here_last = w.here[last as usize];
    prop_assert_eq!(entry.current, here_last.then_some(last));
    // A key whose object left is forgotten.
    prop_assert_eq!(entry.version, if here_last { last } else { 0 });
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn a_shown_version_is_always_a_candidate(
        mut here in proptest::collection::vec(any::<bool>(), 2..12),
        steps in steps(),
    ) {
        here[0] = false;
        run(here, steps)?;
    }
}

#[test]
fn values_an_update_replaces_stay_until_settled_and_expired() {
    let t0 = crate::rt::now();
    let mut e = Entry::new();
    e.absorb(Update {
        version: 1,
        now: Some("a"),
    });
    // Version 2 moves the object away; version 1's values stay a candidate.
    e.absorb(Update {
        version: 2,
        now: None,
    });
    assert!(e.candidate(|v| *v == "a"));
    assert_eq!(e.unsettled(), Some(2));
    // The head has committed version 1 only: nothing settles.
    e.settle(1, t0);
    assert!(!e.expire(t0 + KEEP, KEEP));
    assert!(e.candidate(|v| *v == "a"));
    // It commits version 2; the values go a search's life later, and the entry with them.
    e.settle(2, t0);
    assert_eq!(e.unsettled(), None);
    assert!(!e.expire(t0 + KEEP / 2, KEEP));
    assert!(e.candidate(|v| *v == "a"));
    assert!(e.expire(t0 + KEEP, KEEP));
    assert!(!e.candidate(|_| true));
}

#[test]
fn an_older_update_arriving_late_keeps_its_values() {
    let mut e = Entry::new();
    // Version 3 (the object is back here) arrives before version 1 (the object first came
    // here), and version 2 (it left) has not yet: version 1's values may be what the head
    // shows.
    e.absorb(Update {
        version: 3,
        now: Some(3),
    });
    e.absorb(Update {
        version: 1,
        now: Some(1),
    });
    assert!(e.candidate(|v| *v == 1));
    assert!(e.candidate(|v| *v == 3));
    assert_eq!(e.formers.len(), 1);
    assert_eq!(e.formers[0].until, 2);
    // The same update again changes nothing.
    let before = e.clone();
    e.absorb(Update {
        version: 1,
        now: Some(1),
    });
    assert_eq!(e, before);
}

#[test]
fn a_version_given_again_to_another_write_replaces_the_dropped_one() {
    let t0 = crate::rt::now();
    let mut e = Entry::new();
    // Version 2 places the object here with "orphan", then its chain drops it uncommitted;
    // a later head gives version 2 to another write, whose values also place it here.
    e.absorb(Update {
        version: 2,
        now: Some("orphan"),
    });
    e.absorb(Update {
        version: 2,
        now: Some("kept"),
    });
    assert_eq!(e.current, Some("kept"));
    assert!(e.took(2, true));
    assert!(e.candidate(|v| *v == "kept"));
    // The dropped write's values are a candidate too many until the head commits version 3.
    assert!(e.candidate(|v| *v == "orphan"));
    e.settle(3, t0);
    assert!(!e.expire(t0 + KEEP, KEEP));
    assert!(!e.candidate(|v| *v == "orphan"));
    assert!(e.candidate(|v| *v == "kept"));
    // The same update again changes nothing.
    let before = e.clone();
    e.absorb(Update {
        version: 2,
        now: Some("kept"),
    });
    assert_eq!(e, before);
}

#[test]
fn a_version_given_again_below_a_dropped_newer_one_keeps_its_values() {
    let t0 = crate::rt::now();
    let mut e = Entry::new();
    // Versions 3 and 4 place the object here, then its chain drops both uncommitted; a later
    // head gives version 3 to another write, whose values also place it here, and commits it.
    for (version, values) in [(3, "dropped 3"), (4, "dropped 4")] {
        e.absorb(Update {
            version,
            now: Some(values),
        });
    }
    e.absorb(Update {
        version: 3,
        now: Some("shown"),
    });
    assert!(e.candidate(|v| *v == "shown"), "{e:?}");
    assert!(e.took(3, true));
    // The head has committed version 3 only: what replaced it is unknown, nothing goes.
    e.settle(3, t0);
    assert!(!e.expire(t0 + KEEP, KEEP));
    assert!(e.candidate(|v| *v == "shown"));
    // The same update again changes nothing.
    let before = e.clone();
    e.absorb(Update {
        version: 3,
        now: Some("shown"),
    });
    assert_eq!(e, before);
    // The head gives version 4 to a later write and commits it: the values it replaced go
    // (the shown ones and the dropped version 3's); the dropped version 4's stay until the
    // head commits version 5.
    e.absorb(Update {
        version: 4,
        now: Some("next"),
    });
    e.settle(4, t0);
    assert!(!e.expire(t0 + KEEP, KEEP));
    assert_eq!(e.current, Some("next"));
    let kept: Vec<_> = e.formers.iter().map(|f| (f.until, f.values)).collect();
    assert_eq!(kept, vec![(5, "dropped 4")]);
}
