//! Local edits by index: they produce operations of the given site and apply them at once.
//!
//! At the current version a local operation sees every applied operation, so its sum exceeds
//! every known sum and an insert lands right after its reference, skipping nothing. Against a
//! past version `v` (see [`Rga::splice`]) indexes are resolved in the text as it was at `v`, and
//! the operations carry the S4Vectors of a site whose causal past is exactly `v`: they are
//! integrated like remote operations, concurrent with everything outside `v`.

use crate::apply::NewRun;
use crate::error::{EditError, OpError};
use crate::id::{S4Vector, SiteId};
use crate::log::LvRange;
use crate::op::{Change, Op, Splice};
use crate::replica::Rga;
use crate::tree::NONE;
use crate::version::VersionVector;

/// Where the last local insert ended, valid while the tree's edit counter is unchanged.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Typing {
    pub site: SiteId,
    /// The index just after the last inserted char.
    pub index: u32,
    /// The last inserted char.
    pub last: crate::tree::Pos,
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

impl Rga {
    /// The S4Vector of the next local operation of `site` at the current version.
    fn next_local_id(&mut self, site: SiteId) -> (u32, S4Vector) {
        let agent = self.agent_or_new(site);
        let seq = self.agents[agent as usize].next_seq;
        let sum = self.clock_total.max(self.max_sum) + 1;
        (
            agent,
            S4Vector {
                ssn: self.ssn,
                sum,
                sid: site,
                seq,
            },
        )
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

    /// Inserts `text` at `index` (in chars) as `site`.
    pub fn insert(&mut self, site: SiteId, index: usize, text: &str) -> Result<(), EditError> {
        let len = self.len();
        if index > len {
            return Err(EditError::IndexOutOfBounds { index, len });
        }
        let n = text.chars().count() as u64;
        if n == 0 {
            return Ok(());
        }
        self.check_room(n)?;
        self.local_insert(site, index, text, n as u32, None);
        Ok(())
    }

    fn local_insert(
        &mut self,
        site: SiteId,
        index: usize,
        text: &str,
        n: u32,
        changes: Option<&mut Vec<Change>>,
    ) {
        let (agent, id) = self.next_local_id(site);
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
        let last = self.integrate_insert(
            NewRun {
                agent,
                id,
                parent,
                parent_pos,
                text,
                n,
            },
            true,
            changes,
        );
        self.typing = Some(Typing {
            site,
            index: (index + n as usize) as u32,
            last,
            edits: self.tree.edits(),
        });
    }

    /// Deletes `len` chars starting at `index` as `site`.
    pub fn delete(&mut self, site: SiteId, index: usize, len: usize) -> Result<(), EditError> {
        let doc_len = self.len();
        if index > doc_len || len > doc_len - index {
            return Err(EditError::RangeOutOfBounds {
                index,
                delete: len,
                len: doc_len,
            });
        }
        if len == 0 {
            return Ok(());
        }
        self.local_delete(site, index, len, None);
        Ok(())
    }

    fn local_delete(
        &mut self,
        site: SiteId,
        index: usize,
        len: usize,
        changes: Option<&mut Vec<Change>>,
    ) {
        let targets = self.visible_ranges(index as u32, len as u32);
        let (agent, id) = self.next_local_id(site);
        self.integrate_delete(agent, id, &targets, changes);
    }

    /// The lv ranges (one per run fragment, document order) of visible chars `index..index+len`.
    fn visible_ranges(&self, index: u32, mut len: u32) -> Vec<LvRange> {
        let mut out: Vec<LvRange> = Vec::new();
        let mut p = self.tree.find_vis(index);
        loop {
            let s = self.tree.span(p.leaf, p.idx);
            let take = (s.len() - p.off).min(len);
            push_range(
                &mut out,
                s.run,
                LvRange {
                    start: s.lv + p.off,
                    len: take,
                },
                |r| self.run_of(r),
            );
            len -= take;
            if len == 0 {
                return out;
            }
            // Next visible span.
            let mut gap = crate::tree::Pos {
                leaf: p.leaf,
                idx: p.idx + 1,
                off: 0,
            };
            loop {
                let Some(at) = self.tree.element_after(gap) else {
                    return out;
                };
                if !self.tree.span(at.leaf, at.idx).deleted() {
                    p = at;
                    break;
                }
                gap = crate::tree::Pos {
                    idx: at.idx + 1,
                    ..at
                };
            }
        }
    }

    /// Replaces `len` chars at `index` with `text`, as `site` (a delete, then an insert).
    pub fn replace(
        &mut self,
        site: SiteId,
        index: usize,
        len: usize,
        text: &str,
    ) -> Result<(), EditError> {
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
        if len > 0 {
            self.local_delete(site, index, len, None);
        }
        if n > 0 {
            self.local_insert(site, index, text, n as u32, None);
        }
        Ok(())
    }

    /// Sets the value of the char at `index` (the paper's update operation), as `site`.
    pub fn update(&mut self, site: SiteId, index: usize, value: char) -> Result<(), EditError> {
        let len = self.len();
        if index >= len {
            return Err(EditError::IndexOutOfBounds { index, len });
        }
        let p = self.tree.find_vis(index as u32);
        let lv = self.tree.span(p.leaf, p.idx).lv + p.off;
        let (agent, id) = self.next_local_id(site);
        self.integrate_update(agent, id, lv, value, None);
        Ok(())
    }

    /// Applies a sequence of splices as `site`, each seeing the ones before it, and returns the
    /// operations, the changes to the current text and the version of the editor's copy.
    ///
    /// With `base`, indexes refer to the text at that version (plus `site`'s own operations,
    /// which are always part of a session's causal past), so an editor that worked on a stale
    /// copy lands its edits where it meant them; the new operations are concurrent with
    /// everything outside `base`. `base` must have been received here
    /// ([`EditError::NotReceived`] otherwise). Without `base`, indexes refer to the current text.
    /// All splices are checked before any is applied: on error nothing changes.
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
                (v.total() != self.clock_total).then_some(v)
            }
        };
        let mut len = match &past {
            None => self.len(),
            Some(v) => self.visible_at(v).len(),
        };
        let mut inserted = 0u64;
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
            len = len - s.delete + n;
        }
        self.check_room(inserted)?;
        let mut changes = Vec::new();
        let version = match past {
            None => {
                for s in splices {
                    if s.delete > 0 {
                        self.local_delete(site, s.index, s.delete, Some(&mut changes));
                    }
                    let n = s.insert.chars().count() as u32;
                    if n > 0 {
                        self.local_insert(site, s.index, &s.insert, n, Some(&mut changes));
                    }
                }
                self.version()
            }
            Some(v) => self.splice_past(site, v, splices, &mut changes)?,
        };
        Ok(LocalEdit {
            ops: self.ops_of_site_since(site, first_seq),
            changes,
            version,
        })
    }

    fn splice_past(
        &mut self,
        site: SiteId,
        mut v: VersionVector,
        splices: &[Splice],
        changes: &mut Vec<Change>,
    ) -> Result<VersionVector, EditError> {
        let mut view = self.visible_at(&v);
        for s in splices {
            if s.delete > 0 {
                let mut targets: Vec<LvRange> = Vec::new();
                for &lv in &view[s.index..s.index + s.delete] {
                    push_range(
                        &mut targets,
                        self.run_of(lv),
                        LvRange { start: lv, len: 1 },
                        |r| self.run_of(r),
                    );
                }
                let seq = self.next_seq(site);
                let id = S4Vector {
                    ssn: self.ssn,
                    sum: self.sum_for(&v),
                    sid: site,
                    seq,
                };
                let op = Op::Delete {
                    id,
                    targets: targets.iter().map(|&t| self.lv_range_ids(t)).collect(),
                };
                self.integrate(&op, 1, Some(changes))?;
                v.set(site, seq);
                view.drain(s.index..s.index + s.delete);
            }
            let n = s.insert.chars().count() as u64;
            if n > 0 {
                let after = (s.index > 0).then(|| {
                    let lv = view[s.index - 1];
                    self.char_s4(self.run_of(lv), lv)
                });
                let seq = self.next_seq(site);
                let id = S4Vector {
                    ssn: self.ssn,
                    sum: self.sum_for(&v),
                    sid: site,
                    seq,
                };
                let op = Op::Insert {
                    id,
                    after,
                    text: s.insert.clone(),
                };
                let lv = self.content.len() as u32;
                self.integrate(&op, n, Some(changes))?;
                v.set(site, seq + n - 1);
                view.splice(s.index..s.index, lv..lv + n as u32);
            }
        }
        Ok(v)
    }
}

/// Appends `r` (of run `run`) to `out`, merging it into the last range when it continues it.
fn push_range(out: &mut Vec<LvRange>, run: u32, r: LvRange, run_of: impl Fn(u32) -> u32) {
    if let Some(last) = out.last_mut()
        && last.end() == r.start
        && run_of(last.start) == run
    {
        last.len += r.len;
        return;
    }
    out.push(r);
}
