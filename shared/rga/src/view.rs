//! The document as it was at a past version `v`: a character is visible at `v` when its insert is
//! in `v` and no delete in `v` targets it; its value is that of the highest-precedence update in
//! `v`, or its inserted value.
//!
//! This is computed by one pass over the elements (O(n)); it serves edits made against a stale
//! copy (`Rga::splice` with a base) and `text_at`.

use rustc_hash::FxHashMap;

use crate::id::Precedence;
use crate::replica::Rga;
use crate::version::VersionVector;

impl Rga {
    /// The lvs of the characters visible at `v`, in document order.
    pub(crate) fn visible_at(&self, v: &VersionVector) -> Vec<u32> {
        let mut deleted = vec![false; self.content.len()];
        for d in &self.deletes {
            let limit = v.get(self.agents[d.agent as usize].sid);
            for k in 0..d.ops() {
                if d.seq + k as u64 > limit {
                    break;
                }
                for t in self.delete_targets(d, k).as_slice() {
                    deleted[t.start as usize..t.end() as usize].fill(true);
                }
            }
        }
        let mut out = Vec::new();
        for s in self.tree.spans() {
            let run = &self.runs[s.run as usize];
            let limit = v.get(self.agents[run.agent as usize].sid);
            let first_seq = run.seq + (s.lv - run.lv) as u64;
            for (k, lv) in (s.lv..s.end()).enumerate() {
                if first_seq + k as u64 <= limit && !deleted[lv as usize] {
                    out.push(lv);
                }
            }
        }
        out
    }

    /// The text as it was at version `v` (which need not have been received in full: operations
    /// of `v` not received here are simply absent).
    pub fn text_at(&self, v: &VersionVector) -> String {
        let mut values: FxHashMap<u32, (Precedence, char)> = FxHashMap::default();
        for u in &self.updates {
            let sid = self.agents[u.agent as usize].sid;
            if u.seq <= v.get(sid) {
                let p = Precedence {
                    ssn: u.ssn,
                    sum: u.sum,
                    sid,
                };
                let e = values.entry(u.target).or_insert((p, u.value));
                if p > e.0 {
                    *e = (p, u.value);
                }
            }
        }
        self.visible_at(v)
            .into_iter()
            .map(|lv| values.get(&lv).map_or(self.content[lv as usize], |v| v.1))
            .collect()
    }
}
