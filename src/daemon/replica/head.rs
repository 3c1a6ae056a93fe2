//! The head of a region's chain: locates a client's key, answers reads, and orders writes
//! (see the `replica` module docs).

use std::sync::Arc;

use hyperdex_model::db::step_key;
use hyperdex_model::{Object, Operation, Reply, ReturnCode};

use super::cached::Cached;
use super::subspace::{send_updates, Old};
use super::{
    carries, reconfigure, reply, Backoff, Output, Outputs, Pending, PendingWrites, Replica,
};
use crate::bugs::{planted, Bug};
use crate::config::{key_bytes, Config, RegionId, SpaceConfig};
use crate::daemon::authorize::authorized;
use crate::daemon::record::{load_without_records, object_key, StoredObject};
use crate::daemon::retry_records::Writing;
use crate::limits::{CLOCK_SKEW_SECS, HELD_READERS, RETRY_WINDOW_SECS};
use crate::protocol::{ChainMessage, ChainWrite, ClientResponse, Dedupe, OpRequest};
use crate::rt::Instant;
use crate::storage::{Store, StoreError};

impl<W: Clone> Replica<W> {
    /// The space, region and key bytes of a single-key operation this server heads.
    fn locate(&self, op: &Operation) -> Result<(Arc<Config>, RegionId, Vec<u8>), ClientResponse> {
        let config = self.config.clone();
        let (Some(space_name), Some(key)) = (op.space(), op.key()) else {
            return Err(reply(Reply::Error(
                ReturnCode::Internal,
                "only single-key operations are sent to a daemon".into(),
            )));
        };
        let Some(space) = config.space(space_name) else {
            return Err(reply(Reply::Error(
                ReturnCode::UnknownSpace,
                format!("unknown space \"{space_name}\""),
            )));
        };
        let Some(kb) = key_bytes(&space.schema, key) else {
            return Err(reply(Reply::Error(
                ReturnCode::WrongType,
                format!(
                    "key: expected {}, found {}",
                    space.schema.key.datatype,
                    key.kind()
                ),
            )));
        };
        let region = space.region_of_bytes(&kb);
        if config.chain(region).first() != Some(&self.me) {
            return Err(reconfigure(format!(
                "server {} is not the head of region {region}",
                self.me
            )));
        }
        Ok((config, region, kb))
    }

    pub(super) fn on_op(
        &mut self,
        store: &mut dyn Store,
        (now, unix): (Instant, u64),
        waiter: W,
        req: OpRequest,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        let located = self
            .admit(now, req.config_version, out)
            .and_then(|()| self.locate(&req.op));
        let (config, region, kb) = match located {
            Ok(l) => l,
            Err(refusal) => {
                out.push(Output::Reply(waiter, refusal));
                return Ok(());
            }
        };
        let Some(space) = config.space(req.op.space().unwrap_or_default()) else {
            return Ok(());
        };
        if !req.op.is_mutation() {
            let (stored, leading) = load_without_records(store, region, &kb)?;
            if planted(Bug::StallReads) && self.promoted.contains(&region) {
                return Ok(());
            }
            let pending = self.pending.get(&(region, kb.clone()));
            // With no write of the key in flight here, what was read is its stored version
            // until the next write of it is staged (see `cached`).
            let cacheable = pending.is_none();
            let answer = if authorized(
                &space.schema,
                stored.object.as_ref(),
                &req.op,
                &req.auth,
                unix,
            ) {
                read(space, &stored, pending, &req.op)
            } else {
                unauthorized()
            };
            if let Some(first) = self.held_shown(region, &kb, stored.version) {
                // Answered once the held write is done (then every region holds it).
                crate::probe!("head.read_waits_for_held");
                if first.deferred.len() < HELD_READERS {
                    first.deferred.push((waiter, answer));
                } else {
                    let why = "the key's last write is not yet in every subspace region";
                    out.push(Output::Reply(waiter, reconfigure(why.into())));
                }
                return Ok(());
            }
            let cache = cacheable.then(|| {
                Arc::new(Cached {
                    config_version: config.version,
                    leading,
                })
            });
            let key = object_key(region, &kb);
            out.push(Output::Read(waiter, reply(answer), key, cache));
            return Ok(());
        }
        let mut stored = Writing::load(store, region, &kb)?;
        stored.read_client(store, req.client)?;
        let ordered = Ordered {
            space,
            region,
            key: kb,
            stored,
        };
        self.order_write(store, (waiter, unix), &req, ordered, out)
    }

    /// The head orders a write: joins a retry to its pending copy, answers it from its
    /// record, or computes the new object and sends it down the chain.
    fn order_write(
        &mut self,
        store: &mut dyn Store,
        (waiter, unix): (W, u64),
        req: &OpRequest,
        o: Ordered<'_>,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        let slot = (o.region, o.key.clone());
        if let Some(p) = self
            .pending
            .get_mut(&slot)
            .and_then(|pend| pend.values_mut().find(|p| carries(p, req.client, req.seq)))
        {
            // A retry of a write still in flight joins it.
            p.waiters.push(waiter);
            return Ok(());
        }
        if let Some(d) = o.stored.find(req.client, req.seq) {
            tracing::debug!(server = self.me.0, region = %o.region, client = req.client, seq = req.seq, "retry answered from the record");
            crate::probe!("head.retry_answered_from_record");
            out.push(Output::Reply(waiter, reply(d.reply.clone())));
            return Ok(());
        }
        if self.config.read_only {
            // After the retry checks: a write done before the mode was switched on is
            // answered as it was.
            out.push(Output::Reply(waiter, reply(read_only())));
            return Ok(());
        }
        if let Some(refusal) = expired(req, unix) {
            out.push(Output::Reply(waiter, reply(refusal)));
            return Ok(());
        }
        let latest_pending = self
            .pending
            .get_mut(&slot)
            .and_then(|p| p.values_mut().next_back());
        let (latest_version, latest) = match &latest_pending {
            Some(p) => (p.write.version, p.write.object.as_ref()),
            None => (o.stored.version, o.stored.object.as_ref()),
        };
        let (answer, change) = if authorized(&o.space.schema, latest, &req.op, &req.auth, unix) {
            step_key(&o.space.schema, latest, &req.op)
        } else {
            (unauthorized(), None)
        };
        // What the write replaces, for the other subspaces' regions when this head is alone.
        let alone = self.config.chain(o.region).len() == 1;
        let old = match alone && !o.space.schema.subspaces.is_empty() {
            true => latest.cloned(),
            false => None,
        };
        let Some(new) = change else {
            tracing::debug!(
                server = self.me.0, region = %o.region, key = %String::from_utf8_lossy(&o.key),
                client = req.client, seq = req.seq, reply = ?answer, stored = o.stored.version,
                "write changes nothing"
            );
            match latest_pending {
                Some(p) => p.deferred.push((waiter, answer)),
                None => out.push(Output::Reply(waiter, reply(answer))),
            }
            return Ok(());
        };
        let write = ChainWrite {
            config_version: self.config.version,
            region: o.region,
            key: o.key,
            version: latest_version + 1,
            object: new,
            dedupe: Some(Dedupe {
                client: req.client,
                seq: req.seq,
                low_seq: req.low_seq,
                reply: answer.clone(),
                // Never before the object's newest record (pending ones included): a head
                // whose clock is behind must not make its own record look expired at once.
                unix: latest_time(&o.stored, self.pending.get(&slot)).map_or(unix, |t| t.max(unix)),
            }),
        };
        tracing::debug!(
            server = self.me.0, region = %o.region, key = %String::from_utf8_lossy(&write.key),
            version = write.version, client = req.client, seq = req.seq, reply = ?answer,
            config = self.config.version, "head orders a write"
        );
        self.send_write(store, write, o.stored, old, (waiter, answer), out)
    }

    /// Sends a write the head has ordered down the chain (and, alone in it, to the other
    /// subspaces' regions), or stores and answers it at once.
    fn send_write(
        &mut self,
        store: &mut dyn Store,
        write: ChainWrite,
        mut stored: Writing,
        old: Option<Object>,
        (waiter, answer): (W, Reply),
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        let slot = (write.region, write.key.clone());
        let chain = self.config.chain(write.region);
        let next = chain.get(1).copied();
        // Head and tail at once, in a space with subspaces: answered once the other
        // subspaces' regions hold the write (`subspace`).
        let updates = match next {
            Some(_) => None,
            None => Some(self.updates_of(&write, Old::Known(old.as_ref()))),
        };
        if next.is_none() && updates.as_ref().is_some_and(Vec::is_empty) {
            // Head and tail at once: durable after this batch's sync, then answered.
            stored.absorb(store, &write)?;
            stored.stage(store)?;
            out.push(Output::Reply(waiter, reply(answer)));
            return Ok(());
        }
        super::durable::keep(store, &write);
        if let Some(next) = next {
            out.push(Output::Send(next, ChainMessage::Write(write.clone())));
        }
        send_updates(&self.config, updates.iter().flatten(), out);
        let waiters = if planted(Bug::EarlyReply) {
            out.push(Output::Reply(waiter, reply(answer)));
            Vec::new()
        } else {
            vec![waiter]
        };
        let pending = Pending {
            write,
            waiters,
            deferred: Vec::new(),
            awaiting: updates,
            backoff: Backoff::default(),
        };
        self.pending
            .entry(slot)
            .or_default()
            .insert(pending.write.version, pending);
        Ok(())
    }
}

/// A write the head is ordering: where its object lives and what is stored.
struct Ordered<'a> {
    space: &'a SpaceConfig,
    region: RegionId,
    key: Vec<u8>,
    /// The stored object, with the records of the requesting client read.
    stored: Writing,
}

/// The answer to a read at the head: the latest acknowledged (stored) version, never a
/// pending one (unless the planted bug says otherwise).
fn read<W>(
    space: &SpaceConfig,
    stored: &StoredObject,
    pending: Option<&PendingWrites<W>>,
    op: &Operation,
) -> Reply {
    let pending_latest = pending
        .and_then(|p| p.values().next_back())
        .map(|p| p.write.object.as_ref());
    let current = match pending_latest {
        Some(latest) if planted(Bug::ReadPending) => latest,
        Some(_) => {
            crate::probe!("head.read_past_pending");
            stored.object.as_ref()
        }
        None => stored.object.as_ref(),
    };
    step_key(&space.schema, current, op).0
}

fn read_only() -> Reply {
    Reply::Error(
        ReturnCode::ReadOnly,
        "the cluster is in read-only mode (hyperdex set-read-write ends it)".into(),
    )
}

fn unauthorized() -> Reply {
    Reply::Error(
        ReturnCode::Unauthorized,
        "the server denied the request because it is unauthorized".into(),
    )
}

/// The newest time among an object's records, stored and pending.
fn latest_time<W>(stored: &Writing, pending: Option<&PendingWrites<W>>) -> Option<u64> {
    let stored = stored.newest().into_iter();
    let pending = pending
        .into_iter()
        .flat_map(|p| p.values())
        .filter_map(|p| p.write.dedupe.as_ref().map(|d| d.unix));
    stored
        .chain(pending)
        .filter(|t| *t != crate::daemon::record::UNKNOWN_TIME)
        .max()
}

/// The refusal of a write first sent longer ago than a write may be retried (and of which the
/// head has no record): its record, if it was ever applied, may be gone, so applying it now
/// could apply it twice. Its outcome stays unknown to its client (TIMEOUT).
fn expired(req: &OpRequest, unix: u64) -> Option<Reply> {
    if req.first_unix > unix + CLOCK_SKEW_SECS {
        return Some(Reply::Error(
            ReturnCode::ServerError,
            format!(
                "the request says it was first sent {} s from now: the client's clock is ahead \
                 of the server's by more than {CLOCK_SKEW_SECS} s",
                req.first_unix - unix
            ),
        ));
    }
    let age = unix.saturating_sub(req.first_unix);
    if age <= RETRY_WINDOW_SECS + CLOCK_SKEW_SECS {
        return None;
    }
    crate::probe!("head.expired_request_refused");
    Some(Reply::Error(
        ReturnCode::Timeout,
        format!(
            "the request was first sent {age} s ago, more than a write may be retried \
             ({RETRY_WINDOW_SECS} s)"
        ),
    ))
}
