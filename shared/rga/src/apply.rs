//! Applying operations: remote ones through [`Rga::apply`], and the integration steps shared with
//! local edits.
//!
//! `apply` checks an operation's shape (the S4Vector rules that need no state), recognises
//! duplicates (identical content: a no-op; different content: an error; a longer run that extends
//! a known one: only the unknown suffix is new), parks it in the waiting buffer when a cause is
//! missing, and otherwise validates it against the state and integrates it. Validation happens
//! before any mutation, so a refused operation changes nothing.
//!
//! Integration follows Roh et al.: an insert starts after its reference and skips every following
//! element with higher precedence (those belong to the subtrees of newer siblings), a delete
//! tombstones its targets, an update keeps the highest-precedence value and never revives a
//! tombstone.

use crate::error::OpError;
use crate::id::{CharId, IdRange, Precedence, S4Vector};
use crate::log::{DelTargets, DeleteRec, Entry, InsertRun, Kind, LvRange, UpdateRec};
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
    /// Waiting operations that turned out invalid once their causes arrived; they were dropped.
    pub rejected: Vec<(CharId, OpError)>,
}

/// A new insert run, validated.
pub(crate) struct NewRun<'a> {
    pub agent: u32,
    pub id: S4Vector,
    pub parent: u32,
    pub parent_pos: Option<Pos>,
    pub text: &'a str,
    pub n: u32,
}

enum Known {
    Duplicate,
    New(Op, u64),
}

impl Rga {
    /// Applies a remote operation. Operations may arrive in any order and more than once: an
    /// operation whose causes are missing waits; a duplicate is a no-op. Refused operations
    /// (`Err`) change nothing.
    pub fn apply(&mut self, op: Op) -> Result<Applied, OpError> {
        let mut out = Applied::default();
        let (site, from) = (op.site(), op.id().seq);
        out.status = self.apply_one(op, Some(&mut out.changes))?;
        if out.status == Status::Applied && !self.pending.is_empty() {
            self.release(site, from, &mut out);
        }
        Ok(out)
    }

    /// Applies operations in order, stopping at the first refused one.
    pub fn apply_all(&mut self, ops: impl IntoIterator<Item = Op>) -> Result<Applied, OpError> {
        let mut all = Applied::default();
        for op in ops {
            let a = self.apply(op)?;
            all.changes.extend(a.changes);
            all.released += a.released;
            all.rejected.extend(a.rejected);
            if a.status == Status::Pending {
                all.status = Status::Pending;
            }
        }
        Ok(all)
    }

    fn apply_one(&mut self, op: Op, changes: Option<&mut Vec<Change>>) -> Result<Status, OpError> {
        let n = self.check_shape(&op)?;
        let (op, n) = match self.check_known(op, n)? {
            Known::Duplicate => return Ok(Status::Duplicate),
            Known::New(op, n) => (op, n),
        };
        if let Some(cause) = self.missing_cause(&op) {
            let id = op.id().id();
            if let Some(waiting) = self.pending.get(id) {
                return if *waiting == op {
                    Ok(Status::Duplicate)
                } else {
                    Err(OpError::ConflictingDuplicate { id })
                };
            }
            if self.pending.len() >= self.limits.max_pending {
                return Err(OpError::BufferFull {
                    id,
                    max: self.limits.max_pending,
                });
            }
            self.pending.push(op, cause);
            return Ok(Status::Pending);
        }
        self.integrate(&op, n, changes)?;
        Ok(Status::Applied)
    }

    /// Applies the waiting operations that `site`'s operations from `from` on may have released,
    /// transitively.
    fn release(&mut self, site: crate::SiteId, from: u64, out: &mut Applied) {
        let mut work = self.pending.take(site, from, self.next_seq(site));
        while let Some(op) = work.pop() {
            let (site, from) = (op.site(), op.id().seq);
            let id = op.id().id();
            match self.apply_one(op, Some(&mut out.changes)) {
                Ok(Status::Applied) => {
                    out.released += 1;
                    work.extend(self.pending.take(site, from, self.next_seq(site)));
                }
                Ok(_) => {}
                Err(e) => out.rejected.push((id, e)),
            }
        }
    }

    /// The rules that need no state. Returns the number of sequence numbers the op uses.
    fn check_shape(&self, op: &Op) -> Result<u64, OpError> {
        let id = op.id();
        let cid = id.id();
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
        let max = self.limits.max_op_len;
        let n = match op {
            Op::Insert { text, after, .. } => {
                let n = text.chars().count() as u64;
                if n == 0 {
                    return Err(OpError::Empty { id: cid });
                }
                if n > max {
                    return Err(OpError::TooLarge {
                        id: cid,
                        len: n,
                        max,
                    });
                }
                if id.offset(n).is_none() {
                    return Err(OpError::Overflow { id: cid });
                }
                if let Some(r) = after {
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
                    if t.seq.checked_add(t.len).is_none() {
                        return Err(OpError::Overflow { id: cid });
                    }
                    total = total.saturating_add(t.len);
                }
                if total > max {
                    return Err(OpError::TooLarge {
                        id: cid,
                        len: total,
                        max,
                    });
                }
                1
            }
            Op::Update { target, .. } => {
                if target.seq == 0 {
                    return Err(OpError::ZeroSeq { id: *target });
                }
                1
            }
        };
        Ok(n)
    }

    /// Recognises operations (or prefixes of runs) that were applied already.
    fn check_known(&self, op: Op, n: u64) -> Result<Known, OpError> {
        let id = *op.id();
        let Some(agent) = self.agent_of(id.sid) else {
            return Ok(Known::New(op, n));
        };
        let next = self.agents[agent as usize].next_seq;
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
                // A run extending a known one: only its suffix is new.
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
            Op::Delete { .. } | Op::Update { .. } => {
                let Some((e, off)) = self.entry_at(agent, id.seq) else {
                    return conflict;
                };
                let stored = self.op_of(e.kind, off);
                let same = match (&stored, &op) {
                    (Op::Delete { id: a, targets: ta }, Op::Delete { id: b, targets: tb }) => {
                        a == b && merged_ranges(ta) == merged_ranges(tb)
                    }
                    (Op::Update { .. }, Op::Update { .. }) => stored == op,
                    _ => false,
                };
                if same { Ok(Known::Duplicate) } else { conflict }
            }
        }
    }

    /// Whether the first `known` characters of an insert match what was applied.
    fn same_insert_prefix(
        &self,
        agent: u32,
        id: &S4Vector,
        after: Option<S4Vector>,
        text: &str,
        known: u64,
    ) -> bool {
        let mut chars = text.chars();
        let mut q = id.seq;
        let end = id.seq + known;
        while q < end {
            let Some((
                Entry {
                    kind: Kind::Insert(r),
                    ..
                },
                off,
            )) = self.entry_at(agent, q)
            else {
                return false;
            };
            let run = &self.runs[r as usize];
            if run.ssn != id.ssn || run.sum + off != id.sum + (q - id.seq) {
                return false;
            }
            let lv = run.lv + off as u32;
            let expected_parent = if q == id.seq {
                match after {
                    None => NONE,
                    Some(a) => match self.char_lv(a.id()) {
                        Ok(Some(p)) if self.char_s4(self.run_of(p), p) == a => p,
                        _ => return false,
                    },
                }
            } else {
                lv - 1
            };
            if self.parent_of(r, lv) != expected_parent {
                return false;
            }
            let take = ((run.len as u64 - off).min(end - q)) as usize;
            for stored in &self.content[lv as usize..lv as usize + take] {
                if chars.next() != Some(*stored) {
                    return false;
                }
            }
            q += take as u64;
        }
        true
    }

    /// The first cause of `op` that has not been applied: its site's previous operation, its
    /// reference, a target.
    fn missing_cause(&self, op: &Op) -> Option<CharId> {
        let id = op.id();
        if id.seq > self.next_seq(id.sid) {
            return Some(CharId {
                sid: id.sid,
                seq: id.seq - 1,
            });
        }
        match op {
            Op::Insert { after: Some(r), .. } => (!self.contains(r.id())).then(|| r.id()),
            Op::Insert { after: None, .. } => None,
            Op::Delete { targets, .. } => targets.iter().find_map(|t| {
                let last = CharId {
                    sid: t.sid,
                    seq: t.seq + t.len - 1,
                };
                (!self.contains(last)).then_some(last)
            }),
            Op::Update { target, .. } => (!self.contains(*target)).then_some(*target),
        }
    }

    /// Validates a ready operation against the state, then integrates it.
    pub(crate) fn integrate(
        &mut self,
        op: &Op,
        n: u64,
        changes: Option<&mut Vec<Change>>,
    ) -> Result<(), OpError> {
        let id = *op.id();
        let cid = id.id();
        let agent = self.agent_of(id.sid);
        if let Some(a) = agent
            && let Some(last) = self.agents[a as usize].last
            && (id.ssn, id.sum) <= last
        {
            return Err(OpError::NotIncreasing {
                id: cid,
                site: id.sid,
            });
        }
        match op {
            Op::Insert { after, text, .. } => {
                let parent = match after {
                    None => NONE,
                    Some(r) => {
                        let lv = self.resolve_char(cid, r.id())?;
                        if self.char_s4(self.run_of(lv), lv) != *r {
                            return Err(OpError::ReferenceMismatch {
                                id: cid,
                                reference: r.id(),
                            });
                        }
                        lv
                    }
                };
                if self.tree.total_len() as u64 + n > self.limits.max_elements {
                    return Err(OpError::DocumentTooLarge {
                        max: self.limits.max_elements,
                    });
                }
                let agent = self.agent_or_new(id.sid);
                let run = NewRun {
                    agent,
                    id,
                    parent,
                    parent_pos: None,
                    text,
                    n: n as u32,
                };
                self.integrate_insert(run, false, changes);
            }
            Op::Delete { targets, .. } => {
                let mut lvs = Vec::with_capacity(targets.len());
                for t in targets {
                    self.resolve_range(cid, t, &mut lvs)?;
                }
                for r in &lvs {
                    let last = r.end() - 1;
                    if self.char_prec(self.run_of(last), last) >= id.precedence() {
                        return Err(OpError::NotAfterCause {
                            id: cid,
                            cause: self.char_s4(self.run_of(last), last).id(),
                        });
                    }
                }
                let agent = self.agent_or_new(id.sid);
                self.integrate_delete(agent, id, &lvs, changes);
            }
            Op::Update { target, value, .. } => {
                let lv = self.resolve_char(cid, *target)?;
                if self.char_prec(self.run_of(lv), lv) >= id.precedence() {
                    return Err(OpError::NotAfterCause {
                        id: cid,
                        cause: *target,
                    });
                }
                let agent = self.agent_or_new(id.sid);
                self.integrate_update(agent, id, lv, *value, changes);
            }
        }
        Ok(())
    }

    fn resolve_char(&self, op: CharId, target: CharId) -> Result<u32, OpError> {
        match self.char_lv(target) {
            Ok(Some(lv)) => Ok(lv),
            _ => Err(OpError::NotACharacter { id: op, target }),
        }
    }

    /// Appends the lv ranges (one per run fragment) of the characters `t`.
    fn resolve_range(
        &self,
        op: CharId,
        t: &IdRange,
        out: &mut Vec<LvRange>,
    ) -> Result<(), OpError> {
        let not_char = |seq| OpError::NotACharacter {
            id: op,
            target: CharId { sid: t.sid, seq },
        };
        let agent = self.agent_of(t.sid).ok_or_else(|| not_char(t.seq))?;
        let end = t.seq + t.len;
        let mut q = t.seq;
        while q < end {
            let Some((
                Entry {
                    kind: Kind::Insert(r),
                    ..
                },
                off,
            )) = self.entry_at(agent, q)
            else {
                return Err(not_char(q));
            };
            let run = &self.runs[r as usize];
            let take = (run.len as u64 - off).min(end - q);
            out.push(LvRange {
                start: run.lv + off as u32,
                len: take as u32,
            });
            q += take;
        }
        Ok(())
    }

    /// Records that `agent` applied operations up to `next_seq - 1`, the last with `(ssn, sum)`.
    fn note_applied(&mut self, agent: u32, ssn: u32, sum: u64, next_seq: u64, count: u64) {
        let a = &mut self.agents[agent as usize];
        a.next_seq = next_seq;
        a.last = Some((ssn, sum));
        self.clock_total += count;
        self.max_sum = self.max_sum.max(sum);
    }

    /// The gap after `gap` once every following element with higher precedence than `new` has
    /// been skipped, and whether any was.
    fn skip_newer(&self, mut gap: Pos, new: Precedence) -> (Pos, bool) {
        let mut skipped = false;
        while let Some(at) = self.tree.element_after(gap) {
            let s = self.tree.span(at.leaf, at.idx);
            if self.char_prec(s.run, s.lv + at.off) > new {
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

    /// Integrates a validated insert run. `local` runs have the highest precedence of all
    /// elements, so they skip nothing.
    /// Returns the place of the last new char.
    pub(crate) fn integrate_insert(
        &mut self,
        r: NewRun<'_>,
        local: bool,
        changes: Option<&mut Vec<Change>>,
    ) -> Pos {
        let lv = self.content.len() as u32;
        let parent_pos = r
            .parent_pos
            .or_else(|| (r.parent != NONE).then(|| self.tree.find_lv(r.parent)));
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
            self.skip_newer(gap, r.id.precedence())
        };
        let extends = match (parent_pos, self.runs.last()) {
            (Some(p), Some(last)) => {
                !skipped
                    && r.parent + 1 == lv
                    && last.agent == r.agent
                    && last.ssn == r.id.ssn
                    && last.seq + last.len as u64 == r.id.seq
                    && last.sum + last.len as u64 == r.id.sum
                    && !self.tree.span(p.leaf, p.idx).deleted()
            }
            _ => false,
        };
        let start = if let (true, Some(p)) = (extends, parent_pos) {
            self.tree.extend(p.leaf, p.idx, r.n);
            if let Some(last) = self.runs.last_mut() {
                last.len += r.n;
            }
            if let Some(e) = self.agents[r.agent as usize].entries.last_mut() {
                e.len += r.n;
            }
            Pos {
                off: p.off + 1,
                ..p
            }
        } else {
            let run = self.runs.len() as u32;
            self.runs.push(InsertRun {
                ssn: r.id.ssn,
                agent: r.agent,
                sum: r.id.sum,
                seq: r.id.seq,
                lv,
                len: r.n,
                parent: r.parent,
                order: self.next_order,
            });
            self.next_order += 1;
            self.agents[r.agent as usize].entries.push(Entry {
                seq: r.id.seq,
                len: r.n,
                kind: Kind::Insert(run),
            });
            self.tree.insert(gap, Span::new(lv, r.n, run, false))
        };
        self.content.extend(r.text.chars());
        let n = r.n as u64;
        self.note_applied(r.agent, r.id.ssn, r.id.sum + n - 1, r.id.seq + n, n);
        if let Some(changes) = changes {
            let index = self.tree.vis_before(start) as usize;
            changes.push(Change::Insert {
                index,
                text: r.text.to_owned(),
            });
        }
        let last = self.tree.span(start.leaf, start.idx).len() - 1;
        Pos { off: last, ..start }
    }

    /// Appends a one-char delete to the last log record when that is a run of deletes by the same
    /// site right before it (same session, next seq and sum, target next to the previous one,
    /// nothing applied in between). Backspacing then costs no record at all.
    fn extend_delete_run(&mut self, agent: u32, id: &S4Vector, targets: &[LvRange]) -> bool {
        let [t] = targets else { return false };
        let Some(last) = self.deletes.last_mut() else {
            return false;
        };
        let k = last.ops() as u64;
        if t.len != 1
            || last.agent != agent
            || last.ssn != id.ssn
            || last.order + 1 != self.next_order
            || last.seq + k != id.seq
            || last.sum + k != id.sum
        {
            return false;
        }
        let lv = t.start;
        last.targets = match last.targets {
            DelTargets::Run {
                start,
                n,
                backwards: true,
            } if start.checked_sub(n) == Some(lv) => DelTargets::Run {
                start,
                n: n + 1,
                backwards: true,
            },
            DelTargets::Run {
                start,
                n,
                backwards: false,
            } if start + n == lv => DelTargets::Run {
                start,
                n: n + 1,
                backwards: false,
            },
            DelTargets::List { first, count: 1 } => {
                let prev = self.del_targets[first as usize];
                if prev.len != 1 || (lv + 1 != prev.start && lv != prev.start + 1) {
                    return false;
                }
                // The record's only target is the last one stored: it moves into the run.
                self.del_targets.truncate(first as usize);
                DelTargets::Run {
                    start: prev.start,
                    n: 2,
                    backwards: lv + 1 == prev.start,
                }
            }
            _ => return false,
        };
        if let Some(e) = self.agents[agent as usize].entries.last_mut() {
            e.len += 1;
        }
        true
    }

    /// Integrates a validated delete of `targets`.
    pub(crate) fn integrate_delete(
        &mut self,
        agent: u32,
        id: S4Vector,
        targets: &[LvRange],
        mut changes: Option<&mut Vec<Change>>,
    ) {
        let report_changes = changes.is_some();
        if !self.extend_delete_run(agent, &id, targets) {
            let d = self.deletes.len() as u32;
            self.deletes.push(DeleteRec {
                ssn: id.ssn,
                agent,
                sum: id.sum,
                seq: id.seq,
                order: self.next_order,
                targets: DelTargets::List {
                    first: self.del_targets.len() as u32,
                    count: targets.len() as u32,
                },
            });
            self.next_order += 1;
            self.del_targets.extend_from_slice(targets);
            self.agents[agent as usize].entries.push(Entry {
                seq: id.seq,
                len: 1,
                kind: Kind::Delete(d),
            });
        }
        let mut report = |index: u32, len: u32| {
            if let Some(c) = changes.as_deref_mut() {
                let (index, len) = (index as usize, len as usize);
                match c.last_mut() {
                    Some(Change::Delete { index: i, len: l }) if *i == index => *l += len,
                    _ => c.push(Change::Delete { index, len }),
                }
            }
        };
        let reporting = report_changes;
        for t in targets {
            self.tree.delete(
                t.start,
                t.len,
                if reporting { Some(&mut report) } else { None },
            );
        }
        self.note_applied(agent, id.ssn, id.sum, id.seq + 1, 1);
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
        let u = self.updates.len() as u32;
        self.updates.push(UpdateRec {
            ssn: id.ssn,
            agent,
            sum: id.sum,
            seq: id.seq,
            target: lv,
            value,
            order: self.next_order,
        });
        self.next_order += 1;
        self.agents[agent as usize].entries.push(Entry {
            seq: id.seq,
            len: 1,
            kind: Kind::Update(u),
        });
        self.note_applied(agent, id.ssn, id.sum, id.seq + 1, 1);
        let winner = self
            .values
            .get(&lv)
            .map(|v| v.0)
            .unwrap_or_else(|| self.char_prec(self.run_of(lv), lv));
        if id.precedence() <= winner {
            return;
        }
        let old = self.value(lv);
        self.values.insert(lv, (id.precedence(), value));
        let p = self.tree.find_lv(lv);
        // Last writer wins among visible characters; a tombstone keeps its value hidden.
        if let Some(changes) = changes
            && !self.tree.span(p.leaf, p.idx).deleted()
            && old != value
        {
            let index = self.tree.vis_before(p) as usize;
            changes.push(Change::Delete { index, len: 1 });
            changes.push(Change::Insert {
                index,
                text: value.to_string(),
            });
        }
    }
}

/// Id ranges with adjacent ones of the same site merged: the canonical form used to compare the
/// targets of two deletes.
fn merged_ranges(ranges: &[IdRange]) -> Vec<IdRange> {
    let mut out: Vec<IdRange> = Vec::with_capacity(ranges.len());
    for &r in ranges {
        match out.last_mut() {
            Some(last) if last.sid == r.sid && last.seq + last.len == r.seq => last.len += r.len,
            _ => out.push(r),
        }
    }
    out
}
