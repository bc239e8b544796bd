//! The operation log a replica keeps: insert runs (their text is in [`Content`]), deletes and
//! updates in application order, each site's operations in sequence order, and catch-up
//! ([`Log::ops_since`]).
//!
//! Every inserted character has a local version `lv`: its index in [`Content`], assigned in
//! arrival order. Insert runs cover consecutive lvs and are stored in lv order, so the run of an
//! lv is found by binary search. Each site's entries cover its sequence numbers `1..next_seq`
//! without gaps, because a replica applies a site's operations in order. Every record carries its
//! position in application order (`order`), which respects causality, so sorting records by it
//! gives an order in which peers can apply them.
//!
//! Invariants (checked by `Rga::assert_invariants`): runs tile the lvs; each site's entries are
//! contiguous from seq 1 with rising precedence; `clock_total` is the number of operations
//! applied and `max_sum` the highest sum among them.

use std::cell::Cell;
use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::content::Content;
use crate::id::{CharId, IdRange, Precedence, S4Vector, SiteId};
use crate::op::Op;
use crate::tree::NONE;
use crate::version::VersionVector;

/// A run of characters inserted by one operation (or by consecutive operations that continue it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InsertRun {
    pub sum: u64,
    pub seq: u64,
    pub ssn: u32,
    pub agent: u32,
    pub lv: u32,
    pub len: u32,
    /// The lv of the character the run was inserted after, or `NONE` for the head.
    pub parent: u32,
    /// Position in this replica's application order.
    pub order: u32,
}

/// A contiguous range of lvs within one insert run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LvRange {
    pub start: u32,
    pub len: u32,
}

impl LvRange {
    pub fn end(self) -> u32 {
        self.start + self.len
    }
}

/// A delete, or a run of one-char deletes by one site with consecutive sequence numbers and
/// sums whose targets are adjacent (backspacing or forward-deleting): delete `k` of a run has
/// S4Vector `(ssn, sum + k, sid, seq + k)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeleteRec {
    pub sum: u64,
    pub seq: u64,
    pub ssn: u32,
    pub agent: u32,
    pub order: u32,
    pub targets: DelTargets,
}

/// The targets of a [`DeleteRec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DelTargets {
    /// One delete: targets `Log::del_targets[first .. first + count]`.
    List { first: u32, count: u32 },
    /// `n` deletes; delete `k` targets the char `start - k` (backwards) or `start + k`.
    Run { start: u32, n: u32, backwards: bool },
}

impl DeleteRec {
    /// How many deletes the record holds.
    pub fn ops(&self) -> u32 {
        match self.targets {
            DelTargets::List { .. } => 1,
            DelTargets::Run { n, .. } => n,
        }
    }
}

/// The targets of one delete: a slice of `del_targets` or the single char of a run's delete.
pub(crate) enum Targets<'a> {
    Slice(&'a [LvRange]),
    One([LvRange; 1]),
}

impl Targets<'_> {
    pub fn as_slice(&self) -> &[LvRange] {
        match self {
            Targets::Slice(s) => s,
            Targets::One(a) => a,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UpdateRec {
    pub sum: u64,
    pub seq: u64,
    pub ssn: u32,
    pub agent: u32,
    pub target: u32,
    pub value: char,
    pub order: u32,
}

/// A log record: its kind and its index in `runs`, `deletes` or `updates`, packed in 32 bits
/// (the kind in the top two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kind(u32);

/// [`Kind`] unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rec {
    Insert(u32),
    Delete(u32),
    Update(u32),
}

/// Records of one kind a log may hold (the index must fit beside the kind's two bits).
pub(crate) const MAX_RECORDS: u32 = (1 << 30) - 1;

impl Kind {
    const SHIFT: u32 = 30;
    pub fn new(rec: Rec) -> Self {
        match rec {
            Rec::Insert(i) => Kind(i),
            Rec::Delete(i) => Kind(i | 1 << Self::SHIFT),
            Rec::Update(i) => Kind(i | 2 << Self::SHIFT),
        }
    }
    #[inline]
    pub fn rec(self) -> Rec {
        let i = self.0 & MAX_RECORDS;
        match self.0 >> Self::SHIFT {
            0 => Rec::Insert(i),
            1 => Rec::Delete(i),
            _ => Rec::Update(i),
        }
    }
}

/// Operations `seq .. seq + len` of a site, all from one log record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub seq: u64,
    pub len: u32,
    pub kind: Kind,
}

impl Entry {
    pub fn end(&self) -> u64 {
        self.seq + self.len as u64
    }
}

/// A site known to the replica.
#[derive(Clone, Debug)]
pub(crate) struct Agent {
    pub sid: SiteId,
    /// The next sequence number expected from this site.
    pub next_seq: u64,
    /// Precedence of the site's latest operation (its last character for a run).
    pub last: Option<(u32, u64)>,
    pub entries: Vec<Entry>,
    /// The entry found last: lookups by identifier tend to stay in one place (a run of deletes
    /// of adjacent characters), so they try it first.
    pub hint: Cell<u32>,
}

/// The log. See the module docs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Log {
    pub agents: Vec<Agent>,
    pub sites: FxHashMap<SiteId, u32>,
    /// The site used last, with its agent index (most operations come from one site in a row).
    last_agent: Cell<Option<(SiteId, u32)>>,
    pub runs: Vec<InsertRun>,
    pub deletes: Vec<DeleteRec>,
    pub del_targets: Vec<LvRange>,
    pub updates: Vec<UpdateRec>,
    /// Characters targeted by more than one delete (concurrent deletes): lv → number of deletes.
    /// Every other tombstone was deleted exactly once. Edits against a past version need this to
    /// tell whether a character was deleted at that version.
    pub deleted_again: BTreeMap<u32, u32>,
    pub next_order: u32,
    /// The run found last by [`Log::run_of`]: lookups come in runs in one place.
    run_hint: Cell<u32>,
    /// Σ v[k] over this replica's version vector: the operations applied.
    pub clock_total: u64,
    /// Highest sum of any applied operation.
    pub max_sum: u64,
}

impl Log {
    pub fn agent_of(&self, site: SiteId) -> Option<u32> {
        if let Some((s, a)) = self.last_agent.get()
            && s == site
        {
            return Some(a);
        }
        let a = self.sites.get(&site).copied()?;
        self.last_agent.set(Some((site, a)));
        Some(a)
    }

    pub fn agent_or_new(&mut self, site: SiteId) -> u32 {
        if let Some(a) = self.agent_of(site) {
            return a;
        }
        let a = self.agents.len() as u32;
        self.agents.push(Agent {
            sid: site,
            next_seq: 1,
            last: None,
            entries: Vec::new(),
            hint: Cell::new(0),
        });
        self.sites.insert(site, a);
        self.last_agent.set(Some((site, a)));
        a
    }

    /// Adds a site read from a snapshot; `false` if it is listed already.
    pub fn add_site(&mut self, sid: SiteId) -> bool {
        if self.sites.insert(sid, self.agents.len() as u32).is_some() {
            return false;
        }
        self.agents.push(Agent {
            sid,
            next_seq: 1,
            last: None,
            entries: Vec::new(),
            hint: Cell::new(0),
        });
        true
    }

    /// The next sequence number this replica expects from `site`.
    pub fn next_seq(&self, site: SiteId) -> u64 {
        self.agent_of(site)
            .map_or(1, |a| self.agents[a as usize].next_seq)
    }

    /// Whether the operation `id` has been applied.
    pub fn contains(&self, id: CharId) -> bool {
        id.seq >= 1 && id.seq < self.next_seq(id.sid)
    }

    /// The log entry holding operation `seq` of `agent`, and the offset of `seq` in it.
    #[inline]
    pub fn entry_at(&self, agent: u32, seq: u64) -> Option<(Entry, u64)> {
        let a = &self.agents[agent as usize];
        let entries = &a.entries;
        // Most lookups are of a site's latest operations, or near the previous lookup.
        if let Some(last) = entries.last()
            && seq >= last.seq
        {
            return (seq < last.end()).then(|| (*last, seq - last.seq));
        }
        let hint = a.hint.get() as usize;
        if let Some(e) = entries.get(hint)
            && e.seq <= seq
            && seq < e.end()
        {
            return Some((*e, seq - e.seq));
        }
        let i = entries.partition_point(|e| e.end() <= seq);
        let e = entries.get(i).filter(|e| e.seq <= seq)?;
        a.hint.set(i as u32);
        Some((*e, seq - e.seq))
    }

    /// The run and lv of the character `id`: `Ok(None)` if not received yet, `Err(())` if `id` is
    /// an operation that is not an insert.
    pub fn char_at(&self, id: CharId) -> Result<Option<(u32, u32)>, ()> {
        let Some(agent) = self.agent_of(id.sid) else {
            return Ok(None);
        };
        match self.entry_at(agent, id.seq) {
            None => Ok(None),
            Some((e, off)) => match e.kind.rec() {
                Rec::Insert(r) => Ok(Some((r, self.runs[r as usize].lv + off as u32))),
                _ => Err(()),
            },
        }
    }

    /// The insert run holding `lv`.
    #[inline]
    pub fn run_of(&self, lv: u32) -> u32 {
        let hint = self.run_hint.get();
        if let Some(r) = self.runs.get(hint as usize)
            && r.lv <= lv
            && lv < r.lv + r.len
        {
            return hint;
        }
        let run = self.runs.partition_point(|r| r.lv + r.len <= lv) as u32;
        self.run_hint.set(run);
        run
    }

    /// The S4Vector of the character at `lv` of run `run`.
    #[inline]
    pub fn char_s4(&self, run: u32, lv: u32) -> S4Vector {
        let r = &self.runs[run as usize];
        let k = (lv - r.lv) as u64;
        S4Vector {
            ssn: r.ssn,
            sum: r.sum + k,
            sid: self.agents[r.agent as usize].sid,
            seq: r.seq + k,
        }
    }

    /// The precedence of the character at `lv` of run `run`.
    #[inline]
    pub fn char_prec(&self, run: u32, lv: u32) -> Precedence {
        let r = &self.runs[run as usize];
        Precedence {
            ssn: r.ssn,
            sum: r.sum + (lv - r.lv) as u64,
            sid: self.agents[r.agent as usize].sid,
        }
    }

    /// The lv the character at `lv` was inserted after (`NONE` for the head).
    pub fn parent_of(&self, run: u32, lv: u32) -> u32 {
        let r = &self.runs[run as usize];
        if lv == r.lv { r.parent } else { lv - 1 }
    }

    /// The S4Vector of operation `seq` of `agent`, if applied.
    pub fn op_s4(&self, agent: u32, seq: u64) -> Option<S4Vector> {
        let (e, off) = self.entry_at(agent, seq)?;
        let sid = self.agents[agent as usize].sid;
        let (ssn, sum) = match e.kind.rec() {
            Rec::Insert(r) => {
                let r = &self.runs[r as usize];
                (r.ssn, r.sum + off)
            }
            Rec::Delete(d) => {
                let d = &self.deletes[d as usize];
                (d.ssn, d.sum + off)
            }
            Rec::Update(u) => {
                let u = &self.updates[u as usize];
                (u.ssn, u.sum)
            }
        };
        Some(S4Vector { ssn, sum, sid, seq })
    }

    /// The version vector: every site's highest applied sequence number.
    pub fn version(&self) -> VersionVector {
        self.agents
            .iter()
            .map(|a| (a.sid, a.next_seq - 1))
            .collect()
    }

    /// Converts an lv range (within one run) to the identifiers of its characters.
    pub fn lv_range_ids(&self, r: LvRange) -> IdRange {
        let run = self.run_of(r.start);
        let s4 = self.char_s4(run, r.start);
        IdRange {
            sid: s4.sid,
            seq: s4.seq,
            len: r.len as u64,
        }
    }

    /// The targets of delete `k` of record `d`.
    pub fn delete_targets(&self, d: &DeleteRec, k: u32) -> Targets<'_> {
        match d.targets {
            DelTargets::List { first, count } => {
                Targets::Slice(&self.del_targets[first as usize..(first + count) as usize])
            }
            DelTargets::Run {
                start, backwards, ..
            } => {
                let lv = if backwards { start - k } else { start + k };
                Targets::One([LvRange { start: lv, len: 1 }])
            }
        }
    }

    /// Appends the operations of log record `kind` from offset `off` on (each delete of a delete
    /// run is an operation of its own; insert runs longer than `max_len` go out in pieces).
    pub fn push_ops(
        &self,
        content: &Content,
        kind: Kind,
        off: u64,
        max_len: u64,
        out: &mut Vec<Op>,
    ) {
        match kind.rec() {
            Rec::Insert(r) => {
                let run = &self.runs[r as usize];
                let max_len = max_len.clamp(1, u32::MAX as u64) as u32;
                let mut from = run.lv + off as u32;
                let end = run.lv + run.len;
                while from < end {
                    let to = end.min(from.saturating_add(max_len));
                    let after = if from == run.lv {
                        (run.parent != NONE)
                            .then(|| self.char_s4(self.run_of(run.parent), run.parent))
                    } else {
                        Some(self.char_s4(r, from - 1))
                    };
                    out.push(Op::Insert {
                        id: self.char_s4(r, from),
                        after,
                        text: content.string(from, to),
                    });
                    from = to;
                }
            }
            Rec::Delete(d) => {
                let rec = &self.deletes[d as usize];
                let sid = self.agents[rec.agent as usize].sid;
                for k in off..rec.ops() as u64 {
                    let ids: Vec<IdRange> = self
                        .delete_targets(rec, k as u32)
                        .as_slice()
                        .iter()
                        .map(|&t| self.lv_range_ids(t))
                        .collect();
                    // Lv ranges are cut at run boundaries; the op as sent was not.
                    let targets = if ids.len() > 1 {
                        crate::apply::normalized(&ids)
                    } else {
                        ids
                    };
                    out.push(Op::Delete {
                        id: S4Vector {
                            ssn: rec.ssn,
                            sum: rec.sum + k,
                            sid,
                            seq: rec.seq + k,
                        },
                        targets,
                    });
                }
            }
            Rec::Update(u) => {
                let u = &self.updates[u as usize];
                let sid = self.agents[u.agent as usize].sid;
                let target = self.char_s4(self.run_of(u.target), u.target).id();
                out.push(Op::Update {
                    id: S4Vector {
                        ssn: u.ssn,
                        sum: u.sum,
                        sid,
                        seq: u.seq,
                    },
                    target,
                    value: u.value,
                });
            }
        }
    }

    /// The application-order position of record `kind`.
    pub fn order_of(&self, kind: Kind) -> u32 {
        match kind.rec() {
            Rec::Insert(r) => self.runs[r as usize].order,
            Rec::Delete(d) => self.deletes[d as usize].order,
            Rec::Update(u) => self.updates[u as usize].order,
        }
    }

    /// Every applied operation that `version` lacks, in an order in which they can be applied
    /// (causes first), run-length merged, no insert longer than `max_len` chars.
    pub fn ops_since(&self, content: &Content, version: &VersionVector, max_len: u64) -> Vec<Op> {
        let mut picks: Vec<(u32, Kind, u64)> = Vec::new();
        for agent in &self.agents {
            let from = version.get(agent.sid).saturating_add(1);
            if from >= agent.next_seq {
                continue;
            }
            let i = agent.entries.partition_point(|e| e.end() <= from);
            for e in &agent.entries[i..] {
                picks.push((self.order_of(e.kind), e.kind, from.saturating_sub(e.seq)));
            }
        }
        picks.sort_unstable_by_key(|p| p.0);
        let mut out = Vec::with_capacity(picks.len());
        for (_, kind, off) in picks {
            self.push_ops(content, kind, off, max_len, &mut out);
        }
        out
    }

    /// The operations of `site` from sequence number `from` on.
    pub fn ops_of_site_since(
        &self,
        content: &Content,
        site: SiteId,
        from: u64,
        max_len: u64,
    ) -> Vec<Op> {
        let Some(agent) = self.agent_of(site) else {
            return Vec::new();
        };
        let entries = &self.agents[agent as usize].entries;
        let i = entries.partition_point(|e| e.end() <= from);
        let mut out = Vec::new();
        for e in &entries[i..] {
            self.push_ops(
                content,
                e.kind,
                from.saturating_sub(e.seq),
                max_len,
                &mut out,
            );
        }
        out
    }

    /// `max(Σ v, highest sum of any operation in v) + 1`: the sum of an operation issued with
    /// exactly `v` as its causal past. For a causally closed `v` this is the paper's `Σ v + 1`;
    /// the max makes it exceed every operation in `v` even if `v` is not closed.
    pub fn sum_for(&self, v: &VersionVector) -> u64 {
        let mut max = v.total();
        for (site, seq) in v.iter() {
            if let Some(a) = self.agent_of(site)
                && let Some(s4) = self.op_s4(a, seq.min(self.agents[a as usize].next_seq - 1))
            {
                max = max.max(s4.sum);
            }
        }
        max.saturating_add(1)
    }

    /// Records that `agent` applied operations up to `next_seq - 1`, the last with `(ssn, sum)`.
    pub fn note_applied(&mut self, agent: u32, ssn: u32, sum: u64, next_seq: u64, count: u64) {
        let a = &mut self.agents[agent as usize];
        a.next_seq = next_seq;
        a.last = Some((ssn, sum));
        self.clock_total += count;
        self.max_sum = self.max_sum.max(sum);
    }

    /// Appends a new insert run of `len` chars at lv `lv` and its entry.
    pub fn push_run(&mut self, agent: u32, id: S4Vector, lv: u32, len: u32, parent: u32) -> u32 {
        let run = self.runs.len() as u32;
        self.runs.push(InsertRun {
            sum: id.sum,
            seq: id.seq,
            ssn: id.ssn,
            agent,
            lv,
            len,
            parent,
            order: self.next_order,
        });
        self.next_order += 1;
        self.agents[agent as usize].entries.push(Entry {
            seq: id.seq,
            len,
            kind: Kind::new(Rec::Insert(run)),
        });
        self.note_applied(
            agent,
            id.ssn,
            id.sum + len as u64 - 1,
            id.seq + len as u64,
            len as u64,
        );
        run
    }

    /// Whether a run of `agent` starting with S4Vector `id` right after lv `parent` continues
    /// the last run (same site and session, next seq and sum, placed right after its end).
    pub fn continues_last_run(&self, agent: u32, id: &S4Vector, parent: u32, lv: u32) -> bool {
        self.runs.last().is_some_and(|last| {
            parent + 1 == lv
                && last.lv + last.len == lv
                && last.agent == agent
                && last.ssn == id.ssn
                && last.seq + last.len as u64 == id.seq
                && last.sum + last.len as u64 == id.sum
        })
    }

    /// Grows the last run (see [`Log::continues_last_run`]) by `n` chars.
    pub fn extend_last_run(&mut self, agent: u32, id: &S4Vector, n: u32) {
        if let Some(last) = self.runs.last_mut() {
            last.len += n;
        }
        if let Some(e) = self.agents[agent as usize].entries.last_mut() {
            e.len += n;
        }
        let n = n as u64;
        self.note_applied(agent, id.ssn, id.sum + n - 1, id.seq + n, n);
    }

    /// Records a delete of `targets` (lv ranges) with S4Vector `id`, folding a one-char delete
    /// into the last record when it continues a run of them.
    pub fn push_delete(&mut self, agent: u32, id: S4Vector, targets: &[LvRange]) {
        if !self.extend_delete_run(agent, &id, targets) {
            let d = self.deletes.len() as u32;
            self.deletes.push(DeleteRec {
                sum: id.sum,
                seq: id.seq,
                ssn: id.ssn,
                agent,
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
                kind: Kind::new(Rec::Delete(d)),
            });
        }
        self.note_applied(agent, id.ssn, id.sum, id.seq + 1, 1);
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

    /// Records an update of the character at `lv`.
    pub fn push_update(&mut self, agent: u32, id: S4Vector, lv: u32, value: char) {
        let u = self.updates.len() as u32;
        self.updates.push(UpdateRec {
            sum: id.sum,
            seq: id.seq,
            ssn: id.ssn,
            agent,
            target: lv,
            value,
            order: self.next_order,
        });
        self.next_order += 1;
        self.agents[agent as usize].entries.push(Entry {
            seq: id.seq,
            len: 1,
            kind: Kind::new(Rec::Update(u)),
        });
        self.note_applied(agent, id.ssn, id.sum, id.seq + 1, 1);
    }

    /// Records read so far from each vector, for the limit on records.
    pub fn records(&self) -> usize {
        self.runs
            .len()
            .max(self.deletes.len())
            .max(self.updates.len())
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.agents.capacity() * std::mem::size_of::<Agent>()
            + self
                .agents
                .iter()
                .map(|a| a.entries.capacity() * std::mem::size_of::<Entry>())
                .sum::<usize>()
            + self.sites.capacity() * 16
            + self.runs.capacity() * std::mem::size_of::<InsertRun>()
            + self.deletes.capacity() * std::mem::size_of::<DeleteRec>()
            + self.del_targets.capacity() * std::mem::size_of::<LvRange>()
            + self.updates.capacity() * std::mem::size_of::<UpdateRec>()
            + self.deleted_again.len() * 16
    }

    /// Gives back spare capacity (after decoding).
    pub fn shrink_to_fit(&mut self) {
        for a in &mut self.agents {
            a.entries.shrink_to_fit();
        }
        self.agents.shrink_to_fit();
        self.runs.shrink_to_fit();
        self.deletes.shrink_to_fit();
        self.del_targets.shrink_to_fit();
        self.updates.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_kinds_pack_into_32_bits() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
        for rec in [Rec::Insert(0), Rec::Delete(7), Rec::Update(MAX_RECORDS)] {
            assert_eq!(Kind::new(rec).rec(), rec);
        }
    }
}
