//! Invariant checks for tests (`Rga::assert_invariants`): every structure agrees with the others
//! and the document order is the one the RGA rules define.

use crate::log::Rec;
use crate::replica::Rga;
use crate::tree::NONE;

impl Rga {
    /// Panics with a description if any internal invariant is broken. Costs O(n log n); meant for
    /// tests, which call it after every operation.
    #[doc(hidden)]
    pub fn assert_invariants(&self) {
        self.content.check();
        self.tree.check(&self.content);
        self.pending.check();
        let log = &self.log;
        let n = self.content.len() as usize;
        assert_eq!(
            self.tree.total_len() as usize,
            n,
            "every inserted char is in the tree once"
        );
        let mut seen = vec![false; n];
        for s in self.tree.spans() {
            let run = &log.runs[s.run as usize];
            assert!(
                s.lv >= run.lv && s.end() <= run.lv + run.len,
                "span inside its run"
            );
            for lv in s.lv..s.end() {
                assert!(!seen[lv as usize], "lv {lv} twice in the tree");
                seen[lv as usize] = true;
            }
        }
        // Runs tile the lvs in order.
        let mut lv = 0;
        for r in &log.runs {
            assert_eq!(r.lv, lv, "runs tile the lvs");
            assert!(r.len > 0);
            assert!(
                r.parent == NONE || r.parent < r.lv,
                "a run's parent came first"
            );
            lv += r.len;
        }
        assert_eq!(lv as usize, n);
        // Tombstones are exactly the targets of deletes, and `deleted_again` counts the deletes
        // of each character targeted more than once.
        let mut deletes = vec![0u32; n];
        for d in &log.deletes {
            for k in 0..d.ops() {
                for t in log.delete_targets(d, k).as_slice() {
                    assert_eq!(
                        log.run_of(t.start),
                        log.run_of(t.end() - 1),
                        "a target range within one run"
                    );
                    for lv in t.start..t.end() {
                        deletes[lv as usize] += 1;
                    }
                }
            }
        }
        for s in self.tree.spans() {
            for lv in s.lv..s.end() {
                let count = deletes[lv as usize];
                assert_eq!(s.deleted(), count > 0, "tombstone flag of lv {lv}");
                assert_eq!(
                    log.deleted_again.get(&lv).copied(),
                    (count > 1).then_some(count),
                    "delete count of lv {lv}"
                );
            }
        }
        // Each site's entries cover 1..next_seq without gaps, with rising precedence.
        let mut total = 0u64;
        let mut max_sum = 0u64;
        for a in &log.agents {
            let agent = log.sites[&a.sid];
            let mut next = 1;
            let mut last = None;
            for e in &a.entries {
                assert_eq!(e.seq, next, "site {} entries contiguous", a.sid);
                next = e.end();
                let first = log.op_s4(agent, e.seq).expect("entry resolves");
                assert!(
                    last < Some((first.ssn, first.sum)),
                    "site {} precedence rises",
                    a.sid
                );
                let lastop = log.op_s4(agent, e.end() - 1).expect("entry resolves");
                last = Some((lastop.ssn, lastop.sum));
                max_sum = max_sum.max(lastop.sum);
                if let Rec::Insert(r) = e.kind.rec() {
                    assert_eq!(log.runs[r as usize].len, e.len);
                }
            }
            assert_eq!(next, a.next_seq, "site {} next_seq", a.sid);
            assert_eq!(last, a.last, "site {} last precedence", a.sid);
            total += a.next_seq - 1;
        }
        assert_eq!(total, log.clock_total, "clock total");
        assert_eq!(max_sum, log.max_sum, "highest sum");
        // Values replaced by updates are the highest-precedence update of their character.
        for (&lv, &(prec, value)) in &self.values {
            let best = log
                .updates
                .iter()
                .filter(|u| u.target == lv)
                .max_by_key(|u| (u.ssn, u.sum, log.agents[u.agent as usize].sid))
                .expect("an updated char has an update");
            assert_eq!(prec.sum, best.sum, "winning update of lv {lv}");
            assert_eq!(value, best.value, "winning value of lv {lv}");
        }
        self.assert_rga_order();
    }

    /// The document order must be the preorder of the insertion tree (each char a child of its
    /// reference) with siblings in descending precedence.
    fn assert_rga_order(&self) {
        let log = &self.log;
        let n = self.content.len() as usize;
        let mut children: Vec<Vec<u32>> = vec![Vec::new(); n + 1];
        for (r, run) in log.runs.iter().enumerate() {
            for lv in run.lv..run.lv + run.len {
                let parent = log.parent_of(r as u32, lv);
                let slot = if parent == NONE { n } else { parent as usize };
                children[slot].push(lv);
            }
        }
        for c in &mut children {
            c.sort_by_key(|&lv| std::cmp::Reverse(log.char_prec(log.run_of(lv), lv)));
        }
        let mut expected = Vec::with_capacity(n);
        let mut stack: Vec<u32> = children[n].iter().rev().copied().collect();
        while let Some(lv) = stack.pop() {
            expected.push(lv);
            stack.extend(children[lv as usize].iter().rev());
        }
        let actual: Vec<u32> = self.tree.spans().flat_map(|s| s.lv..s.end()).collect();
        assert_eq!(
            actual, expected,
            "document order is the RGA tree's preorder"
        );
        for (r, run) in log.runs.iter().enumerate() {
            if run.parent != NONE {
                let p = log.char_prec(log.run_of(run.parent), run.parent);
                assert!(
                    p < log.char_prec(r as u32, run.lv),
                    "a char exceeds its reference"
                );
            }
        }
    }
}
