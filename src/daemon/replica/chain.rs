//! Chain messages between members: a write travelling down, its acknowledgement travelling
//! up, and the commit of acknowledged writes (see the `replica` module docs).

use std::collections::btree_map::Entry;

use hyperdex_model::Reply;

use super::durable::{self, pending_key};
use super::held;
use super::subspace::Old;
use super::{push_effects, reply, vouched, Output, Outputs, Pending, Replica};
use crate::bugs::{planted, Bug};
use crate::config::{RegionId, ServerId};
use crate::daemon::record::stored_version;
use crate::daemon::retry_records::Writing;
use crate::limits::{EARLY_MESSAGES, EARLY_WINDOWS};
use crate::protocol::{ChainAck, ChainMessage, ChainWrite};
use crate::storage::{Store, StoreError};

impl<W: Clone> Replica<W> {
    /// A chain message, if it belongs to our configuration. Messages from a newer one are
    /// kept until we have it (and we ask for it); older ones are dropped, since their sender
    /// resends everything pending when it installs the configuration we have.
    pub(super) fn on_chain(
        &mut self,
        store: &mut dyn Store,
        from: ServerId,
        msg: ChainMessage,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        let version = msg.config_version();
        if version > self.config.version {
            // Only a few transfer windows are kept: they are large, and sent again anyway.
            // Windows and acknowledgements (which list what the joiner holds) can be large.
            let large = |m: &ChainMessage| {
                matches!(
                    m,
                    ChainMessage::TransferData(_) | ChainMessage::TransferAck(_)
                )
            };
            let window = large(&msg);
            let windows = || self.early.iter().filter(|(_, m)| large(m)).count();
            if self.early.len() < EARLY_MESSAGES && (!window || windows() < EARLY_WINDOWS) {
                crate::probe!("chain.early_message_held");
                self.early.push((from, msg));
            }
            out.push(Output::FetchConfig);
            return Ok(());
        }
        if version < self.config.version {
            crate::probe!("chain.stale_version_dropped");
            return Ok(());
        }
        if !self.sent_by(&msg, from) && !planted(Bug::TrustAnyPeer) {
            crate::probe!("chain.forged_sender_dropped");
            tracing::warn!(
                server = self.me.0, from = from.0, region = %msg.region(),
                "a {} from a server that is not its sender in this configuration: dropped",
                msg.name()
            );
            return Ok(());
        }
        match msg {
            ChainMessage::Write(w) => self.on_chain_write(store, w, out),
            ChainMessage::Ack(a) => self.on_chain_ack(store, a, out),
            ChainMessage::TransferData(mut t) => {
                let held = std::mem::take(&mut t.held);
                let effects = self.transfers.on_data(store, &self.config, t)?;
                push_effects(effects, out);
                self.take_held(store, held, out)
            }
            ChainMessage::TransferAck(a) => {
                let effects = self.transfers.on_ack(store, &self.config, a)?;
                push_effects(effects, out);
                Ok(())
            }
            ChainMessage::TransferQuery(q) => {
                let effects = self.transfers.on_query(store, &self.config, q.region)?;
                push_effects(effects, out);
                Ok(())
            }
            ChainMessage::Update(u) => self.on_update(store, u, out),
            ChainMessage::Updated(a) => self.on_updated(store, a, out),
            ChainMessage::UpdateDone(a) => self.on_update_done(store, a, out),
            ChainMessage::SettleQuery(q) => self.on_settle_query(store, from, q, out),
            ChainMessage::SettleAnswer(a) => {
                self.on_settle_answer(self.now, a);
                Ok(())
            }
        }
    }

    /// Whether `from` may send `msg` here.
    fn sent_by(&self, msg: &ChainMessage, from: ServerId) -> bool {
        match msg {
            ChainMessage::SettleQuery(_) | ChainMessage::SettleAnswer(_) => {
                self.settle_sent_by(msg, from)
            }
            _ => self.sender_of(msg) == Some(from),
        }
    }

    /// The only server that may send `msg` here: writes and transfer windows come from the
    /// predecessor in the region's chain, acknowledgements from the successor.
    fn sender_of(&self, msg: &ChainMessage) -> Option<ServerId> {
        if matches!(
            msg,
            ChainMessage::Update(_) | ChainMessage::Updated(_) | ChainMessage::UpdateDone(_)
        ) {
            return self.subspace_sender(msg);
        }
        let (pos, chain) = self.position(msg.region())?;
        match msg {
            ChainMessage::Write(_)
            | ChainMessage::TransferData(_)
            | ChainMessage::TransferQuery(_) => pos.checked_sub(1).map(|p| chain[p]),
            ChainMessage::Ack(_) | ChainMessage::TransferAck(_) => chain.get(pos + 1).copied(),
            ChainMessage::Update(_)
            | ChainMessage::Updated(_)
            | ChainMessage::UpdateDone(_)
            | ChainMessage::SettleQuery(_)
            | ChainMessage::SettleAnswer(_) => unreachable!("answered above"),
        }
    }

    fn on_chain_write(
        &mut self,
        store: &mut dyn Store,
        w: ChainWrite,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        let Some((pos, chain)) = self.position(w.region) else {
            return Ok(());
        };
        if pos == 0 {
            return Ok(());
        }
        let pred = chain[pos - 1];
        let succ = chain.get(pos + 1).copied();
        // A joiner's copy of a key the transfer has not reached may be from an earlier life
        // (missing writes, or holding one never committed): the key counts as new.
        let unverified =
            succ.is_none() && self.transfers.unverified(&self.config, w.region, &w.key);
        let mut stored = if unverified {
            Writing::fresh(w.region, &w.key)
        } else {
            Writing::load(store, w.region, &w.key)?
        };
        tracing::debug!(
            server = self.me.0, region = %w.region, key = %String::from_utf8_lossy(&w.key),
            version = w.version, stored = stored.version, pos, tail = succ.is_none(), dedupe = ?w.dedupe.as_ref().map(|d| (d.client, d.seq)),
            "chain write"
        );
        if w.version <= stored.version {
            // Already held (a retransmission or a late write): keep its dedupe record so a
            // retry is answered, and acknowledge what is stored.
            if let Some(d) = &w.dedupe {
                if stored.add_record(store, d)? {
                    stored.stage(store)?;
                }
            }
            if succ.is_none() && w.version == stored.version && self.recheck(store, &w, out) {
                return Ok(());
            }
            // Not past a version this member still holds (stored by a promotion or a
            // transfer, not yet in every subspace region, or, once the member has a successor,
            // not yet acknowledged by it): acknowledging it would let the head answer the
            // write, and a retry of it, too soon. The held write's own acknowledgement covers
            // this one.
            let pend = self.pending.get(&(w.region, w.key.clone()));
            if pend.is_some_and(|pend| held::holds_stored(pend, stored.version)) {
                crate::probe!("chain.ack_below_held");
                return Ok(());
            }
            let ack = self.ack(&w.key, w.region, stored.version);
            out.push(Output::Send(pred, ChainMessage::Ack(ack)));
            return Ok(());
        }
        // Only the next version is taken: one that skips a lost write would be stored (it
        // holds that write's effect) without that write's retry record, and a retry of it
        // would be applied again here once this server is head. The predecessor resends
        // every pending write, in order, on a later tick. A joiner too: for a key the
        // transfer has not verified yet it takes only a first version, and waits for the
        // transfer (whose copy is committed, so older than any write it dropped) otherwise.
        let held = self
            .pending
            .get(&(w.region, w.key.clone()))
            .and_then(|p| p.keys().next_back().copied())
            .unwrap_or(0)
            .max(stored.version);
        if w.version > held + 1 && !planted(Bug::AcceptGap) {
            crate::probe!("chain.gap_dropped");
            tracing::debug!(
                server = self.me.0, region = %w.region, version = w.version, held,
                "a write beyond the next version: dropped until the ones before it arrive"
            );
            return Ok(());
        }
        match succ {
            None => {
                if unverified && !self.transfers.written_live(w.region, &w.key) {
                    return Ok(());
                }
                if unverified {
                    tracing::debug!(server = self.me.0, region = %w.region, key = %String::from_utf8_lossy(&w.key), version = w.version, "joiner: write to an unverified key");
                    // From now on the transfer keeps what this server stores for the key
                    // (`written_live`), so the copy from an earlier life goes now: a write held
                    // for the other subspaces commits over what is stored then, and must not
                    // find a version it never followed (one the chain gave to another write).
                    if !planted(Bug::HeldOverStaleCopy) {
                        stored.stage(store)?;
                    }
                }
                let pend = self.pending.get(&(w.region, w.key.clone()));
                if pend.is_some_and(|p| p.contains_key(&w.version)) {
                    // Held pending for the other subspaces' regions (a retransmission): it
                    // commits when they hold it, not now.
                    return Ok(());
                }
                let last = pend.and_then(|p| p.values().next_back());
                let old = match last {
                    Some(p) => Old::Known(p.write.object.as_ref()),
                    // An unverified key's stored object may be stale or missing: the write
                    // tells every other region of each subspace that the object is not there.
                    None if unverified => Old::Unknown,
                    None => Old::Known(stored.object.as_ref()),
                };
                let updates = self.updates_of(&w, old);
                if !updates.is_empty() {
                    // Committed once the other subspaces' regions hold it (`subspace`).
                    self.hold(store, w, updates, out);
                    return Ok(());
                }
                let ack = self.ack(&w.key, w.region, w.version);
                stored.absorb_taking(store, w)?;
                stored.stage_last(store)?;
                out.push(Output::Send(pred, ChainMessage::Ack(ack)));
            }
            Some(succ) => {
                let pend = self.pending.entry((w.region, w.key.clone())).or_default();
                if let Entry::Vacant(slot) = pend.entry(w.version) {
                    durable::keep(store, &w);
                    out.push(Output::Send(succ, ChainMessage::Write(w.clone())));
                    slot.insert(Pending::unwaited(w, None));
                }
            }
        }
        Ok(())
    }

    pub(super) fn ack(&self, key: &[u8], region: RegionId, version: u64) -> ChainAck {
        ChainAck {
            config_version: self.config.version,
            region,
            key: key.to_vec(),
            version,
        }
    }

    pub(super) fn on_chain_ack(
        &mut self,
        store: &mut dyn Store,
        a: ChainAck,
        out: &mut Outputs<W>,
    ) -> Result<(), StoreError> {
        let Some((pos, chain)) = self.position(a.region) else {
            return Ok(());
        };
        let pred = pos.checked_sub(1).map(|p| chain[p]);
        let (kept, stored) = self.commit_through(store, a.region, &a.key, a.version, out)?;
        // Pass the ack on only if this server really holds the version durably: after a
        // restart it may have lost a write that its successor acknowledges, and the
        // predecessor's retransmission will bring it here again.
        let stored = match stored {
            Some(v) => v,
            None => stored_version(store, a.region, &a.key)?,
        };
        if stored < a.version {
            return Ok(());
        }
        if let Some(pred) = pred {
            // Vouched for by the records of the versions committed now: what they build on
            // is durable once they are (see `durable`'s docs on the gap rule).
            let ack = self.ack(&a.key, a.region, a.version);
            out.push(vouched(Output::Send(pred, ChainMessage::Ack(ack)), kept));
        }
        Ok(())
    }

    /// Stores pending writes of `key` up to `version` and answers their clients (at the head).
    /// Returns the pending records of the writes committed: what they are durable by (the
    /// replies wait for those records only; see `durable`); and the version stored after
    /// them, when there were any (`None`: nothing was committed, nothing read).
    pub(super) fn commit_through(
        &mut self,
        store: &mut dyn Store,
        region: RegionId,
        key: &[u8],
        version: u64,
        out: &mut Outputs<W>,
    ) -> Result<(Vec<Vec<u8>>, Option<u64>), StoreError> {
        let slot = (region, key.to_vec());
        let Some(pend) = self.pending.get_mut(&slot) else {
            return Ok((Vec::new(), None));
        };
        let rest = pend.split_off(&(version + 1));
        let done = std::mem::replace(pend, rest);
        if pend.is_empty() {
            self.pending.remove(&slot);
        }
        if done.is_empty() {
            return Ok((Vec::new(), None));
        }
        let kept: Vec<Vec<u8>> = done.keys().map(|&v| pending_key(region, key, v)).collect();
        for k in &kept {
            self.forget.later(k.clone());
        }
        let mut stored = Writing::load(store, region, key)?;
        let mut answered = Vec::with_capacity(done.len());
        for p in done.into_values() {
            let answer = p
                .write
                .dedupe
                .as_ref()
                .map(|d| d.reply.clone())
                .unwrap_or(Reply::Success);
            if p.write.version > stored.version && planted(Bug::LostRecord) {
                // The write's value without its record.
                stored.version = p.write.version;
                stored.object = p.write.object;
            } else if p.write.version > stored.version {
                stored.absorb_taking(store, p.write)?;
            } else if let Some(d) = &p.write.dedupe {
                stored.add_record(store, d)?;
            }
            answered.push((answer, p.waiters, p.deferred));
        }
        let version = stored.version;
        stored.stage_last(store)?;
        for (answer, waiters, deferred) in answered {
            for w in waiters {
                let o = Output::Reply(w, reply(answer.clone()));
                out.push(vouched(o, kept.clone()));
            }
            for (w, r) in deferred {
                out.push(vouched(Output::Reply(w, reply(r)), kept.clone()));
            }
        }
        Ok((kept, Some(version)))
    }
}
