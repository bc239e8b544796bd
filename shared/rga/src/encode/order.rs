//! The document order implied by the runs' references and precedences: the preorder of the
//! insertion tree, where each char is a child of its reference (char k + 1 of a run is a child of
//! char k) and siblings come in descending precedence. The decoder computes it instead of reading
//! it, so a snapshot cannot contradict the RGA rules.
//!
//! It works per run, not per char: children are grouped by parent run with a counting pass and
//! each (usually tiny) group sorted, O(r log r) for r runs; an explicit stack walks the tree.

use std::cmp::Reverse;

use crate::id::{Precedence, SiteId};
use crate::log::{InsertRun, Log};
use crate::tree::{NONE, Span};

/// A run as a child in the insertion tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Child {
    /// The run holding its reference (`runs.len()` for the head).
    parent_run: u32,
    /// The offset of its reference within that run.
    offset: u32,
    /// Its first char's precedence, highest first.
    prec: Reverse<Precedence>,
    /// The run itself.
    run: u32,
}

/// A run being walked: the next char to emit and the next child to visit.
struct Frame {
    run: u32,
    k: u32,
    kid: u32,
    /// Where this frame's deferred children start in the shared stack.
    deferred: usize,
}

/// The spans of the whole document in order, split by `deleted`.
pub(crate) fn document_order(log: &Log, lv_run: &[u32], deleted: &[bool]) -> Vec<Span> {
    let runs = &log.runs;
    let head = runs.len() as u32;
    let parent_of = |run: &InsertRun| {
        if run.parent == NONE {
            (head, 0)
        } else {
            let p = lv_run[run.parent as usize];
            (p, run.parent - runs[p as usize].lv)
        }
    };
    let mut first_kid = vec![0u32; runs.len() + 2];
    for run in runs {
        first_kid[parent_of(run).0 as usize + 1] += 1;
    }
    for i in 1..first_kid.len() {
        first_kid[i] += first_kid[i - 1];
    }
    let mut fill = first_kid.clone();
    let none = Child {
        parent_run: 0,
        offset: 0,
        prec: Reverse(Precedence {
            ssn: 0,
            sum: 0,
            sid: SiteId(0),
        }),
        run: 0,
    };
    let mut kids = vec![none; runs.len()];
    for (i, run) in runs.iter().enumerate() {
        let (parent_run, offset) = parent_of(run);
        kids[fill[parent_run as usize] as usize] = Child {
            parent_run,
            offset,
            prec: Reverse(log.char_prec(i as u32, run.lv)),
            run: i as u32,
        };
        fill[parent_run as usize] += 1;
    }
    drop(fill);
    for g in first_kid.windows(2) {
        let group = &mut kids[g[0] as usize..g[1] as usize];
        if group.len() > 1 {
            group.sort_unstable();
        }
    }
    let mut out: Vec<Span> = Vec::new();
    let mut emit = |run: u32, lv: u32, len: u32| match out.last_mut() {
        Some(s) if s.run == run && s.end() == lv => *s = Span::new(s.lv, s.len() + len, run, false),
        _ => out.push(Span::new(lv, len, run, false)),
    };
    let frame = |run: u32, deferred: usize| Frame {
        run,
        k: 0,
        kid: first_kid[run as usize],
        deferred,
    };
    let mut stack: Vec<Frame> = Vec::new();
    // Children whose precedence is below the next char of their parent's run: they come after the
    // rest of that run's subtree.
    let mut deferred: Vec<u32> = Vec::new();
    let head_kids = &kids[first_kid[head as usize] as usize..first_kid[head as usize + 1] as usize];
    for k in head_kids.iter().rev() {
        stack.push(frame(k.run, 0));
    }
    let mut hi: Vec<u32> = Vec::new();
    while let Some(f) = stack.last_mut() {
        let run = &runs[f.run as usize];
        if f.k < run.len {
            let end = first_kid[f.run as usize + 1];
            // Chars up to the next one with children (or the run's end) come in one piece.
            let stop = if f.kid < end {
                kids[f.kid as usize].offset
            } else {
                run.len - 1
            };
            emit(f.run, run.lv + f.k, stop - f.k + 1);
            f.k = stop;
            let lv = run.lv + f.k;
            let next = (f.k + 1 < run.len).then(|| log.char_prec(f.run, lv + 1));
            hi.clear();
            let lo_start = deferred.len();
            while f.kid < end && kids[f.kid as usize].offset == f.k {
                let child = kids[f.kid as usize];
                if next.is_some_and(|n| child.prec.0 < n) {
                    deferred.push(child.run);
                } else {
                    hi.push(child.run);
                }
                f.kid += 1;
            }
            // Deferred ones pop in descending precedence.
            deferred[lo_start..].reverse();
            f.k += 1;
            for &child in hi.iter().rev() {
                let d = deferred.len();
                stack.push(frame(child, d));
            }
        } else {
            let mark = f.deferred;
            stack.pop();
            let lo: Vec<u32> = deferred.drain(mark..).collect();
            for &child in &lo {
                let d = deferred.len();
                stack.push(frame(child, d));
            }
        }
    }
    // Split by tombstones.
    let mut spans = Vec::with_capacity(out.len() + out.len() / 2);
    for s in out {
        let mut at = s.lv;
        while at < s.end() {
            let d = deleted[at as usize];
            let run_end = deleted[at as usize..s.end() as usize]
                .iter()
                .position(|&x| x != d)
                .map_or(s.end(), |i| at + i as u32);
            spans.push(Span::new(at, run_end - at, s.run, d));
            at = run_end;
        }
    }
    spans
}
