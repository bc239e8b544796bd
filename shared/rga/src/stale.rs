//! The document as it was at a past version `v`, for edits made against a stale copy
//! ([`Rga::splice`] with a base) and for [`Rga::text_at`].
//!
//! A character is visible at `v` when its insert is in `v` and no delete in `v` targets it. The
//! text at `v` differs from the current one only through the operations outside `v`: characters
//! they inserted that are visible now ("minus": hidden at `v`), and characters in `v` that only
//! they deleted ("plus": visible at `v`, tombstones now). So a past view is the current tree plus
//! a sorted list of those fragments, found from the `k` operations outside `v` in O(k log n)
//! (each one's characters are found by identifier), never by a pass over the document. Whether a
//! tombstone was deleted at `v` needs how many deletes target it: one, unless the log lists it in
//! `deleted_again`.

use rustc_hash::FxHashMap;

use crate::error::EditError;
use crate::id::{Precedence, S4Vector, SiteId};
use crate::log::{DelTargets, Kind, LvRange, Rec};
use crate::op::{Change, Op, Splice};
use crate::replica::Rga;
use crate::tree::Pos;
use crate::version::VersionVector;

/// An lv range (within one run) whose visibility at the past version differs from now.
#[derive(Clone, Copy, Debug)]
struct Differs {
    lv: u32,
    len: u32,
    /// A tombstone now, visible at the past version ("plus"); else visible now, hidden then.
    plus: bool,
}

/// A piece of a [`Differs`] range that is contiguous in document order.
#[derive(Clone, Copy, Debug)]
struct Frag {
    /// The visible index now: of its first char, or, for a tombstone, of the next visible char.
    key: u32,
    lv: u32,
    len: u32,
    plus: bool,
    pos: Pos,
}

/// A stretch of the past text: current visible chars, or tombstones visible at the past version.
#[derive(Clone, Copy, Debug)]
enum Segment {
    Current { index: u32, len: u32 },
    Plus { lv: u32, len: u32 },
}

/// The text at a past version, as fragments that differ from the current text. See the module
/// docs.
#[derive(Clone, Debug)]
pub(crate) struct PastView {
    differs: Vec<Differs>,
    frags: Vec<Frag>,
    /// The tree's edit counter the fragments were computed at.
    edits: u64,
}

impl PastView {
    /// Length of the text at the past version, in chars.
    pub fn len(&self, rga: &Rga) -> usize {
        let mut len = rga.len() as i64;
        for f in &self.frags {
            len += if f.plus {
                f.len as i64
            } else {
                -(f.len as i64)
            };
        }
        len as usize
    }

    /// Recomputes the fragments' places after the tree changed.
    fn refresh(&mut self, rga: &Rga) {
        if self.edits == rga.tree.edits() {
            return;
        }
        self.frags.clear();
        for d in &self.differs {
            let end = d.lv + d.len;
            let mut at = d.lv;
            while at < end {
                let pos = rga.tree.find_lv(at);
                let s = rga.tree.span(pos.leaf, pos.idx);
                let len = s.end().min(end) - at;
                self.frags.push(Frag {
                    key: rga.tree.vis_before(pos),
                    lv: at,
                    len,
                    plus: d.plus,
                    pos,
                });
                at += len;
            }
        }
        let tree = &rga.tree;
        self.frags.sort_by(|a, b| {
            a.key
                .cmp(&b.key)
                .then(b.plus.cmp(&a.plus))
                .then_with(|| tree.cmp_pos(a.pos, b.pos))
        });
        self.edits = rga.tree.edits();
    }

    /// The stretches making up past-text positions `index .. index + len`, in order.
    fn segments(&self, index: usize, len: usize) -> Vec<Segment> {
        let mut out = Vec::new();
        let (mut j, mut left) = (index as i64, len as i64);
        let mut shift = 0i64;
        let current = |j: &mut i64, left: &mut i64, upto: i64, shift: i64, out: &mut Vec<_>| {
            let take = (*left).min(upto - *j);
            if take > 0 {
                out.push(Segment::Current {
                    index: (*j - shift) as u32,
                    len: take as u32,
                });
                *j += take;
                *left -= take;
            }
        };
        for f in &self.frags {
            if left == 0 {
                return out;
            }
            let at = f.key as i64 + shift;
            current(&mut j, &mut left, at, shift, &mut out);
            if left == 0 {
                return out;
            }
            if f.plus {
                let off = j - at;
                if off < f.len as i64 {
                    let take = left.min(f.len as i64 - off);
                    out.push(Segment::Plus {
                        lv: f.lv + off as u32,
                        len: take as u32,
                    });
                    j += take;
                    left -= take;
                }
                shift += f.len as i64;
            } else {
                shift -= f.len as i64;
            }
        }
        current(&mut j, &mut left, i64::MAX, shift, &mut out);
        out
    }

    /// The lv ranges (per run, in document order) of past-text positions `index .. index + len`.
    fn ranges(&self, rga: &Rga, index: usize, len: usize) -> Vec<LvRange> {
        let mut out: Vec<LvRange> = Vec::new();
        let mut last_run = u32::MAX;
        let mut push = |lv: u32, len: u32, run: u32, out: &mut Vec<LvRange>| {
            match out.last_mut() {
                Some(last) if last.end() == lv && last_run == run => last.len += len,
                _ => out.push(LvRange { start: lv, len }),
            }
            last_run = run;
        };
        for seg in self.segments(index, len) {
            match seg {
                Segment::Plus { lv, len } => {
                    // A plus stretch may cross runs: one range per run.
                    let mut at = lv;
                    while at < lv + len {
                        let r = rga.log.run_of(at);
                        let run = &rga.log.runs[r as usize];
                        let take = (run.lv + run.len).min(lv + len) - at;
                        push(at, take, r, &mut out);
                        at += take;
                    }
                }
                Segment::Current { index, len } => {
                    rga.visible_ranges(index, len, |lv, len, run| push(lv, len, run, &mut out))
                }
            }
        }
        out
    }

    /// The lv of the character at past-text position `index`.
    fn element(&self, rga: &Rga, index: usize) -> u32 {
        match self.segments(index, 1).first() {
            Some(Segment::Plus { lv, .. }) => *lv,
            Some(Segment::Current { index, .. }) => {
                let p = rga.tree.find_vis(*index);
                rga.tree.span(p.leaf, p.idx).lv + p.off
            }
            None => crate::tree::broken("a past position without an element"),
        }
    }

    /// Tombstones now deleted at the past version too (the edit's own delete) no longer differ.
    fn forget_plus(&mut self, deleted: &[LvRange]) {
        let mut kept = Vec::with_capacity(self.differs.len());
        for d in self.differs.drain(..) {
            if !d.plus {
                kept.push(d);
                continue;
            }
            let mut pieces = vec![(d.lv, d.lv + d.len)];
            for t in deleted {
                pieces = pieces
                    .into_iter()
                    .flat_map(|(a, b)| {
                        let (x, y) = (t.start.max(a), t.end().min(b));
                        if x >= y {
                            vec![(a, b)]
                        } else {
                            [(a, x), (y, b)].into_iter().filter(|p| p.0 < p.1).collect()
                        }
                    })
                    .collect();
            }
            kept.extend(pieces.into_iter().map(|(a, b)| Differs {
                lv: a,
                len: b - a,
                plus: true,
            }));
        }
        self.differs = kept;
        self.edits = u64::MAX;
    }
}

impl Rga {
    /// The log records (with the offset of their first op outside `v`) of every operation
    /// applied here that `v` lacks.
    fn records_after(&self, v: &VersionVector) -> Vec<(Kind, u64)> {
        let mut out = Vec::new();
        for agent in &self.log.agents {
            let from = v.get(agent.sid).saturating_add(1);
            if from >= agent.next_seq {
                continue;
            }
            let i = agent.entries.partition_point(|e| e.end() <= from);
            for e in &agent.entries[i..] {
                out.push((e.kind, from.saturating_sub(e.seq)));
            }
        }
        out
    }

    /// The past view at `v` (which must have been received here).
    pub(crate) fn past_view(&self, v: &VersionVector) -> PastView {
        let mut differs = Vec::new();
        // Tombstones the operations outside `v` deleted whose inserts are in `v`.
        let mut candidates: Vec<LvRange> = Vec::new();
        for (kind, off) in self.records_after(v) {
            match kind.rec() {
                Rec::Insert(r) => {
                    let run = &self.log.runs[r as usize];
                    let (from, end) = (run.lv + off as u32, run.lv + run.len);
                    self.each_piece(from, end, |lv, len, deleted| {
                        if !deleted {
                            differs.push(Differs {
                                lv,
                                len,
                                plus: false,
                            });
                        }
                    });
                }
                Rec::Delete(d) => {
                    let rec = &self.log.deletes[d as usize];
                    match rec.targets {
                        DelTargets::Run {
                            start,
                            n,
                            backwards,
                        } => {
                            // Deletes `off..n` of a run target one contiguous lv range.
                            let (lo, hi) = if backwards {
                                (start + 1 - n, start - off as u32)
                            } else {
                                (start + off as u32, start + n - 1)
                            };
                            self.in_version(v, lo, hi + 1 - lo, &mut candidates);
                        }
                        DelTargets::List { .. } => {
                            for t in self.log.delete_targets(rec, 0).as_slice() {
                                self.in_version(v, t.start, t.len, &mut candidates);
                            }
                        }
                    }
                }
                Rec::Update(_) => {}
            }
        }
        // A tombstone deleted once was visible at `v` (its only delete is outside `v`); one that
        // several deletes target was visible only if all of them are outside `v`.
        let mut plus: Vec<(u32, u32)> = Vec::with_capacity(candidates.len());
        if self.log.deleted_again.is_empty() {
            plus.extend(candidates.iter().map(|c| (c.start, c.end())));
        } else {
            let mut again: FxHashMap<u32, u32> = FxHashMap::default();
            for c in &candidates {
                let mut at = c.start;
                for (&lv, _) in self.log.deleted_again.range(c.start..c.end()) {
                    if lv > at {
                        plus.push((at, lv));
                    }
                    *again.entry(lv).or_default() += 1;
                    at = lv + 1;
                }
                if at < c.end() {
                    plus.push((at, c.end()));
                }
            }
            for (lv, outside) in again {
                if self.log.deleted_again.get(&lv) == Some(&outside) {
                    plus.push((lv, lv + 1));
                }
            }
        }
        plus.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(plus.len());
        for (a, b) in plus {
            match merged.last_mut() {
                Some(last) if last.1 >= a => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        differs.extend(merged.into_iter().map(|(a, b)| Differs {
            lv: a,
            len: b - a,
            plus: true,
        }));
        let mut view = PastView {
            differs,
            frags: Vec::new(),
            edits: u64::MAX,
        };
        view.refresh(self);
        view
    }

    /// Appends to `out` the parts of lvs `lv .. lv + len` whose inserts are in `v` (a prefix of
    /// each run's part, since a run's seqs rise with its lvs).
    fn in_version(&self, v: &VersionVector, lv: u32, len: u32, out: &mut Vec<LvRange>) {
        let end = lv + len;
        let mut at = lv;
        let mut r = self.log.run_of(at) as usize;
        while at < end {
            let run = &self.log.runs[r];
            let run_end = (run.lv + run.len).min(end);
            let seq = run.seq + (at - run.lv) as u64;
            let have = v.get(self.log.agents[run.agent as usize].sid);
            let in_v = have
                .saturating_add(1)
                .saturating_sub(seq)
                .min((run_end - at) as u64);
            if in_v > 0 {
                out.push(LvRange {
                    start: at,
                    len: in_v as u32,
                });
            }
            at = run_end;
            r += 1;
        }
    }

    /// Calls `f(lv, len, deleted)` for each piece of lvs `from .. end` (one run) that is
    /// contiguous in the tree.
    fn each_piece(&self, from: u32, end: u32, mut f: impl FnMut(u32, u32, bool)) {
        let mut at = from;
        while at < end {
            let p = self.tree.find_lv(at);
            let s = self.tree.span(p.leaf, p.idx);
            let len = s.end().min(end) - at;
            f(at, len, s.deleted());
            at += len;
        }
    }

    /// Calls `f(lv, len)` for the lv ranges (one per span piece, document order) of the visible
    /// chars `index .. index + len`.
    pub(crate) fn visible_ranges(
        &self,
        index: u32,
        mut len: u32,
        mut f: impl FnMut(u32, u32, u32),
    ) {
        if len == 0 {
            return;
        }
        let mut p = self.tree.find_vis(index);
        loop {
            let s = self.tree.span(p.leaf, p.idx);
            let take = (s.len() - p.off).min(len);
            f(s.lv + p.off, take, s.run);
            len -= take;
            if len == 0 {
                return;
            }
            let mut gap = Pos {
                leaf: p.leaf,
                idx: p.idx + 1,
                off: 0,
            };
            loop {
                let Some(at) = self.tree.element_after(gap) else {
                    return;
                };
                if !self.tree.span(at.leaf, at.idx).deleted() {
                    p = at;
                    break;
                }
                gap = Pos {
                    idx: at.idx + 1,
                    ..at
                };
            }
        }
    }

    /// The S4Vector of the next op of `site` issued with causal past `v`, whose causes have
    /// highest sum `causes`.
    fn past_id(&self, site: SiteId, v: &VersionVector, causes: u64) -> S4Vector {
        let own = self
            .log
            .agent_of(site)
            .and_then(|a| self.log.agents[a as usize].last)
            .map_or(0, |l| l.1);
        let sum = self
            .log
            .sum_for(v)
            .min(causes.max(own).saturating_add(self.limits.max_sum_step));
        S4Vector {
            ssn: self.ssn,
            sum,
            sid: site,
            seq: self.next_seq(site),
        }
    }

    /// Applies `splices` against the past view of `v` (see [`Rga::splice`]); returns the version
    /// of the editor's copy afterwards.
    pub(crate) fn splice_past(
        &mut self,
        site: SiteId,
        mut v: VersionVector,
        mut view: PastView,
        splices: &[Splice],
        changes: &mut Vec<Change>,
    ) -> Result<VersionVector, EditError> {
        for s in splices {
            view.refresh(self);
            let n = s.insert.chars().count() as u64;
            // Both from the same view: the reference lies before the deleted range, so the
            // delete does not move it.
            let targets = (s.delete > 0).then(|| view.ranges(self, s.index, s.delete));
            let after = (n > 0 && s.index > 0).then(|| {
                let lv = view.element(self, s.index - 1);
                self.log.char_s4(self.log.run_of(lv), lv)
            });
            if let Some(targets) = targets {
                // As many ops as the op-size limit requires (chars plus ranges per op).
                let budget = self.limits.max_op_len.max(2);
                for chunk in split_targets(&targets, budget) {
                    let top = chunk
                        .iter()
                        .map(|t| {
                            self.log
                                .char_prec(self.log.run_of(t.end() - 1), t.end() - 1)
                                .sum
                        })
                        .max()
                        .unwrap_or(0);
                    let id = self.past_id(site, &v, top);
                    let op = Op::Delete {
                        id,
                        targets: chunk.iter().map(|&t| self.log.lv_range_ids(t)).collect(),
                    };
                    self.integrate(op, 1, Some(changes))?;
                    v.set(site, id.seq);
                }
                view.forget_plus(&targets);
            }
            if n > 0 {
                let id = self.past_id(site, &v, after.map_or(0, |a| a.sum));
                let op = Op::Insert {
                    id,
                    after,
                    text: s.insert.clone(),
                };
                self.integrate(op, n, Some(changes))?;
                v.set(site, id.seq + n - 1);
            }
        }
        Ok(v)
    }

    /// The text as it was at version `v` (which need not have been received in full: operations
    /// of `v` not received here are simply absent). Costs a pass over the document.
    pub fn text_at(&self, v: &VersionVector) -> String {
        let sid = |agent: u32| self.log.agents[agent as usize].sid;
        let mut deleted = vec![false; self.content.len() as usize];
        for d in &self.log.deletes {
            let limit = v.get(sid(d.agent));
            for k in 0..d.ops() {
                if d.seq + k as u64 > limit {
                    break;
                }
                for t in self.log.delete_targets(d, k).as_slice() {
                    deleted[t.start as usize..t.end() as usize].fill(true);
                }
            }
        }
        let mut values: FxHashMap<u32, (Precedence, char)> = FxHashMap::default();
        for u in &self.log.updates {
            if u.seq <= v.get(sid(u.agent)) {
                let p = Precedence {
                    ssn: u.ssn,
                    sum: u.sum,
                    sid: sid(u.agent),
                };
                let e = values.entry(u.target).or_insert((p, u.value));
                if p > e.0 {
                    *e = (p, u.value);
                }
            }
        }
        let mut out = String::new();
        for s in self.tree.spans() {
            let run = &self.log.runs[s.run as usize];
            let limit = v.get(sid(run.agent));
            let first_seq = run.seq + (s.lv - run.lv) as u64;
            for (k, lv) in (s.lv..s.end()).enumerate() {
                if first_seq + k as u64 <= limit && !deleted[lv as usize] {
                    out.push(values.get(&lv).map_or(self.content.get(lv), |v| v.1));
                }
            }
        }
        out
    }
}

/// Cuts `targets` into groups of at most `budget` chars plus ranges each (a range split where a
/// group fills up).
fn split_targets(targets: &[LvRange], budget: u64) -> Vec<Vec<LvRange>> {
    let mut out: Vec<Vec<LvRange>> = vec![Vec::new()];
    let mut used = 0u64;
    for &t in targets {
        let mut t = t;
        while t.len > 0 {
            if used + 2 > budget {
                out.push(Vec::new());
                used = 0;
            }
            let take = (budget - used - 1).min(t.len as u64) as u32;
            if let Some(g) = out.last_mut() {
                g.push(LvRange {
                    start: t.start,
                    len: take,
                });
            }
            used += take as u64 + 1;
            t = LvRange {
                start: t.start + take,
                len: t.len - take,
            };
        }
    }
    out.retain(|g| !g.is_empty());
    out
}
