//! The binary form of one operation, for the waiting operations a snapshot carries.

use super::varint::{Reader, malformed, put};
use super::{K_DELETE, K_INSERT, K_UPDATE};
use crate::error::DecodeError;
use crate::id::{CharId, IdRange, S4Vector, SiteId};
use crate::op::Op;

const HAS_REFERENCE: u8 = 4;

fn put_s4(out: &mut Vec<u8>, id: &S4Vector) {
    put(out, id.ssn as u64);
    put(out, id.sum);
    put(out, id.sid.0);
    put(out, id.seq);
}

fn get_s4(r: &mut Reader<'_>) -> Result<S4Vector, DecodeError> {
    Ok(S4Vector {
        ssn: r.u32()?,
        sum: r.u64()?,
        sid: SiteId(r.u64()?),
        seq: r.u64()?,
    })
}

/// Appends the binary form of `op`.
pub(super) fn write(op: &Op, out: &mut Vec<u8>) {
    match op {
        Op::Insert { id, after, text } => {
            out.push(K_INSERT | if after.is_some() { HAS_REFERENCE } else { 0 });
            put_s4(out, id);
            if let Some(a) = after {
                put_s4(out, a);
            }
            put(out, text.len() as u64);
            out.extend_from_slice(text.as_bytes());
        }
        Op::Delete { id, targets } => {
            out.push(K_DELETE);
            put_s4(out, id);
            put(out, targets.len() as u64);
            for t in targets {
                put(out, t.sid.0);
                put(out, t.seq);
                put(out, t.len);
            }
        }
        Op::Update { id, target, value } => {
            out.push(K_UPDATE);
            put_s4(out, id);
            put(out, target.sid.0);
            put(out, target.seq);
            put(out, *value as u64);
        }
    }
}

/// Reads one operation written by [`write`].
pub(super) fn read(r: &mut Reader<'_>) -> Result<Op, DecodeError> {
    let head = r.byte()?;
    let id = get_s4(r)?;
    Ok(match head {
        K_INSERT | 4 => {
            let after = if head & HAS_REFERENCE != 0 {
                Some(get_s4(r)?)
            } else {
                None
            };
            let n = r.count(1)?;
            let text = std::str::from_utf8(r.bytes(n)?)
                .map_err(|_| malformed("text is not UTF-8"))?
                .to_owned();
            Op::Insert { id, after, text }
        }
        K_DELETE => {
            let n = r.count(3)?;
            let mut targets = Vec::with_capacity(n);
            for _ in 0..n {
                targets.push(IdRange {
                    sid: SiteId(r.u64()?),
                    seq: r.u64()?,
                    len: r.u64()?,
                });
            }
            Op::Delete { id, targets }
        }
        K_UPDATE => {
            let target = CharId {
                sid: SiteId(r.u64()?),
                seq: r.u64()?,
            };
            let value = char::from_u32(r.u32()?).ok_or(malformed("update value is not a char"))?;
            Op::Update { id, target, value }
        }
        _ => return Err(malformed("unknown operation kind")),
    })
}
