//! Sections stored raw or as an LZ4 block. A block may claim at most `max_ratio` times its
//! compressed size (the caller's bound: [`TEXT_RATIO`] for text, [`RECORDS_RATIO`] for records,
//! whose every byte becomes tens of bytes of structure), so a few bytes can never make the
//! decoder allocate much: the encoder stores raw whatever LZ4 shrinks further (or does not shrink
//! at all). Real text compresses two- to fourfold, records by a third.

use super::varint::{Reader, malformed, put};
use crate::error::DecodeError;

/// The largest decompressed/compressed size ratio the text block may claim.
pub(super) const TEXT_RATIO: usize = 16;
/// The largest decompressed/compressed size ratio the record block may claim.
pub(super) const RECORDS_RATIO: usize = 4;

const RAW: u8 = 0;
const LZ4: u8 = 1;

/// Appends `data` as a block: `kind, raw length, [packed length], bytes`.
pub(super) fn write(out: &mut Vec<u8>, data: &[u8], max_ratio: usize) {
    let packed = lz4_flex::block::compress(data);
    let worth = packed.len() < data.len() && packed.len() * max_ratio >= data.len();
    put(out, data.len() as u64);
    if worth {
        out.push(LZ4);
        put(out, packed.len() as u64);
        out.extend_from_slice(&packed);
    } else {
        out.push(RAW);
        out.extend_from_slice(data);
    }
}

/// Reads a block written by [`write`].
pub(super) fn read<'a>(
    r: &mut Reader<'a>,
    max_ratio: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, DecodeError> {
    let raw_len = r.u64()?;
    match r.byte()? {
        RAW => Ok(std::borrow::Cow::Borrowed(r.bytes(
            usize::try_from(raw_len).map_err(|_| DecodeError::Truncated)?,
        )?)),
        LZ4 => {
            let packed_len = r.count(1)?;
            if raw_len > (packed_len * max_ratio) as u64 {
                return Err(malformed(
                    "a block claims more than its compressed form allows",
                ));
            }
            let data = lz4_flex::block::decompress(r.bytes(packed_len)?, raw_len as usize)
                .map_err(|_| malformed("a block does not decompress"))?;
            if data.len() as u64 != raw_len {
                return Err(malformed("a block decompresses to another length"));
            }
            Ok(std::borrow::Cow::Owned(data))
        }
        _ => Err(malformed("unknown block kind")),
    }
}
