//! The write path. Every write goes through [`Service::commit`]: under the document's database
//! lock it brings the cached replica up to date with the log tail and the waiting ops, applies
//! the work, and writes the new ops, the waiting-buffer changes, the broadcast and the request's
//! idempotency key in one transaction. The broadcast is published after commit; if publishing
//! fails the outbox row stays for the sweep.
//!
//! Invariant: the cached replica of a document (`Cached`) holds what the log holds up to
//! `next_pos`, plus the stored waiting ops, plus possibly this container's own committed ops
//! past `next_pos` (written after other writers' rows it has not read yet; the next tail brings
//! those and repeats its own, which apply as duplicates). It never holds an uncommitted op:
//! whatever may leave one (an error after the work changed the replica, a failed write) drops
//! the cache, and the next use reloads it.
//!
//! A client's edit is planned on the state as of its request's start, and written after
//! whatever was committed since, without a lock held across round trips. The session check
//! reads the document's log length: equal to the cached position, the cache is current; if not,
//! the tail is read (one round trip more, once), and while other containers are seen writing
//! the document its edits read the tail in the session check's round trip. So on a document
//! many containers write at once an edit still costs two round trips and never reloads the
//! document, and on one only this container writes it costs two statements. Index edits without a
//! `base` therefore refer to the text as of the request's start, which includes every write
//! acknowledged before it; writes committed during the request are concurrent with it and merge
//! as the CRDT merges them.

use std::collections::{HashMap, HashSet};

use rga::{CharId, Op, Rga};
use serde_json::Value;

use super::Service;
use super::edits::RequestKey;
use super::size::{MAX_ANSWER_BYTES, ops_bound, session_answer_fits};
use crate::cache::Cached;
use crate::error::AppError;
use crate::ids::{DocumentId, UserId};
use crate::model::Document;
use crate::ports::{DocumentStore, EventPublisher};
use crate::ports::{KeyRecord, Plan, Tail};
use crate::wire::{Broadcast, Envelope};

/// What to broadcast after a write.
pub(super) enum Announce {
    /// Nothing (ops that came from other replicas).
    Nothing,
    /// These ops.
    Ops,
}

impl<S: DocumentStore, P: EventPublisher> Service<S, P> {
    /// Loads the document into `slot` or refreshes it from the tail.
    pub(super) async fn refresh(
        &self,
        id: DocumentId,
        slot: &mut Option<Cached>,
    ) -> Result<(), AppError> {
        match slot {
            None => {
                let loaded = self
                    .store
                    .load(id)
                    .await?
                    .ok_or_else(|| AppError::not_found(format!("document {id}")))?;
                let mut rga = match &loaded.snapshot {
                    Some(bytes) => Rga::decode(bytes)
                        .map_err(|e| AppError::Internal(format!("snapshot of {id}: {e}")))?,
                    None => Rga::with_session(self.settings.ssn),
                };
                rga.set_session(self.settings.ssn);
                rga.set_limits(self.settings.limits.crdt);
                let encoded = loaded.snapshot.as_ref().map_or(16, Vec::len)
                    + ops_bound(&loaded.tail)
                    + ops_bound(&loaded.waiting);
                for op in loaded.tail {
                    rga.apply(op).map_err(|e| {
                        AppError::Internal(format!("stored op of {id} refused: {e}"))
                    })?;
                }
                for op in loaded.waiting {
                    let _ = rga.apply(op);
                }
                *slot = Some(Cached {
                    rga,
                    next_pos: loaded.next_pos,
                    snapshot_pos: loaded.snapshot_pos,
                    encoded,
                    contended_until: None,
                });
            }
            Some(c) => {
                let tail = self.store.tail(id, c.next_pos).await?;
                if let Err(e) = apply_tail(id, c, tail) {
                    *slot = None;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Runs `f` on the up-to-date cached replica.
    pub(super) async fn read<T>(
        &self,
        id: DocumentId,
        f: impl FnOnce(&Rga) -> T,
    ) -> Result<T, AppError> {
        let slot = self.cache.slot(id);
        let mut guard = slot.lock().await;
        if let Err(e) = self.refresh(id, &mut guard).await {
            *guard = None;
            return Err(e);
        }
        match guard.as_ref() {
            Some(c) => Ok(f(&c.rga)),
            None => Err(AppError::Internal("cache slot empty after refresh".into())),
        }
    }

    /// The write path; see the module docs. `work` returns its result and the ops to announce;
    /// it may run twice (once more if another container wrote the document meanwhile, or to
    /// decide a refusal again on the latest state).
    ///
    /// First optimistically ([`Service::write_optimistic`]): the cached replica is taken as
    /// current, `work` runs on it, and one statement writes the plan only if the document's log
    /// has not grown since (one round trip). Otherwise the locked path
    /// ([`Service::write_locked`]): lock the row, read the tail, apply it, run `work` again,
    /// write. This function is the one place that drops the cache, when a path says the
    /// replica may no longer match the log.
    pub(super) async fn commit<T, W>(
        &self,
        doc: &Document,
        announce: Announce,
        key: Option<Keyed<'_, T>>,
        mut work: W,
    ) -> Result<(T, Option<i64>), AppError>
    where
        T: Send,
        W: FnMut(&mut Rga) -> Result<(T, Vec<Op>), AppError> + Send,
    {
        let slot = self.cache.slot(doc.id);
        let mut guard = slot.lock().await;
        crate::metrics::count(
            if guard.is_none() {
                "CacheMisses"
            } else {
                "CacheHits"
            },
            1,
        );
        let written = match self
            .write_optimistic(&mut guard, doc, &announce, key, &mut work)
            .await
        {
            Ok(Some(written)) => Ok(written),
            Ok(None) => {
                self.write_locked(&mut guard, doc, &announce, key, &mut work)
                    .await
            }
            Err(failed) => Err(failed),
        };
        let written = match written {
            Ok(w) => w,
            Err(Failed { error, keep }) => {
                if !keep {
                    *guard = None;
                }
                return Err(error);
            }
        };
        drop(guard);
        self.forget_sent(&written.sent_outbox);
        let outbox = self.after_commit(doc, written.outbox, written.ops).await;
        Ok((written.value, outbox))
    }

    /// The optimistic path: `work` on the cached replica (loaded first if absent), written in
    /// one statement if the log has not moved. `None`: go on under the lock, with the cache
    /// cleared when this attempt changed it (the log moved, or a refusal that changed the
    /// replica) and kept when a refusal left it as it was (every check before an op applies):
    /// a refusal may come from a stale cache (a base this container has not seen yet, though
    /// another container stored it), so it is decided again on the latest state.
    async fn write_optimistic<T, W>(
        &self,
        slot: &mut Option<Cached>,
        doc: &Document,
        announce: &Announce,
        key: Option<Keyed<'_, T>>,
        work: &mut W,
    ) -> Result<Option<Written<T>>, Failed>
    where
        W: FnMut(&mut Rga) -> Result<(T, Vec<Op>), AppError>,
    {
        if slot.is_none() {
            self.refresh(doc.id, slot).await.map_err(Failed::drop)?;
        }
        let Some(cached) = slot.as_mut() else {
            return Ok(None);
        };
        let before = Unchanged::of(&cached.rga);
        let stored_waiting: HashSet<CharId> = cached
            .rga
            .pending_ops()
            .iter()
            .map(|op| op.id().id())
            .collect();
        let planned = self.plan(
            &mut cached.rga,
            cached.encoded,
            doc,
            announce,
            stored_waiting,
            work,
        );
        let Ok((value, plan, grown)) = planned else {
            if !before.holds(&cached.rga) {
                *slot = None;
            }
            return Ok(None);
        };
        let plan = self.with_bookkeeping(plan, &value, key);
        // A client's ops that change no waiting op go after whatever was written since: they
        // were made on the state as of the request's start and stay valid on any later one.
        // The rest (other replicas' ops, waiting-buffer changes) only on the state they were
        // decided on.
        let unchecked = matches!(announce, Announce::Ops)
            && plan.waiting_add.is_empty()
            && plan.waiting_remove.is_empty();
        let known = (!unchecked).then_some(cached.next_pos);
        let appended = self
            .store
            .try_append(doc.id, known, self.settings.replica, &plan)
            .await
            .map_err(Failed::drop)?;
        let Some(appended) = appended else {
            // Another container wrote first (or wrote one of these ops): the replica holds
            // this attempt's changes.
            *slot = None;
            return Ok(None);
        };
        if appended.start == cached.next_pos {
            cached.next_pos = appended.next_pos;
        } else {
            cached.saw_other_writers();
        }
        // Otherwise other writers' rows came first: the replica reads them with the next tail
        // (and its own again, as duplicates).
        cached.encoded = grown;
        Ok(Some(Written {
            value,
            outbox: appended.outbox_id.zip(plan.outbox),
            ops: plan.ops,
            sent_outbox: plan.sent_outbox,
        }))
    }

    /// The locked path: under the document's row lock, the tail the cache has not seen is
    /// applied, `work` runs on the latest state, and the plan is written in the same
    /// transaction. A refusal that left the replica as the tail made it keeps the cache (its
    /// position moved to the tail's end); any other failure drops it.
    async fn write_locked<T, W>(
        &self,
        slot: &mut Option<Cached>,
        doc: &Document,
        announce: &Announce,
        key: Option<Keyed<'_, T>>,
        work: &mut W,
    ) -> Result<Written<T>, Failed>
    where
        T: Send,
        W: FnMut(&mut Rga) -> Result<(T, Vec<Op>), AppError> + Send,
    {
        if slot.is_none() {
            self.refresh(doc.id, slot).await.map_err(Failed::drop)?;
        }
        let Some(cached) = slot.as_mut() else {
            return Err(Failed::drop(AppError::Internal(
                "cache slot empty after load".into(),
            )));
        };
        let mut written: Option<(T, Plan, usize)> = None;
        let mut keep = false;
        let Cached {
            rga,
            next_pos,
            encoded,
            ..
        } = cached;
        let appended = self
            .store
            .append(doc.id, *next_pos, self.settings.replica, |tail| {
                *encoded += ops_bound(&tail.ops);
                for op in tail.ops {
                    rga.apply(op)
                        .map_err(|e| AppError::Internal(format!("stored op refused: {e}")))?;
                }
                let stored_waiting: HashSet<CharId> =
                    tail.waiting.iter().map(|op| op.id().id()).collect();
                for op in tail.waiting {
                    let _ = rga.apply(op);
                }
                // The replica now matches the log up to the tail's end.
                *next_pos = tail.next_pos;
                let before = Unchanged::of(rga);
                let (value, plan, grown) = self
                    .plan(rga, *encoded, doc, announce, stored_waiting, work)
                    .inspect_err(|_| keep = before.holds(rga))?;
                let plan = self.with_bookkeeping(plan, &value, key);
                written = Some((value, plan.clone(), grown));
                Ok(plan)
            })
            .await
            .map_err(|error| Failed { error, keep })?;
        *next_pos = appended.next_pos;
        let (value, plan, grown) = written.ok_or_else(|| {
            Failed::drop(AppError::Internal("append did not run the plan".into()))
        })?;
        *encoded = grown;
        Ok(Written {
            value,
            outbox: appended.outbox_id.zip(plan.outbox),
            ops: plan.ops,
            sent_outbox: plan.sent_outbox,
        })
    }

    /// `plan` with the request's idempotency key and the outbox rows to delete on the way.
    fn with_bookkeeping<T>(&self, plan: Plan, value: &T, key: Option<Keyed<'_, T>>) -> Plan {
        let mut plan = with_key(plan, value, key);
        plan.sent_outbox = self.sent_rows();
        plan
    }

    /// Runs `work` on `rga` (whose encoding is at most `encoded` bytes) and turns what changed
    /// into a plan: the new ops, the waiting-buffer changes against `stored_waiting`, and the
    /// broadcast; with the bound of the encoding afterwards. A local write is refused (413) if the document would exceed its length limit
    /// or its session answer Lambda's response limit ([`super::size`]); other replicas' ops are
    /// integrated whatever the size (refusing them would leave the replicas diverged).
    pub(super) fn plan<T, W>(
        &self,
        rga: &mut Rga,
        encoded: usize,
        doc: &Document,
        announce: &Announce,
        stored_waiting: HashSet<CharId>,
        work: &mut W,
    ) -> Result<(T, Plan, usize), AppError>
    where
        W: FnMut(&mut Rga) -> Result<(T, Vec<Op>), AppError>,
    {
        let max_chars = self.settings.limits.max_document_chars;
        let before = rga.version();
        let (value, mut announced) = work(rga)?;
        // Only this replica's own sites' ops go out: other replicas drop a message carrying
        // another's as forged (`Envelope::forged`), and those reach everyone from their origin.
        let here = self.settings.replica;
        announced.retain(|op| crate::ids::replica_of(op.site()) == here);
        let local = matches!(announce, Announce::Ops);
        if local && rga.len() > max_chars {
            return Err(AppError::TooLarge(format!(
                "the document is limited to {max_chars} chars"
            )));
        }
        let waiting: HashMap<CharId, Op> = rga
            .pending_ops()
            .into_iter()
            .map(|op| (op.id().id(), op))
            .collect();
        let plan = Plan {
            ops: rga.ops_since(&before),
            waiting_add: waiting
                .iter()
                .filter(|(id, _)| !stored_waiting.contains(id))
                .map(|(_, op)| op.clone())
                .collect(),
            waiting_remove: stored_waiting
                .iter()
                .filter(|id| !waiting.contains_key(id))
                .copied()
                .collect(),
            outbox: match announce {
                Announce::Ops if !announced.is_empty() => Some(Envelope {
                    origin: self.settings.replica,
                    body: Broadcast::Ops {
                        document: doc.info(),
                        ops: announced,
                    },
                }),
                _ => None,
            },
            key: None,
            sent_outbox: Vec::new(),
        };
        let mut grown = encoded + ops_bound(&plan.ops);
        if local && !plan.ops.is_empty() {
            let sites = before.len() + 1;
            if !session_answer_fits(rga, sites, grown, MAX_ANSWER_BYTES) {
                // The bound does not decide (it counts text uncompressed): encode exactly.
                grown = rga.encode().len();
                if !session_answer_fits(rga, sites, grown, MAX_ANSWER_BYTES) {
                    return Err(AppError::TooLarge(format!(
                        "the document would outgrow one answer ({} MiB with its snapshot, under Lambda's 6 MB response limit)",
                        MAX_ANSWER_BYTES >> 20
                    )));
                }
            }
        }
        Ok((value, plan, grown))
    }

    /// Publishes the outbox row a commit wrote, if any, and pushes the new ops to this replica's
    /// editors, both at once (a slow SNS does not hold the editors' push back); returns the row's
    /// id. The broadcast is published from memory (the row is not read back); the row is deleted
    /// once SNS took it, and the sweep republishes it otherwise.
    pub(super) async fn after_commit(
        &self,
        doc: &Document,
        outbox: Option<(i64, Envelope)>,
        ops: Vec<Op>,
    ) -> Option<i64> {
        let publish = async {
            if let Some((id, envelope)) = &outbox {
                self.publish_envelope(*id, envelope, true).await;
            }
        };
        let push = async {
            if let (Some(push), false) = (&self.push, ops.is_empty()) {
                push.ops(doc.info(), ops).await;
            }
        };
        futures_util::future::join(publish, push).await;
        outbox.map(|(id, _)| id)
    }
}

/// What a committed write leaves to do after the lock is released.
struct Written<T> {
    /// The work's result.
    value: T,
    /// The outbox row written, with its broadcast.
    outbox: Option<(i64, Envelope)>,
    /// The new ops (pushed to connections).
    ops: Vec<Op>,
    /// Published outbox rows the write deleted.
    sent_outbox: Vec<i64>,
}

/// A failed write, and whether the cached replica still matches the log (`keep`).
struct Failed {
    error: AppError,
    keep: bool,
}

impl Failed {
    /// A failure after which the cached replica may not match the log.
    fn drop(error: AppError) -> Self {
        Failed { error, keep: false }
    }
}

/// A replica's version and waiting-buffer size: if both are as before, a refused `work` changed
/// nothing (refusals are checked before an op applies, or by applying nothing).
struct Unchanged {
    version: rga::VersionVector,
    pending: usize,
}

impl Unchanged {
    fn of(rga: &Rga) -> Self {
        Unchanged {
            version: rga.version(),
            pending: rga.pending_len(),
        }
    }

    fn holds(&self, rga: &Rga) -> bool {
        rga.pending_len() == self.pending && rga.version() == self.version
    }
}

/// Brings a cached replica up to date with the stored tail after its position.
///
/// The tail must start at or before the replica's position; ops it holds already (its own
/// committed ops past its position, see the module docs) apply as duplicates, and the position
/// never moves back.
pub(super) fn apply_tail(id: DocumentId, c: &mut Cached, tail: Tail) -> Result<(), AppError> {
    c.encoded += ops_bound(&tail.ops);
    for op in tail.ops.into_iter().chain(tail.waiting) {
        c.rga
            .apply(op)
            .map_err(|e| AppError::Internal(format!("stored op of {id} refused: {e}")))?;
    }
    c.next_pos = c.next_pos.max(tail.next_pos);
    Ok(())
}

/// A request's key, its user, and how to turn its answer into the JSON recorded with it.
pub(super) type Keyed<'a, T> = (&'a RequestKey, &'a UserId, &'a (dyn Fn(&T) -> Value + Sync));

/// `plan` with the request's key and answer to record, if it has a key.
fn with_key<T>(mut plan: Plan, value: &T, key: Option<Keyed<'_, T>>) -> Plan {
    if let Some((k, user, answer)) = key {
        plan.key = Some(KeyRecord {
            user: user.clone(),
            key: k.key.clone(),
            hash: k.hash.clone(),
            answer: answer(value),
        });
    }
    plan
}
