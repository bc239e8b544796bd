//! Reads delete records: one delete with a list of target ranges, or a run of one-char deletes
//! (backspacing or forward-deleting) that the log keeps as one record.

use super::varint::{Reader, malformed, offset_u32};
use super::{Decoder, Head};
use crate::error::DecodeError;
use crate::id::Precedence;
use crate::log::{DelTargets, DeleteRec, Entry, Kind, LvRange, Rec};

pub(super) fn read_list(
    d: &mut Decoder,
    r: &mut Reader<'_>,
    head: &Head,
) -> Result<(), DecodeError> {
    // `backwards` marks a delete of one char (no count, no length).
    let single = head.backwards;
    let count = if single { 1 } else { r.count(2)? };
    if count == 0 {
        return Err(malformed("delete without targets"));
    }
    let first = d.doc.log.del_targets.len() as u32;
    let mut top = 0u64;
    let mut total = count as u64;
    for _ in 0..count {
        let start = offset_u32(d.cx.last_target, r.i64()?)?;
        let len = if single { 1 } else { r.u32()? };
        d.target(start, len, head.id.precedence())?;
        top = top.max(d.prec(start + len - 1).sum);
        total += len as u64;
        d.doc.log.del_targets.push(LvRange { start, len });
        d.cx.last_target = start + len;
        d.cx.cursor = start + len - 1;
    }
    if total > d.doc.limits.max_op_len {
        return Err(malformed("a delete larger than an op may be"));
    }
    d.check_step(head, top)?;
    push(
        d,
        head,
        DelTargets::List {
            first,
            count: count as u32,
        },
    );
    Ok(())
}

pub(super) fn read_run(
    d: &mut Decoder,
    r: &mut Reader<'_>,
    head: &Head,
) -> Result<(), DecodeError> {
    // A run of n deletes takes a few bytes whatever n is: bound it by the characters it can
    // target, not by the bytes left.
    let n = r.u32()?;
    if n < 2 || n > d.lv_run.len() as u32 {
        return Err(malformed(
            "delete run shorter than 2 or longer than the text",
        ));
    }
    let start = offset_u32(d.cx.last_target, r.i64()?)?;
    let max = d.doc.limits.max_id;
    if (head.backwards && start < n - 1)
        || !matches!(head.id.sum.checked_add(n as u64 - 1), Some(s) if s <= max)
        || !matches!(head.id.seq.checked_add(n as u64 - 1), Some(q) if q <= max)
    {
        return Err(malformed("delete run out of range"));
    }
    let (lo, hi) = if head.backwards {
        (start + 1 - n, start)
    } else {
        (
            start,
            start
                .checked_add(n - 1)
                .ok_or(malformed("delete run out of range"))?,
        )
    };
    if hi as usize >= d.lv_run.len() {
        return Err(malformed("target out of range"));
    }
    // Delete k targets lv start ∓ k with sum `sum + k`. Within one insert run the target's sum
    // moves by one per char too, so the closest call in each run segment is at its end nearest
    // the run's start (forwards: any k, the gap is constant; backwards: the first k).
    let op = |k: u32| Precedence {
        ssn: head.id.ssn,
        sum: head.id.sum + k as u64,
        sid: head.id.sid,
    };
    let mut at = lo;
    while at <= hi {
        let run = d.lv_run[at as usize];
        let r = &d.doc.log.runs[run as usize];
        let seg_end = (r.lv + r.len - 1).min(hi);
        let k = if head.backwards {
            start - seg_end
        } else {
            at - start
        };
        let lv = if head.backwards { seg_end } else { at };
        if d.prec(lv) >= op(k) {
            return Err(malformed("operation does not exceed its target"));
        }
        for lv in at..=seg_end {
            if std::mem::replace(&mut d.deleted[lv as usize], true) {
                *d.doc.log.deleted_again.entry(lv).or_insert(1) += 1;
            }
        }
        at = seg_end + 1;
    }
    // Only the first delete can jump: each later one is one above the one before.
    let first = if head.backwards { start } else { lo };
    d.check_step(head, d.prec(first).sum)?;
    d.cx.after_run(start, n, head.backwards);
    push(
        d,
        head,
        DelTargets::Run {
            start,
            n,
            backwards: head.backwards,
        },
    );
    Ok(())
}

/// Records the delete (its `ops()` operations) in the log.
fn push(d: &mut Decoder, head: &Head, targets: DelTargets) {
    let log = &mut d.doc.log;
    let rec = DeleteRec {
        sum: head.id.sum,
        seq: head.id.seq,
        ssn: head.id.ssn,
        agent: head.agent,
        order: log.next_order,
        targets,
    };
    let n = rec.ops();
    let index = log.deletes.len() as u32;
    log.deletes.push(rec);
    log.next_order += 1;
    log.agents[head.agent as usize].entries.push(Entry {
        seq: head.id.seq,
        len: n,
        kind: Kind::new(Rec::Delete(index)),
    });
    let last = head.id.sum + (n as u64 - 1);
    log.note_applied(
        head.agent,
        head.id.ssn,
        last,
        head.id.seq + n as u64,
        n as u64,
    );
    d.cx.advance(n as u64, last);
}
