//! The value of every inserted character, by local version (lv), tombstones included.
//!
//! Code is mostly ASCII, so a character costs one byte: `bytes[lv]` is the character itself when
//! it is ASCII and [`WIDE`] otherwise, with the character in `wide`, a list sorted by lv (lvs are
//! handed out in increasing order, so it only ever grows at its end). Characters outside the
//! Basic Multilingual Plane (two UTF-16 code units each, emoji among them) are also listed in
//! `astral`, so that UTF-16 lengths cost two binary searches.
//!
//! Invariants (checked by [`Content::check`]): `bytes[lv] == WIDE` exactly for the lvs in
//! `wide`, which are strictly increasing and hold non-ASCII chars; `astral` lists exactly the lvs
//! of `wide` whose char is above U+FFFF.

/// Marks a non-ASCII character in `bytes` (not an ASCII byte, so never confused with one).
const WIDE: u8 = 0x80;

#[derive(Clone, Debug, Default)]
pub(crate) struct Content {
    bytes: Vec<u8>,
    wide: Vec<(u32, char)>,
    astral: Vec<u32>,
}

impl Content {
    /// A store with room for `chars` characters.
    pub fn with_capacity(chars: usize) -> Self {
        Content {
            bytes: Vec::with_capacity(chars),
            ..Content::default()
        }
    }

    /// Characters stored (the next lv).
    #[inline]
    pub fn len(&self) -> u32 {
        self.bytes.len() as u32
    }

    /// Appends the characters of `s`; returns how many.
    #[inline]
    pub fn push_str(&mut self, s: &str) -> u32 {
        if let [b] = s.as_bytes() {
            self.bytes.push(*b);
            return 1;
        }
        if s.is_ascii() {
            self.bytes.extend_from_slice(s.as_bytes());
            return s.len() as u32;
        }
        let start = self.bytes.len();
        for c in s.chars() {
            self.push(c);
        }
        (self.bytes.len() - start) as u32
    }

    /// Appends one character.
    pub fn push(&mut self, c: char) {
        if c.is_ascii() {
            self.bytes.push(c as u8);
            return;
        }
        let lv = self.bytes.len() as u32;
        self.bytes.push(WIDE);
        self.wide.push((lv, c));
        if c as u32 > 0xFFFF {
            self.astral.push(lv);
        }
    }

    /// The character at `lv`.
    #[inline]
    pub fn get(&self, lv: u32) -> char {
        let b = self.bytes[lv as usize];
        if b != WIDE {
            return b as char;
        }
        self.wide_at(lv)
    }

    fn wide_at(&self, lv: u32) -> char {
        let i = self.wide.partition_point(|w| w.0 < lv);
        match self.wide.get(i) {
            Some(&(at, c)) if at == lv => c,
            _ => broken("a wide marker without its char"),
        }
    }

    /// Appends the characters `lv .. end` to `out`.
    pub fn push_to(&self, lv: u32, end: u32, out: &mut String) {
        let bytes = &self.bytes[lv as usize..end as usize];
        let first = self.wide.partition_point(|w| w.0 < lv);
        if self.wide.get(first).is_none_or(|w| w.0 >= end) {
            // Only ASCII: the bytes are the UTF-8.
            out.push_str(std::str::from_utf8(bytes).unwrap_or_else(|_| broken("non-ASCII byte")));
            return;
        }
        let mut wide = self.wide[first..].iter();
        for (k, &b) in bytes.iter().enumerate() {
            if b == WIDE {
                match wide.next() {
                    Some(&(at, c)) if at == lv + k as u32 => out.push(c),
                    _ => broken("wide chars out of step"),
                }
            } else {
                out.push(b as char);
            }
        }
    }

    /// The characters `lv .. end` as a string.
    pub fn string(&self, lv: u32, end: u32) -> String {
        let mut s = String::with_capacity((end - lv) as usize);
        self.push_to(lv, end, &mut s);
        s
    }

    /// How many characters of `lv .. lv + len` lie outside the Basic Multilingual Plane.
    #[inline]
    pub fn astral(&self, lv: u32, len: u32) -> u32 {
        if self.astral.is_empty() {
            return 0;
        }
        let a = self.astral.partition_point(|&x| x < lv);
        let b = self.astral.partition_point(|&x| x < lv + len);
        (b - a) as u32
    }

    /// Whether any character outside the Basic Multilingual Plane was ever inserted.
    #[inline]
    pub fn has_astral(&self) -> bool {
        !self.astral.is_empty()
    }

    /// All the characters, in lv order, as UTF-8 (for snapshots).
    pub fn to_utf8(&self) -> String {
        self.string(0, self.len())
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.wide.capacity() * 8 + self.astral.capacity() * 4
    }

    /// Checks the module invariants.
    pub fn check(&self) {
        let marked = self.bytes.iter().filter(|&&b| b == WIDE).count();
        assert_eq!(marked, self.wide.len(), "one wide entry per marker");
        assert!(self.bytes.iter().all(|&b| b < 0x80 || b == WIDE));
        let mut prev = None;
        for &(lv, c) in &self.wide {
            assert!(prev < Some(lv), "wide entries sorted");
            assert_eq!(self.bytes[lv as usize], WIDE, "wide entry {lv} marked");
            assert!(!c.is_ascii());
            prev = Some(lv);
        }
        let astral: Vec<u32> = self
            .wide
            .iter()
            .filter(|w| w.1 as u32 > 0xFFFF)
            .map(|w| w.0)
            .collect();
        assert_eq!(astral, self.astral, "astral list");
    }
}

/// Internal invariant broken: a bug in this crate, never bad input.
#[cold]
#[track_caller]
fn broken(what: &str) -> ! {
    panic!("rga content invariant broken: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_and_wide_chars_read_back_and_count_utf16_units() {
        let mut c = Content::default();
        assert_eq!(c.push_str("ab"), 2);
        assert_eq!(c.push_str("é😀c"), 3);
        c.check();
        assert_eq!(c.get(0), 'a');
        assert_eq!(c.get(2), 'é');
        assert_eq!(c.get(3), '😀');
        assert_eq!(c.string(0, 5), "abé😀c");
        assert_eq!(c.string(1, 2), "b");
        assert_eq!(c.astral(0, 5), 1);
        assert_eq!(c.astral(0, 3), 0);
        assert_eq!(c.to_utf8(), "abé😀c");
    }
}
