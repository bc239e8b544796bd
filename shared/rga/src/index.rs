//! Which leaf of the content tree holds each element: a run-length map from local versions (lvs)
//! to leaves, so that finding an element by identifier costs O(log n) and memory grows with the
//! number of fragments, not of characters (a deleted paste of a thousand lines is one entry).
//!
//! Entries `(start, leaf)` are sorted by `start`; each covers the lvs from its start to the next
//! entry's (the last one to `len`). They live in chunks of at most [`CHUNK_MAX`] entries, a
//! two-level B+ tree: a lookup is a binary search in `firsts` and one in a chunk; an assignment
//! shifts at most one chunk. A one-entry cache serves runs of lookups in one place (backspacing,
//! a remote delete of adjacent characters).
//!
//! Invariants (checked by [`LvIndex::check`]): chunks are non-empty, `firsts[i]` is the start of
//! chunk `i`'s first entry, starts strictly increase from 0, and within a chunk no two adjacent
//! entries name the same leaf.

use std::cell::Cell;

const CHUNK_MAX: usize = 128;

#[derive(Clone, Debug, Default)]
pub(crate) struct LvIndex {
    chunks: Vec<Vec<(u32, u32)>>,
    firsts: Vec<u32>,
    len: u32,
    /// `(start, end, leaf)` of the entry found last; `start == end` when empty.
    hit: Cell<(u32, u32, u32)>,
}

impl LvIndex {
    /// Lvs covered.
    #[inline]
    pub fn len(&self) -> u32 {
        self.len
    }

    /// The leaf holding `lv` (`lv < len`).
    #[inline]
    pub fn leaf(&self, lv: u32) -> u32 {
        let (start, end, leaf) = self.hit.get();
        if lv >= start && lv < end {
            return leaf;
        }
        let (c, e) = self.locate(lv);
        let chunk = &self.chunks[c];
        let (start, leaf) = chunk[e];
        let end = self.entry_end(c, e);
        self.hit.set((start, end, leaf));
        leaf
    }

    /// The (chunk, entry) covering `lv`.
    #[inline]
    fn locate(&self, lv: u32) -> (usize, usize) {
        let c = self.firsts.partition_point(|&f| f <= lv) - 1;
        let e = self.chunks[c].partition_point(|x| x.0 <= lv) - 1;
        (c, e)
    }

    /// Where entry `e` of chunk `c` ends.
    #[inline]
    fn entry_end(&self, c: usize, e: usize) -> u32 {
        match self.chunks[c].get(e + 1) {
            Some(next) => next.0,
            None => self.firsts.get(c + 1).copied().unwrap_or(self.len),
        }
    }

    /// Appends `n` new lvs (from `len` on), held by `leaf`.
    pub fn push(&mut self, n: u32, leaf: u32) {
        if n == 0 {
            return;
        }
        let start = self.len;
        self.len += n;
        match self.chunks.last_mut() {
            Some(chunk) if chunk.last().is_some_and(|e| e.1 == leaf) => {}
            Some(chunk) if chunk.len() < CHUNK_MAX => chunk.push((start, leaf)),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK_MAX + 2);
                chunk.push((start, leaf));
                self.chunks.push(chunk);
                self.firsts.push(start);
            }
        }
    }

    /// Records that lvs `lv .. lv + n` (already covered) are now held by `leaf`.
    pub fn assign(&mut self, lv: u32, n: u32, leaf: u32) {
        self.hit.set((0, 0, 0));
        let end = lv + n;
        let mut lo = lv;
        while lo < end {
            let (c, e) = self.locate(lo);
            let e_end = self.entry_end(c, e);
            let hi = e_end.min(end);
            self.assign_in_entry(c, e, lo, hi, e_end, leaf);
            lo = hi;
        }
    }

    /// Assigns `lo .. hi`, which lies inside entry `e` of chunk `c` (ending at `e_end`).
    fn assign_in_entry(&mut self, c: usize, e: usize, lo: u32, hi: u32, e_end: u32, leaf: u32) {
        let chunk = &mut self.chunks[c];
        let (start, old) = chunk[e];
        if old == leaf {
            return;
        }
        let mut at = e;
        if lo > start {
            // Keep the head with the old leaf; the new part becomes its own entry.
            at += 1;
            chunk.insert(at, (lo, leaf));
        } else {
            chunk[at].1 = leaf;
        }
        if hi < e_end {
            chunk.insert(at + 1, (hi, old));
        } else if chunk.get(at + 1).is_some_and(|n| n.1 == leaf) {
            chunk.remove(at + 1);
        }
        if lo == start && at > 0 && chunk[at - 1].1 == leaf {
            chunk.remove(at);
        }
        if chunk.len() > CHUNK_MAX {
            let right = chunk.split_off(CHUNK_MAX / 2);
            let first = right[0].0;
            self.chunks.insert(c + 1, right);
            self.firsts.insert(c + 1, first);
        }
    }

    /// An index over `0 .. len` from `(lv, n, leaf)` triples covering it exactly once, in any
    /// order.
    pub fn from_ranges(mut ranges: Vec<(u32, u32, u32)>, len: u32) -> Self {
        ranges.sort_unstable_by_key(|r| r.0);
        let mut index = LvIndex::default();
        for (lv, n, leaf) in ranges {
            debug_assert_eq!(lv, index.len);
            index.push(n, leaf);
        }
        debug_assert_eq!(index.len, len);
        index
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.capacity() * 8 + 24)
            .sum::<usize>()
            + self.firsts.capacity() * 4
    }

    /// Gives back spare capacity.
    pub fn shrink_to_fit(&mut self) {
        for c in &mut self.chunks {
            c.shrink_to_fit();
        }
        self.chunks.shrink_to_fit();
        self.firsts.shrink_to_fit();
    }

    /// Checks the module invariants.
    pub fn check(&self) {
        assert_eq!(self.chunks.len(), self.firsts.len(), "one first per chunk");
        let mut prev: Option<u32> = None;
        for (c, chunk) in self.chunks.iter().enumerate() {
            assert!(!chunk.is_empty(), "empty index chunk");
            assert_eq!(self.firsts[c], chunk[0].0, "first of chunk {c}");
            for (i, &(start, leaf)) in chunk.iter().enumerate() {
                match prev {
                    None => assert_eq!(start, 0, "the index starts at lv 0"),
                    Some(p) => assert!(start > p, "index starts rise"),
                }
                if i > 0 {
                    assert_ne!(chunk[i - 1].1, leaf, "adjacent entries merged");
                }
                prev = Some(start);
            }
        }
        if let Some(p) = prev {
            assert!(p < self.len, "the last entry is not empty");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::prelude::*;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn assignments_match_a_plain_table() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut index = LvIndex::default();
        let mut table: Vec<u32> = Vec::new();
        for _ in 0..5000 {
            if table.is_empty() || rng.random_bool(0.3) {
                let n = rng.random_range(1..20);
                let leaf = rng.random_range(0..8);
                index.push(n, leaf);
                table.extend(std::iter::repeat_n(leaf, n as usize));
            } else {
                let lv = rng.random_range(0..table.len()) as u32;
                let n = rng.random_range(1..=(table.len() as u32 - lv).min(30));
                let leaf = rng.random_range(0..8);
                index.assign(lv, n, leaf);
                table[lv as usize..(lv + n) as usize].fill(leaf);
            }
            index.check();
            let probe = rng.random_range(0..table.len());
            assert_eq!(index.leaf(probe as u32), table[probe]);
        }
        for (lv, &leaf) in table.iter().enumerate() {
            assert_eq!(index.leaf(lv as u32), leaf, "lv {lv}");
        }
        let rebuilt = LvIndex::from_ranges(
            table
                .iter()
                .enumerate()
                .map(|(lv, &leaf)| (lv as u32, 1, leaf))
                .collect(),
            table.len() as u32,
        );
        rebuilt.check();
        for (lv, &leaf) in table.iter().enumerate() {
            assert_eq!(rebuilt.leaf(lv as u32), leaf);
        }
    }
}
