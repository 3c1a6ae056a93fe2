//! Reads answered from a cache of stored objects, without the actor: the rule that says when
//! that is as safe as the actor's own answer (`Replica::on_op`).
//!
//! The actor publishes a [`View`] (its configuration and lease) after every batch, before it
//! delivers any output of the batch, and offers the head's answer to a read as a [`Cached`]
//! object when no write of that key is in flight there (so it cannot be a held write either:
//! see `held`). The daemon forgets a cached object the moment a write of its key is staged
//! (`daemon::read_cache`). So a cached object is, at any instant, the key's stored
//! (acknowledged) version at this head, and every state a client has been answered from was
//! published before it was answered: a read answered from the cache after a write's reply
//! sees that write.
//!
//! [`answer`] takes a read only when the actor would answer it the same way: the view holds a
//! lease on its configuration, the request carries that configuration, this server heads the
//! key's region, the object is cached under that configuration and the request is authorized
//! to read it. Anything else (a refusal, a miss, a write) is left to the actor, which gives
//! the exact answer and error.

use std::sync::Arc;
use std::time::Duration;

use hyperdex_model::db::step_key;

use super::{reply, Lease};
use crate::bugs::{planted, Bug};
use crate::config::{key_bytes, Config, ServerId};
use crate::daemon::authorize::authorized;
use crate::daemon::record::{decode_leading, object_key};
use crate::protocol::{ClientResponse, OpRequest};
use crate::rt::Instant;

/// What the fast path needs of the actor's state: who this server is, its configuration and
/// its lease.
#[derive(Clone, Debug)]
pub struct View {
    pub me: ServerId,
    pub config: Arc<Config>,
    pub lease: Option<Lease>,
    pub lease_length: Duration,
}

impl View {
    /// Whether this view says the same as `other` (what a reader would decide by).
    pub fn same(&self, other: &View) -> bool {
        self.me == other.me
            && self.config.version == other.config.version
            && self.lease == other.lease
            && self.lease_length == other.lease_length
    }
}

/// A stored object as a head read it, under configuration `config_version`: the leading
/// fields of its record (`record::load_without_records`), kept encoded so that what the cache
/// holds is what it counts.
#[derive(Debug, PartialEq)]
pub struct Cached {
    pub config_version: u64,
    pub leading: Vec<u8>,
}

/// The newest configuration and lease this server's coordinator link has received, which the
/// actor may not have taken yet.
#[derive(Clone, Copy, Debug)]
pub struct Newest {
    pub config_version: u64,
    pub lease: Option<Lease>,
}

/// Whether `lease` lets a server answer clients under configuration `version` at `now`.
pub fn lease_holds(lease: Option<Lease>, version: u64, length: Duration, now: Instant) -> bool {
    let length = if planted(Bug::LongLease) {
        length * 4
    } else {
        length
    };
    lease.is_some_and(|l| {
        l.config_version == version && now.saturating_duration_since(l.sent) < length
    })
}

/// The answer to `req` from `view` and the object `cached` holds under an object key, if the
/// actor would give the same one (see the module documentation); `None` leaves the request to
/// the actor. `unix`: now, in seconds since the Unix epoch (for macaroons' time caveats).
///
/// A configuration or lease of another version that the link has received and the actor not
/// yet taken stops the cache at once: the actor refuses every read it steps after taking it,
/// and the coordinator counts this server as having it from the link's next heartbeat on.
pub fn answer(
    (view, newest): (&View, Newest),
    req: &OpRequest,
    (now, unix): (Instant, u64),
    cached: impl FnOnce(&[u8]) -> Option<Arc<Cached>>,
) -> Option<ClientResponse> {
    if req.op.is_mutation() {
        return None;
    }
    let version = view.config.version;
    let leased = lease_holds(view.lease, version, view.lease_length, now)
        && newest.config_version == version
        && newest.lease.is_none_or(|l| l.config_version == version);
    if !(leased || planted(Bug::CachedReadWithoutLease)) || req.config_version != version {
        return None;
    }
    let space = view.config.space(req.op.space()?)?;
    let kb = key_bytes(&space.schema, req.op.key()?)?;
    let region = space.region_of_bytes(&kb);
    if view.config.chain(region).first() != Some(&view.me) {
        return None;
    }
    let entry = cached(&object_key(region, &kb))?;
    if entry.config_version != version {
        return None;
    }
    let object = decode_leading(&entry.leading)?;
    if !authorized(&space.schema, object.as_ref(), &req.op, &req.auth, unix) {
        return None;
    }
    crate::probe!("head.read_from_cache");
    Some(reply(step_key(&space.schema, object.as_ref(), &req.op).0))
}

#[cfg(test)]
mod tests {
    use hyperdex_model::{Operation, Value};

    use super::*;
    use crate::daemon::replica::{Input, Output};
    use crate::daemon::testnet::{head_of, op, Net};

    /// Steps server `to` through `input` and syncs, returning its outputs whole.
    fn step(net: &mut Net, to: ServerId, input: Input<u32>) -> Vec<Output<u32>> {
        let now = net.now;
        let (r, store) = net.replicas.get_mut(&to).expect("a server");
        let outs = r.step(store, now, input).expect("step");
        crate::storage::Store::sync(store).expect("sync");
        outs
    }

    fn request(input: Input<u32>) -> OpRequest {
        match input {
            Input::Op { req, .. } => req,
            _ => unreachable!("an operation"),
        }
    }

    #[test]
    fn a_cached_read_is_answered_as_the_head_answers_it_and_only_then() {
        let space = "space s key k attributes int n create 1 partition tolerate 1 failure";
        let (mut net, config) = Net::new(2, space);
        let (head, _) = head_of(&config, "a");
        let other = *net.replicas.keys().find(|s| **s != head).expect("two");
        let put = |n| Operation::put("s", "a", vec![("n", Value::Int(n))]);
        net.input(head, op(&config, 1, 1, put(5)));
        net.deliver_all();
        let get = || op(&config, 2, 2, Operation::get("s", "a"));
        let outs = step(&mut net, head, get());
        let [Output::Read(_, actor, key, Some(c))] = &outs[..] else {
            panic!("a read with its object: {outs:?}");
        };
        let view = net.replicas[&head].0.view();
        let newest = Newest {
            config_version: config.version,
            lease: view.lease,
        };
        let req = request(get());
        let now = (net.now, 0);
        let lookup = |k: &[u8]| (k == key.as_slice()).then(|| c.clone());
        assert_eq!(
            answer((&view, newest), &req, now, lookup),
            Some(actor.clone())
        );

        // Anything the actor would refuse, or could answer otherwise, is left to it.
        assert_eq!(
            answer((&view, newest), &req, now, |_| None),
            None,
            "not cached"
        );
        let stale = OpRequest {
            config_version: config.version - 1,
            ..req.clone()
        };
        assert_eq!(
            answer((&view, newest), &stale, now, lookup),
            None,
            "older configuration"
        );
        let late = (net.now + view.lease_length, 0);
        assert_eq!(
            answer((&view, newest), &req, late, lookup),
            None,
            "the lease ran out"
        );
        let unleased = View {
            lease: None,
            ..view.clone()
        };
        assert_eq!(
            answer((&unleased, newest), &req, now, lookup),
            None,
            "no lease"
        );
        let elsewhere = View {
            me: other,
            ..view.clone()
        };
        assert_eq!(
            answer((&elsewhere, newest), &req, now, lookup),
            None,
            "not the head"
        );
        let ahead = Newest {
            config_version: config.version + 1,
            ..newest
        };
        assert_eq!(
            answer((&view, ahead), &req, now, lookup),
            None,
            "a newer one"
        );
        let lease_ahead = Newest {
            lease: view.lease.map(|l| Lease {
                config_version: config.version + 1,
                ..l
            }),
            ..newest
        };
        let refused = answer((&view, lease_ahead), &req, now, lookup);
        assert_eq!(refused, None, "a lease on a newer one");
        let older = Arc::new(Cached {
            config_version: config.version - 1,
            leading: c.leading.clone(),
        });
        let old_entry = |_: &[u8]| Some(older.clone());
        assert_eq!(
            answer((&view, newest), &req, now, old_entry),
            None,
            "cached earlier"
        );
        let write = request(op(&config, 3, 3, put(6)));
        assert_eq!(
            answer((&view, newest), &write, now, lookup),
            None,
            "a write"
        );
    }

    #[test]
    fn a_read_is_not_offered_to_the_cache_while_a_write_of_its_key_is_in_flight() {
        let space = "space s key k attributes int n create 1 partition tolerate 1 failure";
        let (mut net, config) = Net::new(2, space);
        let (head, _) = head_of(&config, "a");
        let put = |n| Operation::put("s", "a", vec![("n", Value::Int(n))]);
        let get = || op(&config, 2, 2, Operation::get("s", "a"));
        let outs = step(&mut net, head, get());
        assert!(matches!(&outs[..], [Output::Read(_, _, _, Some(_))]));
        net.input(head, op(&config, 4, 4, put(7)));
        let outs = step(&mut net, head, get());
        assert!(
            matches!(&outs[..], [Output::Read(_, _, _, None)]),
            "{outs:?}"
        );
        net.deliver_all();
        let outs = step(&mut net, head, get());
        assert!(matches!(&outs[..], [Output::Read(_, _, _, Some(_))]));
    }
}
