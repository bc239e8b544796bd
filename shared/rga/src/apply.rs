//! Applying operations: remote ones through [`Rga::apply`], and the integration steps shared with
//! local edits.
//!
//! `apply` checks an operation's shape (the S4Vector rules that need no state, and the
//! identifier bounds of [`Limits`](crate::Limits)), recognises duplicates, parks it in the
//! waiting buffer when a cause is missing, and otherwise validates it against the state and
//! integrates it. Validation happens before any mutation, so a refused operation changes
//! nothing.
//!
//! Duplicates are recognised by content, not by how they are cut: an insert whose characters
//! were applied already, as one run or as several (a resend merged differently, a relay that
//! split it), is a duplicate wherever each character has the same S4Vector, value and
//! predecessor; a longer run that extends known characters applies only its unknown suffix. A
//! delete compares its targets as a set of identifiers. Only a real content difference is a
//! conflict.
//!
//! Integration follows Roh et al.: an insert starts after its reference and skips every following
//! element with higher precedence (those belong to the subtrees of newer siblings), a delete
//! tombstones its targets, an update keeps the highest-precedence value and never revives a
//! tombstone.

use crate::bulk::Bulk;
use crate::error::OpError;
use crate::id::{CharId, IdRange, Precedence, S4Vector, SiteId};
use crate::log::{LvRange, MAX_RECORDS, Rec};
use crate::op::{Change, Op};
use crate::replica::Rga;
use crate::tree::{NONE, Pos, Span};

/// What [`Rga::apply`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Status {
    /// The operation was applied now.
    #[default]
    Applied,
    /// It had been applied (or is already waiting) with identical content: nothing changed.
    Duplicate,
    /// A cause is missing: it waits and applies when the cause arrives.
    Pending,
}

/// The result of [`Rga::apply`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// What happened to the operation itself.
    pub status: Status,
    /// Changes to the visible text, in order, including those of waiting operations that this
    /// one released.
    pub changes: Vec<Change>,
    /// Number of waiting operations applied because this one supplied their cause.
    pub released: usize,
    /// Waiting operations that were dropped: invalid once their causes arrived, waiting for a
    /// cause that was refused, or waiting too long.
    pub rejected: Vec<(CharId, OpError)>,
}

impl Applied {
    /// Empties the result for reuse (see [`Rga::apply_into`]).
    pub fn clear(&mut self) {
        self.status = Status::Applied;
        self.changes.clear();
        self.released = 0;
        self.rejected.clear();
    }
}

pub(crate) enum Known {
    Duplicate,
    New(Op, u64),
}

impl Rga {
    /// Applies a remote operation. Operations may arrive in any order and more than once: an
    /// operation whose causes are missing waits; a duplicate is a no-op. Refused operations
    /// (`Err`) change nothing.
    pub fn apply(&mut self, op: Op) -> Result<Applied, OpError> {
        let mut out = Applied::default();
        self.apply_into(op, &mut out)?;
        Ok(out)
    }

    /// [`Rga::apply`], adding to `out` instead of allocating a result: changes, released and
    /// rejected accumulate (call [`Applied::clear`] between uses); `out.status` is this op's.
    pub fn apply_into(&mut self, op: Op, out: &mut Applied) -> Result<Status, OpError> {
        let (site, from) = (op.site(), op.id().seq);
        let status = self.apply_one(op, &mut out.changes)?;
        out.status = status;
        if !self.pending.is_empty() {
            if status == Status::Applied {
                self.release(site, from, out);
            }
            self.expire(out);
        }
        Ok(status)
    }

    /// Applies operations in order, stopping at the first refused one.
    pub fn apply_all(&mut self, ops: impl IntoIterator<Item = Op>) -> Result<Applied, OpError> {
        let mut all = Applied::default();
        let mut any_pending = false;
        for op in ops {
            if self.apply_into(op, &mut all)? == Status::Pending {
                any_pending = true;
            }
        }
        if any_pending {
            all.status = Status::Pending;
        }
        Ok(all)
    }

    fn apply_one(&mut self, op: Op, changes: &mut Vec<Change>) -> Result<Status, OpError> {
        let n = self.check_shape(&op)?;
        let (op, n) = match self.check_known(op, n)? {
            Known::Duplicate => return Ok(Status::Duplicate),
            Known::New(op, n) => (op, n),
        };
        if let Some(cause) = self.missing_cause(&op) {
            return self.wait(op, cause);
        }
        self.integrate(op, n, Some(changes))?;
        Ok(Status::Applied)
    }

    /// Parks `op` until `cause` arrives; an op waiting already with the same identifier is a
    /// duplicate if one run is a prefix of the other (the longer one is kept).
    fn wait(&mut self, op: Op, cause: CharId) -> Result<Status, OpError> {
        let id = op.id().id();
        if let Some(waiting) = self.pending.get(id) {
            return match (waiting, &op) {
                _ if *waiting == op => Ok(Status::Duplicate),
                (
                    Op::Insert {
                        id: a,
                        after: ra,
                        text: ta,
                    },
                    Op::Insert {
                        id: b,
                        after: rb,
                        text: tb,
                    },
                ) if a == b && ra == rb => {
                    if ta.starts_with(tb.as_str()) {
                        Ok(Status::Duplicate)
                    } else if tb.starts_with(ta.as_str()) {
                        if self.pending.replace(op, &self.limits) {
                            Ok(Status::Pending)
                        } else {
                            Err(OpError::BufferFull {
                                id,
                                limit: crate::BufferLimit::SiteBytes(
                                    self.limits.max_pending_bytes_per_site,
                                ),
                            })
                        }
                    } else {
                        Err(OpError::ConflictingDuplicate { id })
                    }
                }
                (Op::Delete { id: a, targets: ta }, Op::Delete { id: b, targets: tb })
                    if a == b && normalized(ta) == normalized(tb) =>
                {
                    Ok(Status::Duplicate)
                }
                _ => Err(OpError::ConflictingDuplicate { id }),
            };
        }
        let now = self.log.clock_total;
        self.pending
            .admit(op, cause, now, &self.limits)
            .map_err(|limit| OpError::BufferFull { id, limit })?;
        Ok(Status::Pending)
    }

    /// Applies the waiting operations that `site`'s operations from `from` on may have released,
    /// transitively; drops those that turn out invalid, and whatever waited for them.
    fn release(&mut self, site: SiteId, from: u64, out: &mut Applied) {
        let mut work = self.pending.take(site, from, self.log.next_seq(site));
        while let Some(op) = work.pop() {
            let (site, from, len) = (op.site(), op.id().seq, op.seq_len());
            let id = op.id().id();
            match self.apply_one(op, &mut out.changes) {
                Ok(Status::Applied) => {
                    out.released += 1;
                    work.extend(self.pending.take(site, from, self.log.next_seq(site)));
                }
                Ok(_) => {}
                Err(e) => {
                    out.rejected.push((id, e));
                    self.drop_dependents(site, from, from.saturating_add(len), out);
                }
            }
        }
    }

    /// Drops the waiting operations that wait for identifiers `site:from .. site:to`, which will
    /// never be applied, and, transitively, those waiting for them.
    fn drop_dependents(&mut self, site: SiteId, from: u64, to: u64, out: &mut Applied) {
        let mut stack = vec![(site, from, to)];
        while let Some((site, from, to)) = stack.pop() {
            let cause = CharId {
                sid: site,
                seq: from,
            };
            for op in self.pending.take(site, from, to) {
                let id = op.id().id();
                stack.push((op.site(), id.seq, id.seq.saturating_add(op.seq_len())));
                out.rejected.push((id, OpError::CauseRefused { id, cause }));
            }
        }
    }

    /// Drops waiting operations older than the age limit (and what waits for them).
    fn expire(&mut self, out: &mut Applied) {
        let (now, age) = (self.log.clock_total, self.limits.max_pending_age);
        while let Some((op, cause)) = self.pending.expire_one(now, age) {
            let id = op.id().id();
            out.rejected.push((id, OpError::Expired { id, cause }));
            self.drop_dependents(op.site(), id.seq, id.seq.saturating_add(op.seq_len()), out);
        }
    }

    /// The rules that need no state. Returns the number of sequence numbers the op uses.
    pub(crate) fn check_shape(&self, op: &Op) -> Result<u64, OpError> {
        let id = op.id();
        let cid = id.id();
        let max = self.limits.max_id;
        let bounded = |field: &'static str, value: Option<u64>| match value {
            Some(v) if v <= max => Ok(()),
            Some(value) => Err(OpError::IdOutOfRange {
                id: cid,
                field,
                value,
                max,
            }),
            None => Err(OpError::Overflow { id: cid }),
        };
        bounded("sid", Some(id.sid.0))?;
        bounded("seq", Some(id.seq))?;
        bounded("sum", Some(id.sum))?;
        if id.seq == 0 {
            return Err(OpError::ZeroSeq { id: cid });
        }
        if id.ssn > self.ssn {
            return Err(OpError::UnknownSession {
                id: cid,
                ssn: id.ssn,
                known: self.ssn,
            });
        }
        if id.seq > id.sum {
            return Err(OpError::SeqExceedsSum {
                id: cid,
                seq: id.seq,
                sum: id.sum,
            });
        }
        let max_len = self.limits.max_op_len;
        let n = match op {
            Op::Insert { text, after, .. } => {
                let n = text.chars().count() as u64;
                if n == 0 {
                    return Err(OpError::Empty { id: cid });
                }
                if n > max_len {
                    return Err(OpError::TooLarge {
                        id: cid,
                        len: n,
                        max: max_len,
                    });
                }
                bounded("seq", id.seq.checked_add(n - 1))?;
                bounded("sum", id.sum.checked_add(n - 1))?;
                if let Some(r) = after {
                    bounded("reference sid", Some(r.sid.0))?;
                    bounded("reference seq", Some(r.seq))?;
                    bounded("reference sum", Some(r.sum))?;
                    if r.seq == 0 {
                        return Err(OpError::ZeroSeq { id: r.id() });
                    }
                    if !r.precedes(id) {
                        return Err(OpError::NotAfterCause {
                            id: cid,
                            cause: r.id(),
                        });
                    }
                }
                n
            }
            Op::Delete { targets, .. } => {
                if targets.is_empty() {
                    return Err(OpError::Empty { id: cid });
                }
                let mut total = targets.len() as u64;
                for t in targets {
                    if t.len == 0 {
                        return Err(OpError::Empty { id: cid });
                    }
                    if t.seq == 0 {
                        return Err(OpError::ZeroSeq { id: t.first() });
                    }
                    bounded("target sid", Some(t.sid.0))?;
                    bounded("target seq", t.seq.checked_add(t.len - 1))?;
                    total = total.saturating_add(t.len);
                }
                if total > max_len {
                    return Err(OpError::TooLarge {
                        id: cid,
                        len: total,
                        max: max_len,
                    });
                }
                1
            }
            Op::Update { target, .. } => {
                if target.seq == 0 {
                    return Err(OpError::ZeroSeq { id: *target });
                }
                bounded("target sid", Some(target.sid.0))?;
                bounded("target seq", Some(target.seq))?;
                1
            }
        };
        Ok(n)
    }

    /// Recognises operations (or prefixes of runs) that were applied already.
    pub(crate) fn check_known(&self, op: Op, n: u64) -> Result<Known, OpError> {
        let id = *op.id();
        let Some(agent) = self.log.agent_of(id.sid) else {
            return Ok(Known::New(op, n));
        };
        let next = self.log.agents[agent as usize].next_seq;
        if id.seq >= next {
            return Ok(Known::New(op, n));
        }
        let conflict = Err(OpError::ConflictingDuplicate { id: id.id() });
        match op {
            Op::Insert {
                ref text, after, ..
            } => {
                let known = (next - id.seq).min(n);
                if !self.same_insert_prefix(agent, &id, after, text, known) {
                    return conflict;
                }
                if known == n {
                    return Ok(Known::Duplicate);
                }
                // A run extending known characters: only its suffix is new.
                let (Some(first), Some(prev)) = (id.offset(known), id.offset(known - 1)) else {
                    return conflict;
                };
                let text: String = text.chars().skip(known as usize).collect();
                Ok(Known::New(
                    Op::Insert {
                        id: first,
                        after: Some(prev),
                        text,
                    },
                    n - known,
                ))
            }
            Op::Delete {
                targets: ref theirs,
                ..
            } => {
                let Some((e, off)) = self.log.entry_at(agent, id.seq) else {
                    return conflict;
                };
                let Rec::Delete(d) = e.kind.rec() else {
                    return conflict;
                };
                let rec = &self.log.deletes[d as usize];
                let stored = S4Vector {
                    ssn: rec.ssn,
                    sum: rec.sum + off,
                    sid: id.sid,
                    seq: id.seq,
                };
                let ours: Vec<IdRange> = self
                    .log
                    .delete_targets(rec, off as u32)
                    .as_slice()
                    .iter()
                    .map(|&t| self.log.lv_range_ids(t))
                    .collect();
                if stored == id && normalized(&ours) == normalized(theirs) {
                    Ok(Known::Duplicate)
                } else {
                    conflict
                }
            }
            Op::Update { target, value, .. } => {
                let Some((e, _)) = self.log.entry_at(agent, id.seq) else {
                    return conflict;
                };
                let Rec::Update(u) = e.kind.rec() else {
                    return conflict;
                };
                let u = &self.log.updates[u as usize];
                let same = u.ssn == id.ssn
                    && u.sum == id.sum
                    && u.value == value
                    && self.log.char_s4(self.log.run_of(u.target), u.target).id() == target;
                if same { Ok(Known::Duplicate) } else { conflict }
            }
        }
    }

    /// Whether the first `known` characters of an insert are applied with the same S4Vectors,
    /// values and predecessors, however the stored runs are cut.
    fn same_insert_prefix(
        &self,
        agent: u32,
        id: &S4Vector,
        after: Option<S4Vector>,
        text: &str,
        known: u64,
    ) -> bool {
        let mut prev = match after {
            None => NONE,
            Some(a) => match self.log.char_at(a.id()) {
                Ok(Some((run, lv))) if self.log.char_s4(run, lv) == a => lv,
                _ => return false,
            },
        };
        let mut chars = text.chars();
        let mut q = id.seq;
        let end = id.seq + known;
        while q < end {
            let Some((e, off)) = self.log.entry_at(agent, q) else {
                return false;
            };
            let Rec::Insert(r) = e.kind.rec() else {
                return false;
            };
            let run = &self.log.runs[r as usize];
            if run.ssn != id.ssn || run.sum + off != id.sum + (q - id.seq) {
                return false;
            }
            let lv = run.lv + off as u32;
            if self.log.parent_of(r, lv) != prev {
                return false;
            }
            let take = ((run.len as u64 - off).min(end - q)) as u32;
            for k in 0..take {
                if chars.next() != Some(self.content.get(lv + k)) {
                    return false;
                }
            }
            prev = lv + take - 1;
            q += take as u64;
        }
        true
    }

    /// The first cause of `op` that has not been applied: its site's previous operation, its
    /// reference, a target.
    pub(crate) fn missing_cause(&self, op: &Op) -> Option<CharId> {
        let id = op.id();
        if id.seq > self.log.next_seq(id.sid) {
            return Some(CharId {
                sid: id.sid,
                seq: id.seq - 1,
            });
        }
        match op {
            Op::Insert { after: Some(r), .. } => (!self.log.contains(r.id())).then(|| r.id()),
            Op::Insert { after: None, .. } => None,
            Op::Delete { targets, .. } => targets.iter().find_map(|t| {
                let last = CharId {
                    sid: t.sid,
                    seq: t.seq + t.len - 1,
                };
                (!self.log.contains(last)).then_some(last)
            }),
            Op::Update { target, .. } => (!self.log.contains(*target)).then_some(*target),
        }
    }

    /// Refuses a sum that jumps more than the limit above the op's causes.
    pub(crate) fn check_step(&self, id: &S4Vector, causes: u64) -> Result<(), OpError> {
        let max = self.limits.max_sum_step;
        if id.sum > causes.saturating_add(max) {
            return Err(OpError::SumJump {
                id: id.id(),
                sum: id.sum,
                causes,
                max,
            });
        }
        Ok(())
    }

    /// Validates a ready operation against the state, then integrates it.
    pub(crate) fn integrate(
        &mut self,
        op: Op,
        n: u64,
        changes: Option<&mut Vec<Change>>,
    ) -> Result<(), OpError> {
        self.integrate_into(op, n, Into::Tree(changes))
    }

    /// [`Rga::integrate`] into a bulk build (see [`crate::bulk`]).
    pub(crate) fn integrate_bulk(
        &mut self,
        op: Op,
        n: u64,
        bulk: &mut Bulk,
    ) -> Result<(), OpError> {
        self.integrate_into(op, n, Into::Bulk(bulk))
    }

    /// [`Rga::integrate`] into the tree, or into a [`Bulk`] build (the log only; the tree is built
    /// once at the end). Validation reads only the log and the content, so it is the same for
    /// both.
    fn integrate_into(&mut self, op: Op, n: u64, into: Into<'_>) -> Result<(), OpError> {
        let id = *op.id();
        let cid = id.id();
        let own_last = self
            .log
            .agent_of(id.sid)
            .and_then(|a| self.log.agents[a as usize].last);
        if let Some(last) = own_last
            && (id.ssn, id.sum) <= last
        {
            return Err(OpError::NotIncreasing {
                id: cid,
                site: id.sid,
            });
        }
        let mut causes = own_last.map_or(0, |l| l.1);
        if self.log.records() as u64 >= MAX_RECORDS as u64 {
            return Err(OpError::DocumentTooLarge {
                max: self.limits.max_elements,
            });
        }
        match op {
            Op::Insert { after, text, .. } => {
                let parent = match after {
                    None => NONE,
                    Some(r) => {
                        let (run, lv) = self.resolve_char(cid, r.id())?;
                        if self.log.char_s4(run, lv) != r {
                            return Err(OpError::ReferenceMismatch {
                                id: cid,
                                reference: r.id(),
                            });
                        }
                        causes = causes.max(r.sum);
                        lv
                    }
                };
                self.check_step(&id, causes)?;
                // Every element has its char in the content: its length is the tree's.
                if self.content.len() as u64 + n > self.limits.max_elements {
                    return Err(OpError::DocumentTooLarge {
                        max: self.limits.max_elements,
                    });
                }
                let agent = self.log.agent_or_new(id.sid);
                match into {
                    Into::Tree(changes) => {
                        let (first, _) =
                            self.integrate_insert(agent, id, parent, None, &text, n as u32, false);
                        if let Some(changes) = changes {
                            let index = self.report_index(first);
                            changes.push(Change::Insert { index, text });
                        }
                    }
                    Into::Bulk(bulk) => self.bulk_insert(bulk, agent, id, parent, &text),
                }
            }
            Op::Delete { targets, .. } => {
                let sorted;
                let targets = if targets.len() > 1 {
                    sorted = normalized(&targets);
                    &sorted
                } else {
                    &targets
                };
                let mut lvs = std::mem::take(&mut self.scratch);
                lvs.clear();
                let checked =
                    self.resolve_targets(cid, targets, &mut lvs)
                        .and_then(|(top, top_lv)| {
                            if top >= id.precedence() {
                                let run = self.log.run_of(top_lv);
                                return Err(OpError::NotAfterCause {
                                    id: cid,
                                    cause: self.log.char_s4(run, top_lv).id(),
                                });
                            }
                            self.check_step(&id, causes.max(top.sum))
                        });
                if let Err(e) = checked {
                    self.scratch = lvs;
                    return Err(e);
                }
                let agent = self.log.agent_or_new(id.sid);
                match into {
                    Into::Tree(changes) => self.integrate_delete(agent, id, &lvs, changes),
                    Into::Bulk(bulk) => self.bulk_delete(bulk, agent, id, &lvs),
                }
                self.scratch = lvs;
            }
            Op::Update { target, value, .. } => {
                let (run, lv) = self.resolve_char(cid, target)?;
                let prec = self.log.char_prec(run, lv);
                if prec >= id.precedence() {
                    return Err(OpError::NotAfterCause {
                        id: cid,
                        cause: target,
                    });
                }
                self.check_step(&id, causes.max(prec.sum))?;
                let agent = self.log.agent_or_new(id.sid);
                match into {
                    Into::Tree(changes) => self.integrate_update(agent, id, lv, value, changes),
                    Into::Bulk(_) => {
                        self.log.push_update(agent, id, lv, value);
                        self.keep_winner(lv, id.precedence(), value);
                    }
                }
            }
        }
        Ok(())
    }

    fn resolve_char(&self, op: CharId, target: CharId) -> Result<(u32, u32), OpError> {
        match self.log.char_at(target) {
            Ok(Some(found)) => Ok(found),
            _ => Err(OpError::NotACharacter { id: op, target }),
        }
    }

    /// Appends the lv ranges (one per run fragment) of the characters `targets`; returns the
    /// highest precedence among them and the lv of that character.
    fn resolve_targets(
        &self,
        op: CharId,
        targets: &[IdRange],
        out: &mut Vec<LvRange>,
    ) -> Result<(Precedence, u32), OpError> {
        let mut top = (
            Precedence {
                ssn: 0,
                sum: 0,
                sid: SiteId(0),
            },
            0,
        );
        for t in targets {
            let not_char = |seq| OpError::NotACharacter {
                id: op,
                target: CharId { sid: t.sid, seq },
            };
            let agent = self.log.agent_of(t.sid).ok_or_else(|| not_char(t.seq))?;
            let end = t.seq + t.len;
            let mut q = t.seq;
            while q < end {
                let Some((e, off)) = self.log.entry_at(agent, q) else {
                    return Err(not_char(q));
                };
                let Rec::Insert(r) = e.kind.rec() else {
                    return Err(not_char(q));
                };
                let run = &self.log.runs[r as usize];
                let take = (run.len as u64 - off).min(end - q);
                let range = LvRange {
                    start: run.lv + off as u32,
                    len: take as u32,
                };
                let last = range.end() - 1;
                let prec = self.log.char_prec(r, last);
                if prec > top.0 {
                    top = (prec, last);
                }
                out.push(range);
                q += take;
            }
        }
        Ok(top)
    }

    /// The gap after `gap` once every following element with higher precedence than `new` has
    /// been skipped, and whether any was.
    fn skip_newer(&self, mut gap: Pos, new: Precedence) -> (Pos, bool) {
        let mut skipped = false;
        while let Some(at) = self.tree.element_after(gap) {
            let s = self.tree.span(at.leaf, at.idx);
            if self.log.char_prec(s.run, s.lv + at.off) > new {
                // The rest of the span has higher sums still: skip all of it.
                gap = Pos {
                    leaf: at.leaf,
                    idx: at.idx + 1,
                    off: 0,
                };
                skipped = true;
            } else {
                return (at, skipped);
            }
        }
        (gap, skipped)
    }

    /// Integrates a validated insert run of `n` chars after lv `parent` (whose place may be
    /// known: `parent_pos`). `local` runs have the highest precedence of all elements, so they
    /// skip nothing. Returns the places of the first and the last new char.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn integrate_insert(
        &mut self,
        agent: u32,
        id: S4Vector,
        parent: u32,
        parent_pos: Option<Pos>,
        text: &str,
        n: u32,
        local: bool,
    ) -> (Pos, Pos) {
        let lv = self.content.len();
        let parent_pos = parent_pos.or_else(|| (parent != NONE).then(|| self.tree.find_lv(parent)));
        let gap = match parent_pos {
            None => Pos {
                leaf: 0,
                idx: 0,
                off: 0,
            },
            Some(p) => self.tree.gap_after(p),
        };
        let (gap, skipped) = if local {
            (gap, false)
        } else {
            self.skip_newer(gap, id.precedence())
        };
        self.content.push_str(text);
        let extends = !skipped
            && parent_pos.is_some_and(|p| !self.tree.span(p.leaf, p.idx).deleted())
            && self.log.continues_last_run(agent, &id, parent, lv);
        let start = match parent_pos {
            Some(p) if extends => {
                self.tree.extend(p.leaf, p.idx, n, &self.content);
                self.log.extend_last_run(agent, &id, n);
                Pos {
                    off: p.off + 1,
                    ..p
                }
            }
            _ => {
                let run = self.log.push_run(agent, id, lv, n, parent);
                self.tree
                    .insert(gap, Span::new(lv, n, run, false), &self.content)
            }
        };
        let last = self.tree.span(start.leaf, start.idx).len() - 1;
        (start, Pos { off: last, ..start })
    }

    /// Integrates a validated delete of `targets`.
    pub(crate) fn integrate_delete(
        &mut self,
        agent: u32,
        id: S4Vector,
        targets: &[LvRange],
        mut changes: Option<&mut Vec<Change>>,
    ) {
        self.log.push_delete(agent, id, targets);
        let Rga {
            tree,
            content,
            log,
            units,
            ..
        } = self;
        for t in targets {
            tree.delete(
                t.start,
                t.len,
                content,
                |tree, p, len| {
                    let Some(c) = changes.as_deref_mut() else {
                        return;
                    };
                    let (index, len) = match units {
                        crate::Units::Chars => (tree.vis_before(p) as usize, len as usize),
                        crate::Units::Utf16 => {
                            let lv = tree.span(p.leaf, p.idx).lv;
                            (
                                tree.utf16_before(p, content) as usize,
                                (len + content.astral(lv, len)) as usize,
                            )
                        }
                    };
                    match c.last_mut() {
                        Some(Change::Delete { index: i, len: l }) if *i == index => *l += len,
                        _ => c.push(Change::Delete { index, len }),
                    }
                },
                |lv, len| {
                    for lv in lv..lv + len {
                        *log.deleted_again.entry(lv).or_insert(1) += 1;
                    }
                },
            );
        }
    }

    /// Integrates a validated update of the character at `lv`.
    pub(crate) fn integrate_update(
        &mut self,
        agent: u32,
        id: S4Vector,
        lv: u32,
        value: char,
        changes: Option<&mut Vec<Change>>,
    ) {
        self.log.push_update(agent, id, lv, value);
        let old = self.value(lv);
        if !self.keep_winner(lv, id.precedence(), value) {
            return;
        }
        let p = self.tree.find_lv(lv);
        // Last writer wins among visible characters; a tombstone keeps its value hidden.
        if let Some(changes) = changes
            && !self.tree.span(p.leaf, p.idx).deleted()
            && old != value
        {
            let index = self.report_index(p);
            let len = match self.units {
                crate::Units::Chars => 1,
                crate::Units::Utf16 => old.len_utf16(),
            };
            changes.push(Change::Delete { index, len });
            changes.push(Change::Insert {
                index,
                text: value.to_string(),
            });
        }
    }
}

impl Rga {
    /// Keeps `value` as the value of the character at `lv` if `prec` beats the winning write so
    /// far (the insert's own, before any update); returns whether it did.
    fn keep_winner(&mut self, lv: u32, prec: Precedence, value: char) -> bool {
        let winner = self
            .values
            .get(&lv)
            .map(|v| v.0)
            .unwrap_or_else(|| self.log.char_prec(self.log.run_of(lv), lv));
        if prec <= winner {
            return false;
        }
        self.values.insert(lv, (prec, value));
        true
    }
}

/// Where [`Rga::integrate_into`] puts a validated operation.
enum Into<'a> {
    /// Into the tree, reporting changes to the visible text when asked.
    Tree(Option<&'a mut Vec<Change>>),
    /// Into the log and a bulk build's tables.
    Bulk(&'a mut Bulk),
}

/// Id ranges sorted by identifier with overlapping and adjacent ones of a site merged: the
/// canonical form of a delete's targets, whatever order or cut they came in.
pub(crate) fn normalized(ranges: &[IdRange]) -> Vec<IdRange> {
    let mut sorted = ranges.to_vec();
    if sorted.len() > 1 {
        sorted.sort_unstable_by_key(|r| (r.sid, r.seq));
    }
    let mut out: Vec<IdRange> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match out.last_mut() {
            Some(last) if last.sid == r.sid && last.seq + last.len >= r.seq => {
                last.len = last.len.max(r.seq + r.len - last.seq);
            }
            _ => out.push(r),
        }
    }
    out
}
