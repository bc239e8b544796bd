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
    let count = r.count(2)?;
    if count == 0 {
        return Err(malformed("delete without targets"));
    }
    let first = d.doc.log.del_targets.len() as u32;
    let mut top = 0u64;
    let mut total = count as u64;
    for _ in 0..count {
        let start = offset_u32(d.cx.last_target, r.i64()?)?;
        let len = r.u32()?;
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
    let sid = head.id.sid;
    let mut own = d.doc.log.agents[head.agent as usize]
        .last
        .map_or(0, |l| l.1);
    for k in 0..n {
        let lv = if head.backwards {
            start - k
        } else {
            start
                .checked_add(k)
                .ok_or(malformed("delete run out of range"))?
        };
        let sum = head.id.sum + k as u64;
        d.target(
            lv,
            1,
            Precedence {
                ssn: head.id.ssn,
                sum,
                sid,
            },
        )?;
        if sum
            > d.prec(lv)
                .sum
                .max(own)
                .saturating_add(d.doc.limits.max_sum_step)
        {
            return Err(malformed("a sum jumps too far above its causes"));
        }
        own = sum;
    }
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
