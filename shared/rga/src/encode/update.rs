//! Reads an update record: a new value for one character.

use super::varint::{Reader, malformed};
use super::{Decoder, Head};
use crate::error::DecodeError;

pub(super) fn read(d: &mut Decoder, r: &mut Reader<'_>, head: &Head) -> Result<(), DecodeError> {
    let target = r.u32()?;
    let value = char::from_u32(r.u32()?).ok_or(malformed("update value is not a char"))?;
    if target as usize >= d.lv_run.len() {
        return Err(malformed("update of a character not inserted yet"));
    }
    let prec = d.prec(target);
    let p = head.id.precedence();
    if prec >= p {
        return Err(malformed("operation does not exceed its target"));
    }
    d.check_step(head, prec.sum)?;
    d.doc.log.push_update(head.agent, head.id, target, value);
    let winner = d.doc.values.get(&target).map(|v| v.0);
    if winner.is_none_or(|w| p > w) {
        d.doc.values.insert(target, (p, value));
    }
    d.cx.advance(1, head.id.sum);
    Ok(())
}
