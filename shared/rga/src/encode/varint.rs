//! LEB128 varints (zigzag for signed values) and the bounds-checked reader every decoder uses.

use crate::error::DecodeError;

/// Appends `v` as a LEB128 varint.
pub(super) fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a signed value, zigzag-encoded.
pub(super) fn put_z(out: &mut Vec<u8>, v: i64) {
    put(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// A malformed-input error.
pub(super) fn malformed(what: &'static str) -> DecodeError {
    DecodeError::Malformed(what)
}

/// Reads from a byte slice; every read is bounds-checked and fails with a [`DecodeError`].
#[derive(Clone)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = (b & 0x7f) as u64;
            if shift == 63 && bits > 1 {
                return Err(malformed("varint overflows 64 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed("varint longer than 10 bytes"))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.u64()?).map_err(|_| malformed("value exceeds 32 bits"))
    }

    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        let v = self.u64()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let b = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(b)
    }

    /// A count of items that each take at least `min_bytes` bytes: bounded by the bytes left,
    /// so that no claimed count allocates more than the input supports.
    pub fn count(&mut self, min_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.u64()?;
        if n.saturating_mul(min_bytes as u64) > self.left() as u64 {
            return Err(DecodeError::Truncated);
        }
        Ok(n as usize)
    }

    /// Fails unless everything was read.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.left() != 0 {
            return Err(malformed(what));
        }
        Ok(())
    }
}

/// Adds a signed delta to an unsigned base, refusing results outside `0..=u32::MAX`.
pub(super) fn offset_u32(base: u32, delta: i64) -> Result<u32, DecodeError> {
    u32::try_from(base as i64 + delta).map_err(|_| malformed("offset out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_overlong_ones_are_refused() {
        let mut out = Vec::new();
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            put(&mut out, v);
        }
        put_z(&mut out, -5);
        put_z(&mut out, i64::MIN);
        let mut r = Reader::new(&out);
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            assert_eq!(r.u64().unwrap(), v);
        }
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.i64().unwrap(), i64::MIN);
        assert!(r.finish("").is_ok());
        let overlong = [0xff; 11];
        assert_eq!(
            Reader::new(&overlong).u64(),
            Err(DecodeError::Malformed("varint overflows 64 bits"))
        );
        assert_eq!(Reader::new(&[5, 1]).count(1), Err(DecodeError::Truncated));
    }
}
