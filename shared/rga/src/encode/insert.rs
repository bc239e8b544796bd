//! Reads an insert record: a run of `len` characters after `parent`.

use super::varint::{Reader, malformed};
use super::{Decoder, Head};
use crate::error::DecodeError;
use crate::tree::NONE;

pub(super) fn read(d: &mut Decoder, r: &mut Reader<'_>, head: &Head) -> Result<(), DecodeError> {
    let len = r.u32()?;
    let parent = r.u64()?;
    let lv = d.lv_run.len() as u32;
    if len == 0 || len > d.chars - lv {
        return Err(malformed("an insert longer than the text"));
    }
    let max = d.doc.limits.max_id;
    let last = (
        head.id.seq.checked_add(len as u64 - 1),
        head.id.sum.checked_add(len as u64 - 1),
    );
    if !matches!(last, (Some(q), Some(s)) if q <= max && s <= max) {
        return Err(malformed("identifiers out of range"));
    }
    let (parent, causes) = if parent == 0 {
        (NONE, 0)
    } else {
        let z = parent - 1;
        let delta = ((z >> 1) as i64) ^ -((z & 1) as i64);
        let p = u32::try_from(d.cx.cursor as i64 + delta)
            .ok()
            .filter(|&p| p < lv)
            .ok_or(malformed("reference after its insert"))?;
        let prec = d.prec(p);
        if prec >= head.id.precedence() {
            return Err(malformed("insert does not exceed its reference"));
        }
        (p, prec.sum)
    };
    d.check_step(head, causes)?;
    let run = d.doc.log.push_run(head.agent, head.id, lv, len, parent);
    d.lv_run.resize((lv + len) as usize, run);
    d.cx.cursor = lv + len - 1;
    d.cx.advance(len as u64, head.id.sum + len as u64 - 1);
    Ok(())
}
