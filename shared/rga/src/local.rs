//! Local edits by index: they produce operations of the given site and apply them at once.
//!
//! At the current version a local operation sees every applied operation, so its sum exceeds
//! every known sum and an insert lands right after its reference, skipping nothing. Against a
//! past version `v` (see [`Rga::splice`] and `stale.rs`) indexes are resolved in the text as it
//! was at `v`, and the operations carry the S4Vectors of a site whose causal past is exactly `v`:
//! they are integrated like remote operations, concurrent with everything outside `v`.
//!
//! Local edits never produce operations that peers refuse: every identifier is computed with
//! checked arithmetic and stays within [`Limits::max_id`](crate::Limits::max_id), a sum never
//! jumps further above the op's causes than [`Limits::max_sum_step`](crate::Limits::max_sum_step)
//! (only hostile ops with huge sums make that cap bite; the op is then integrated as a remote one,
//! so every replica places it alike), deletes larger than the op-size limit become several ops,
//! and inserts go out in pieces (`ops_since`). An edit the limits would refuse is refused before
//! anything changes.

use crate::error::{EditError, OpError};
use crate::id::{S4Vector, SiteId};
use crate::log::LvRange;
use crate::op::{Change, Op, Splice};
use crate::replica::Rga;
use crate::tree::{NONE, Pos, broken};
use crate::version::VersionVector;

/// Where the last local insert ended, valid while the tree's edit counter is unchanged.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Typing {
    pub site: SiteId,
    pub agent: u32,
    /// The index just after the last inserted char.
    pub index: u32,
    /// The last inserted char.
    pub last: Pos,
    pub edits: u64,
}

/// The result of [`Rga::splice`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalEdit {
    /// The operations generated, in order: send these to the other replicas.
    pub ops: Vec<Op>,
    /// How the current text changed, in order.
    pub changes: Vec<Change>,
    /// The version of the editing client's copy after its edits: the base plus the new operations.
    pub version: VersionVector,
}

/// The operations a local edit made ([`Rga::insert`], [`Rga::delete`], ...), built on demand:
/// ignoring them costs nothing.
#[derive(Clone, Copy, Debug)]
pub struct NewOps<'a> {
    rga: &'a Rga,
    site: SiteId,
    from: u64,
}

impl NewOps<'_> {
    /// The operations, in order (what peers need).
    pub fn to_vec(&self) -> Vec<Op> {
        self.rga.ops_of_site_since(self.site, self.from)
    }

    /// Whether the edit made no operation (an empty insert or delete).
    pub fn is_empty(&self) -> bool {
        self.rga.next_seq(self.site) == self.from
    }

    /// The sequence numbers the edit used.
    pub fn seqs(&self) -> std::ops::Range<u64> {
        self.from..self.rga.next_seq(self.site)
    }
}

impl Rga {
    /// The S4Vector of the next local op of `site` using `n` sequence numbers, whose causes (its
    /// reference, targets) have highest sum `causes()` (asked only when the cap may bite); and
    /// whether its sum was capped below the paper's `Σ v + 1` (then it may not exceed every
    /// element, and must be integrated as a remote op).
    #[inline]
    pub(crate) fn local_id(
        &self,
        site: SiteId,
        causes: impl FnOnce() -> u64,
        n: u64,
    ) -> Result<(S4Vector, bool), EditError> {
        let (seq, own) = match self.log.agent_of(site) {
            Some(a) => {
                let a = &self.log.agents[a as usize];
                (a.next_seq, a.last.map_or(0, |l| l.1))
            }
            None => (1, 0),
        };
        let max = self.limits.max_id;
        let step = self.limits.max_sum_step;
        let paper = self.log.clock_total.max(self.log.max_sum).saturating_add(1);
        // The causes include the site's own last op, so the cap cannot bite while the paper's
        // sum is within a step of it (always, unless hostile sums were accepted).
        let sum = if paper <= own.saturating_add(step) {
            paper
        } else {
            paper.min(causes().max(own).saturating_add(step))
        };
        let span = n.saturating_sub(1);
        let fits = |v: u64| v.checked_add(span).is_some_and(|last| last <= max);
        if site.0 > max || !fits(seq) || !fits(sum) {
            let (field, value) = if site.0 > max {
                ("sid", site.0)
            } else if !fits(seq) {
                ("seq", seq.saturating_add(span))
            } else {
                ("sum", sum.saturating_add(span))
            };
            return Err(EditError::Op(OpError::IdOutOfRange {
                id: crate::CharId { sid: site, seq },
                field,
                value,
                max,
            }));
        }
        let id = S4Vector {
            ssn: self.ssn,
            sum,
            sid: site,
            seq,
        };
        Ok((id, sum < paper))
    }

    /// Refuses `ops` more operations by `site` using up to `seqs` sequence numbers in all if the
    /// identifiers would run out (checked before an edit changes anything).
    fn check_ids(&self, site: SiteId, seqs: u64) -> Result<(), EditError> {
        if seqs > 0 {
            self.local_id(site, || 0, seqs)?;
        }
        Ok(())
    }

    fn check_room(&self, n: u64) -> Result<(), EditError> {
        if self.tree.total_len() as u64 + n > self.limits.max_elements {
            return Err(OpError::DocumentTooLarge {
                max: self.limits.max_elements,
            }
            .into());
        }
        Ok(())
    }

    /// Inserts `text` at `index` (in chars) as `site`; returns the operations it made.
    pub fn insert(
        &mut self,
        site: SiteId,
        index: usize,
        text: &str,
    ) -> Result<NewOps<'_>, EditError> {
        let len = self.len();
        if index > len {
            return Err(EditError::IndexOutOfBounds { index, len });
        }
        let from = self.next_seq(site);
        let n = text.chars().count() as u64;
        if n > 0 {
            self.check_room(n)?;
            self.local_insert(site, index, text, n as u32, None)?;
        }
        Ok(NewOps {
            rga: self,
            site,
            from,
        })
    }

    fn local_insert(
        &mut self,
        site: SiteId,
        index: usize,
        text: &str,
        n: u32,
        mut changes: Option<&mut Vec<Change>>,
    ) -> Result<(), EditError> {
        if self.keep_typing(site, index, text, n, changes.as_deref_mut()) {
            return Ok(());
        }
        let (parent, parent_pos) = if index == 0 {
            (NONE, None)
        } else {
            // Typing on where the last insert ended needs no lookup.
            let p = match self.typing {
                Some(t)
                    if t.site == site
                        && t.index as usize == index
                        && t.edits == self.tree.edits() =>
                {
                    t.last
                }
                _ => self.tree.find_vis(index as u32 - 1),
            };
            (self.tree.span(p.leaf, p.idx).lv + p.off, Some(p))
        };
        let causes = || {
            parent_pos.map_or(0, |p| {
                let s = self.tree.span(p.leaf, p.idx);
                self.log.char_prec(s.run, s.lv + p.off).sum
            })
        };
        let (id, capped) = self.local_id(site, causes, n as u64)?;
        let agent = self.log.agent_or_new(site);
        let (first, last) = self.integrate_insert(agent, id, parent, parent_pos, text, n, !capped);
        if let Some(changes) = changes {
            let index = self.report_index(first);
            changes.push(Change::Insert {
                index,
                text: text.to_owned(),
            });
        }
        self.typing = (!capped).then_some(Typing {
            site,
            agent,
            index: (index + n as usize) as u32,
            last,
            edits: self.tree.edits(),
        });
        Ok(())
    }

    /// The common case of typing: `site` goes on right where its last insert ended, nothing
    /// happened since, so the new chars extend that run in place. Returns `false` (changing
    /// nothing) when that is not the case.
    #[inline]
    fn keep_typing(
        &mut self,
        site: SiteId,
        index: usize,
        text: &str,
        n: u32,
        changes: Option<&mut Vec<Change>>,
    ) -> bool {
        let Some(t) = self.typing else { return false };
        if t.site != site || t.index as usize != index || t.edits != self.tree.edits() {
            return false;
        }
        let lv = self.content.len();
        let Some(last) = self.log.runs.last() else {
            return false;
        };
        let (seq, sum) = (last.seq + last.len as u64, last.sum + last.len as u64);
        let paper = self.log.clock_total.max(self.log.max_sum) + 1;
        let span = n as u64 - 1;
        let s = self.tree.span(t.last.leaf, t.last.idx);
        if last.agent != t.agent
            || last.ssn != self.ssn
            || last.lv + last.len != lv
            || s.lv + t.last.off + 1 != lv
            || self.log.agents[t.agent as usize].next_seq != seq
            || paper != sum
            || sum + span > self.limits.max_id
            || seq + span > self.limits.max_id
        {
            return false;
        }
        let id = S4Vector {
            ssn: self.ssn,
            sum,
            sid: site,
            seq,
        };
        self.content.push_str(text);
        self.tree.extend(t.last.leaf, t.last.idx, n, &self.content);
        self.log.extend_last_run(t.agent, &id, n);
        if let Some(c) = changes {
            let index = self.report_at(index);
            c.push(Change::Insert {
                index,
                text: text.to_owned(),
            });
        }
        self.typing = Some(Typing {
            index: t.index + n,
            last: Pos {
                off: t.last.off + n,
                ..t.last
            },
            edits: self.tree.edits(),
            ..t
        });
        true
    }

    /// Deletes `len` chars starting at `index` as `site`; returns the operations it made (more
    /// than one when the range exceeds the op-size limit).
    pub fn delete(
        &mut self,
        site: SiteId,
        index: usize,
        len: usize,
    ) -> Result<NewOps<'_>, EditError> {
        let doc_len = self.len();
        if index > doc_len || len > doc_len - index {
            return Err(EditError::RangeOutOfBounds {
                index,
                delete: len,
                len: doc_len,
            });
        }
        let from = self.next_seq(site);
        if len > 0 {
            self.check_ids(site, len as u64)?;
            self.local_delete(site, index, len, None);
        }
        Ok(NewOps {
            rga: self,
            site,
            from,
        })
    }

    /// Deletes visible chars `index .. index + len` as `site` (identifiers checked by the caller),
    /// in as many ops as the op-size limit requires.
    fn local_delete(
        &mut self,
        site: SiteId,
        index: usize,
        len: usize,
        mut changes: Option<&mut Vec<Change>>,
    ) {
        let budget = self.limits.max_op_len.clamp(2, u32::MAX as u64) as u32;
        let mut left = len as u32;
        while left > 0 {
            let mut targets = std::mem::take(&mut self.scratch);
            targets.clear();
            let report_at = changes.as_ref().map(|_| self.report_at(index));
            let deleted = self.delete_visible(index as u32, left, budget, &mut targets);
            let log = &self.log;
            let top = || {
                targets
                    .iter()
                    .map(|t| log.char_prec(log.run_of(t.end() - 1), t.end() - 1).sum)
                    .max()
                    .unwrap_or(0)
            };
            let (id, _) = self
                .local_id(site, top, 1)
                .unwrap_or_else(|_| broken("identifiers checked before the delete"));
            let agent = self.log.agent_or_new(site);
            self.log.push_delete(agent, id, &targets);
            if let (Some(c), Some(at)) = (changes.as_deref_mut(), report_at) {
                let len = targets
                    .iter()
                    .map(|t| self.report_len(t.start, t.len))
                    .sum();
                c.push(Change::Delete { index: at, len });
            }
            self.scratch = targets;
            left -= deleted;
        }
    }

    /// Tombstones up to `len` visible chars from `index` on, as one op's targets (at most
    /// `budget` chars plus ranges); returns how many it deleted.
    fn delete_visible(
        &mut self,
        index: u32,
        len: u32,
        budget: u32,
        targets: &mut Vec<LvRange>,
    ) -> u32 {
        let Rga { tree, content, .. } = self;
        let mut used = 0u32;
        let mut deleted = 0u32;
        let mut last_run = NONE;
        while deleted < len {
            let p = tree.find_vis(index);
            let s = tree.span(p.leaf, p.idx);
            let start = s.lv + p.off;
            let joins = targets
                .last()
                .is_some_and(|l| l.end() == start && last_run == s.run);
            let room = budget.saturating_sub(used + (!joins) as u32);
            let take = (s.len() - p.off).min(len - deleted).min(room);
            if take == 0 {
                break;
            }
            tree.tombstone_at(p, take, content);
            match targets.last_mut() {
                Some(l) if joins => l.len += take,
                _ => targets.push(LvRange { start, len: take }),
            }
            used += take + (!joins) as u32;
            last_run = s.run;
            deleted += take;
        }
        deleted
    }

    /// The index `index` (chars) in the unit changes are reported in.
    fn report_at(&self, index: usize) -> usize {
        match self.units {
            crate::Units::Chars => index,
            crate::Units::Utf16 => self.chars_to_utf16(index),
        }
    }

    /// Replaces `len` chars at `index` with `text`, as `site` (a delete, then an insert); returns
    /// the operations it made.
    pub fn replace(
        &mut self,
        site: SiteId,
        index: usize,
        len: usize,
        text: &str,
    ) -> Result<NewOps<'_>, EditError> {
        let doc_len = self.len();
        if index > doc_len || len > doc_len - index {
            return Err(EditError::RangeOutOfBounds {
                index,
                delete: len,
                len: doc_len,
            });
        }
        let n = text.chars().count() as u64;
        self.check_room(n)?;
        self.check_ids(site, len as u64 + n)?;
        let from = self.next_seq(site);
        if len > 0 {
            self.local_delete(site, index, len, None);
        }
        if n > 0 {
            self.local_insert(site, index, text, n as u32, None)?;
        }
        Ok(NewOps {
            rga: self,
            site,
            from,
        })
    }

    /// Sets the value of the char at `index` (the paper's update operation), as `site`; returns
    /// the operation it made.
    pub fn update(
        &mut self,
        site: SiteId,
        index: usize,
        value: char,
    ) -> Result<NewOps<'_>, EditError> {
        let len = self.len();
        if index >= len {
            return Err(EditError::IndexOutOfBounds { index, len });
        }
        let p = self.tree.find_vis(index as u32);
        let s = self.tree.span(p.leaf, p.idx);
        let lv = s.lv + p.off;
        let target = self.log.char_prec(s.run, lv).sum;
        let winner = self.values.get(&lv).map_or(0, |v| v.0.sum);
        let (id, _) = self.local_id(site, || target.max(winner), 1)?;
        let from = id.seq;
        let agent = self.log.agent_or_new(site);
        self.integrate_update(agent, id, lv, value, None);
        Ok(NewOps {
            rga: self,
            site,
            from,
        })
    }

    /// Applies a sequence of splices as `site`, each seeing the ones before it, and returns the
    /// operations, the changes to the current text and the version of the editor's copy.
    ///
    /// With `base`, indexes refer to the text at that version (plus `site`'s own operations,
    /// which are always part of a session's causal past), so an editor that worked on a stale
    /// copy lands its edits where it meant them; the new operations are concurrent with
    /// everything outside `base`. `base` must have been received here
    /// ([`EditError::NotReceived`] otherwise). Without `base`, indexes refer to the current text.
    /// All splices are checked before any is applied: on error nothing changes. A base `k`
    /// operations behind costs O(k log n), not a pass over the document.
    pub fn splice(
        &mut self,
        site: SiteId,
        base: Option<&VersionVector>,
        splices: &[Splice],
    ) -> Result<LocalEdit, EditError> {
        let first_seq = self.next_seq(site);
        let past = match base {
            None => None,
            Some(b) => {
                for (s, q) in b.iter() {
                    if q >= self.next_seq(s) {
                        return Err(EditError::NotReceived { site: s, seq: q });
                    }
                }
                let mut v = b.clone();
                v.set(site, first_seq - 1);
                // `v` is included in the current version; equal totals mean equal versions.
                (v.total() != self.log.clock_total).then_some(v)
            }
        };
        let view = past.as_ref().map(|v| self.past_view(v));
        let mut len = match &view {
            None => self.len(),
            Some(view) => view.len(self),
        };
        let (mut inserted, mut seqs) = (0u64, 0u64);
        for s in splices {
            if s.index > len || s.delete > len - s.index {
                return Err(EditError::RangeOutOfBounds {
                    index: s.index,
                    delete: s.delete,
                    len,
                });
            }
            let n = s.insert.chars().count();
            inserted += n as u64;
            seqs += n as u64 + s.delete as u64;
            len = len - s.delete + n;
        }
        self.check_room(inserted)?;
        self.check_ids(site, seqs)?;
        let mut changes = Vec::new();
        let version = match (past, view) {
            (Some(v), Some(view)) => self.splice_past(site, v, view, splices, &mut changes)?,
            _ => {
                for s in splices {
                    if s.delete > 0 {
                        self.local_delete(site, s.index, s.delete, Some(&mut changes));
                    }
                    let n = s.insert.chars().count() as u32;
                    if n > 0 {
                        self.local_insert(site, s.index, &s.insert, n, Some(&mut changes))?;
                    }
                }
                self.version()
            }
        };
        Ok(LocalEdit {
            ops: self.ops_of_site_since(site, first_seq),
            changes,
            version,
        })
    }
}
