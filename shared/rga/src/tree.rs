//! The content tree: every element of the document (tombstones included) in document order,
//! grouped into spans, stored in a B-tree whose internal nodes count the visible characters
//! under each child. Index → element and element → index both cost O(log n).
//!
//! A span is a fragment of one insert run (consecutive characters typed by one site, stored
//! under consecutive local versions, "lv"), wholly visible or wholly deleted. The [`LvIndex`]
//! names the leaf holding each element, so finding an element by identifier is an O(log n)
//! lookup and a scan of one leaf. Spans split on demand and adjacent fragments of the same run
//! merge back.
//!
//! Internal nodes also count the visible characters outside the Basic Multilingual Plane under
//! each child (`wide`), so that UTF-16 positions (what JavaScript editors count) convert to and
//! from char positions in O(log n). Leaves derive those counts from [`Content`].
//!
//! Invariants (checked by [`Tree::check`]):
//! - leaves are chained by `next` in document order starting at leaf 0, and every leaf but the
//!   root of an empty tree holds at least one span;
//! - an internal node's `vis[i]` is the number of visible characters under child `i` and
//!   `wide[i]` how many of them are astral; the tree's `vis_len` / `wide_len` are their sums at
//!   the root, and `total_len` counts tombstones too;
//! - every `parent` link points at the node that lists the child;
//! - the index maps every lv to the leaf whose span contains it.
//!
//! Nodes never underflow: elements are never removed (deletes leave tombstones), so the tree only
//! grows, and leaves only split. An element therefore only ever moves into a leaf created right
//! after its own.

use std::cell::Cell;
use std::cmp::Ordering;

use crate::content::Content;
use crate::index::LvIndex;

pub(crate) const NONE: u32 = u32::MAX;
const LEAF_CAP: usize = 32;
const NODE_CAP: usize = 16;
const DEL_BIT: u32 = 1 << 31;

/// A fragment of an insert run: elements `lv .. lv + len`, all visible or all deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub lv: u32,
    len_del: u32,
    pub run: u32,
}

impl Span {
    pub fn new(lv: u32, len: u32, run: u32, deleted: bool) -> Self {
        debug_assert!(len < DEL_BIT);
        Span {
            lv,
            len_del: len | if deleted { DEL_BIT } else { 0 },
            run,
        }
    }
    #[inline]
    pub fn len(self) -> u32 {
        self.len_del & !DEL_BIT
    }
    #[inline]
    pub fn deleted(self) -> bool {
        self.len_del & DEL_BIT != 0
    }
    #[inline]
    pub fn vis(self) -> u32 {
        if self.deleted() { 0 } else { self.len() }
    }
    #[inline]
    pub fn end(self) -> u32 {
        self.lv + self.len()
    }
    #[inline]
    fn set_len(&mut self, len: u32) {
        self.len_del = (self.len_del & DEL_BIT) | len;
    }
    #[inline]
    fn set_deleted(&mut self) {
        self.len_del |= DEL_BIT;
    }
    /// Whether `next` continues `self` in the same run with the same state.
    #[inline]
    fn joins(self, next: Span) -> bool {
        self.run == next.run && self.end() == next.lv && self.deleted() == next.deleted()
    }
    /// Visible astral characters.
    #[inline]
    fn wide(self, content: &Content) -> u32 {
        if self.deleted() {
            0
        } else {
            content.astral(self.lv, self.len())
        }
    }
}

/// A place in the tree: element `off` of span `idx` of leaf `leaf`. As a *gap* it means "just
/// before that element", and `idx == span count` means the end of the leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pos {
    pub leaf: u32,
    pub idx: u32,
    pub off: u32,
}

#[derive(Clone)]
struct Leaf {
    spans: [Span; LEAF_CAP],
    n: u32,
    parent: u32,
    next: u32,
}

impl Leaf {
    fn empty() -> Self {
        Leaf {
            spans: [Span::default(); LEAF_CAP],
            n: 0,
            parent: NONE,
            next: NONE,
        }
    }
    #[inline]
    fn spans(&self) -> &[Span] {
        &self.spans[..self.n as usize]
    }
}

#[derive(Clone)]
struct Node {
    children: [u32; NODE_CAP],
    vis: [u32; NODE_CAP],
    wide: [u32; NODE_CAP],
    n: u32,
    parent: u32,
    leaf_children: bool,
}

impl Node {
    fn new(leaf_children: bool) -> Self {
        Node {
            children: [NONE; NODE_CAP],
            vis: [0; NODE_CAP],
            wide: [0; NODE_CAP],
            n: 0,
            parent: NONE,
            leaf_children,
        }
    }
    #[inline]
    fn slot_of(&self, child: u32) -> usize {
        self.children[..self.n as usize]
            .iter()
            .position(|&c| c == child)
            .unwrap_or_else(|| broken("child missing from its parent"))
    }
    fn insert(&mut self, slot: usize, child: u32, vis: u32, wide: u32) {
        let n = self.n as usize;
        self.children.copy_within(slot..n, slot + 1);
        self.vis.copy_within(slot..n, slot + 1);
        self.wide.copy_within(slot..n, slot + 1);
        self.children[slot] = child;
        self.vis[slot] = vis;
        self.wide[slot] = wide;
        self.n += 1;
    }
}

/// Internal invariant broken: a bug in this crate, never bad input.
#[cold]
#[track_caller]
pub(crate) fn broken(what: &str) -> ! {
    panic!("rga content tree invariant broken: {what}")
}

/// The B-tree of spans. See the module docs.
#[derive(Clone)]
pub(crate) struct Tree {
    leaves: Vec<Leaf>,
    nodes: Vec<Node>,
    root: u32,
    root_is_leaf: bool,
    vis_len: u32,
    wide_len: u32,
    total_len: u32,
    index: LvIndex,
    /// The leaf last reached by index and the visible index where it starts. Editing usually
    /// stays in one place, so most lookups start here instead of at the root. Any change outside
    /// that leaf (or a split) forgets it.
    cursor: Cell<Option<(u32, u32)>>,
    /// Bumped by every change of counts (so by every edit).
    edits: u64,
    /// Bumped by every split, which moves spans and children.
    shape: u64,
    /// The (node, slot) path from the leaf last counted up to the root, valid for `shape`.
    path: PathCache,
}

#[derive(Clone, Copy)]
struct PathCache {
    leaf: u32,
    shape: u64,
    len: usize,
    steps: [(u32, u32); 16],
}

impl PathCache {
    const EMPTY: PathCache = PathCache {
        leaf: NONE,
        shape: 0,
        len: 0,
        steps: [(0, 0); 16],
    };
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            leaves: vec![Leaf::empty()],
            nodes: Vec::new(),
            root: 0,
            root_is_leaf: true,
            vis_len: 0,
            wide_len: 0,
            total_len: 0,
            index: LvIndex::default(),
            cursor: Cell::new(None),
            edits: 0,
            shape: 0,
            path: PathCache::EMPTY,
        }
    }
}

impl Tree {
    /// A counter that changes with every edit: a place found earlier is still valid while it is
    /// unchanged.
    #[inline]
    pub fn edits(&self) -> u64 {
        self.edits
    }

    /// Visible characters.
    #[inline]
    pub fn vis_len(&self) -> u32 {
        self.vis_len
    }

    /// Visible text in UTF-16 code units.
    #[inline]
    pub fn utf16_len(&self) -> u32 {
        self.vis_len + self.wide_len
    }

    /// All elements, tombstones included.
    #[inline]
    pub fn total_len(&self) -> u32 {
        self.total_len
    }

    #[inline]
    pub fn span(&self, leaf: u32, idx: u32) -> Span {
        self.leaves[leaf as usize].spans[idx as usize]
    }

    /// Spans in document order.
    pub fn spans(&self) -> impl Iterator<Item = Span> + '_ {
        let mut leaf = 0u32;
        std::iter::from_fn(move || {
            if leaf == NONE {
                return None;
            }
            let l = &self.leaves[leaf as usize];
            leaf = l.next;
            Some(l.spans().iter().copied())
        })
        .flatten()
    }

    /// The visible character at `index` (`index < vis_len`).
    pub fn find_vis(&self, index: u32) -> Pos {
        debug_assert!(index < self.vis_len);
        if let Some((leaf, start)) = self.cursor.get()
            && index >= start
            && let Some(p) = self.scan_leaf(leaf, index - start)
        {
            return p;
        }
        let mut rest = index;
        let mut node = self.root;
        let mut is_leaf = self.root_is_leaf;
        while !is_leaf {
            let n = &self.nodes[node as usize];
            let mut i = 0;
            while i + 1 < n.n as usize && rest >= n.vis[i] {
                rest -= n.vis[i];
                i += 1;
            }
            node = n.children[i];
            is_leaf = n.leaf_children;
        }
        self.cursor.set(Some((node, index - rest)));
        self.scan_leaf(node, rest)
            .unwrap_or_else(|| broken("visible index past the end of its leaf"))
    }

    /// The visible char at `index` counted from the start of `leaf`, if the leaf has it.
    #[inline]
    fn scan_leaf(&self, leaf: u32, mut index: u32) -> Option<Pos> {
        for (i, s) in self.leaves[leaf as usize].spans().iter().enumerate() {
            if index < s.vis() {
                return Some(Pos {
                    leaf,
                    idx: i as u32,
                    off: index,
                });
            }
            index -= s.vis();
        }
        None
    }

    /// The element with local version `lv`.
    #[inline]
    pub fn find_lv(&self, lv: u32) -> Pos {
        let leaf = self.index.leaf(lv);
        for (i, s) in self.leaves[leaf as usize].spans().iter().enumerate() {
            if lv >= s.lv && lv < s.end() {
                return Pos {
                    leaf,
                    idx: i as u32,
                    off: lv - s.lv,
                };
            }
        }
        broken("the index names a leaf without the element")
    }

    /// Visible elements before the place `p` (a gap or an element).
    pub fn vis_before(&self, p: Pos) -> u32 {
        let l = &self.leaves[p.leaf as usize];
        let mut vis = 0u32;
        for s in &l.spans[..p.idx as usize] {
            vis += s.vis();
        }
        if p.off > 0 && !l.spans[p.idx as usize].deleted() {
            vis += p.off;
        }
        if let Some((leaf, start)) = self.cursor.get()
            && leaf == p.leaf
        {
            return start + vis;
        }
        let mut before = 0u32;
        if self.path.leaf == p.leaf && self.path.shape == self.shape {
            // The path the last count update took up from this leaf: no slot searches.
            for &(node, slot) in &self.path.steps[..self.path.len] {
                before += self.nodes[node as usize].vis[..slot as usize]
                    .iter()
                    .sum::<u32>();
            }
        } else {
            let mut child = p.leaf;
            let mut node = l.parent;
            while node != NONE {
                let n = &self.nodes[node as usize];
                let slot = n.slot_of(child);
                before += n.vis[..slot].iter().sum::<u32>();
                child = node;
                node = n.parent;
            }
        }
        self.cursor.set(Some((p.leaf, before)));
        before + vis
    }

    /// UTF-16 code units of the visible text before the place `p`.
    pub fn utf16_before(&self, p: Pos, content: &Content) -> u32 {
        let chars = self.vis_before(p);
        if !content.has_astral() {
            return chars;
        }
        let l = &self.leaves[p.leaf as usize];
        let mut wide = 0u32;
        for s in &l.spans[..p.idx as usize] {
            wide += s.wide(content);
        }
        let s = l.spans[p.idx.min(l.n.saturating_sub(1)) as usize];
        if p.off > 0 && (p.idx as usize) < l.n as usize && !s.deleted() {
            wide += content.astral(s.lv, p.off);
        }
        let mut child = p.leaf;
        let mut node = l.parent;
        while node != NONE {
            let n = &self.nodes[node as usize];
            let slot = n.slot_of(child);
            wide += n.wide[..slot].iter().sum::<u32>();
            child = node;
            node = n.parent;
        }
        chars + wide
    }

    /// The char index at UTF-16 offset `units` of the visible text (`units <= utf16_len`); an
    /// offset inside a surrogate pair rounds down to the pair's char.
    pub fn utf16_to_chars(&self, units: u32, content: &Content) -> u32 {
        if !content.has_astral() || units == 0 {
            return units.min(self.vis_len);
        }
        if units >= self.utf16_len() {
            return self.vis_len;
        }
        let mut rest = units;
        let mut chars = 0u32;
        let mut node = self.root;
        let mut is_leaf = self.root_is_leaf;
        while !is_leaf {
            let n = &self.nodes[node as usize];
            let mut i = 0;
            while i + 1 < n.n as usize && rest >= n.vis[i] + n.wide[i] {
                rest -= n.vis[i] + n.wide[i];
                chars += n.vis[i];
                i += 1;
            }
            node = n.children[i];
            is_leaf = n.leaf_children;
        }
        for s in self.leaves[node as usize].spans() {
            if s.deleted() {
                continue;
            }
            let w = s.wide(content);
            if rest < s.len() + w {
                if w == 0 {
                    return chars + rest;
                }
                for k in 0..s.len() {
                    let units = if content.astral(s.lv + k, 1) > 0 {
                        2
                    } else {
                        1
                    };
                    if rest < units {
                        return chars + k;
                    }
                    rest -= units;
                }
                return chars + s.len();
            }
            rest -= s.len() + w;
            chars += s.len();
        }
        chars
    }

    /// The gap just after element `p`.
    #[inline]
    pub fn gap_after(&self, p: Pos) -> Pos {
        let s = self.span(p.leaf, p.idx);
        if p.off + 1 < s.len() {
            Pos {
                off: p.off + 1,
                ..p
            }
        } else {
            Pos {
                leaf: p.leaf,
                idx: p.idx + 1,
                off: 0,
            }
        }
    }

    /// Moves a gap at the end of a leaf to the start of the next leaf; `None` at the end of the
    /// document. Returns the element right after the gap.
    #[inline]
    pub fn element_after(&self, mut gap: Pos) -> Option<Pos> {
        while gap.idx >= self.leaves[gap.leaf as usize].n {
            let next = self.leaves[gap.leaf as usize].next;
            if next == NONE {
                return None;
            }
            gap = Pos {
                leaf: next,
                idx: 0,
                off: 0,
            };
        }
        Some(gap)
    }

    /// Document order of two elements.
    pub fn cmp_pos(&self, a: Pos, b: Pos) -> Ordering {
        if a.leaf == b.leaf {
            return (a.idx, a.off).cmp(&(b.idx, b.off));
        }
        let path = |leaf: u32| {
            let mut steps = Vec::new();
            let mut child = leaf;
            let mut node = self.leaves[leaf as usize].parent;
            while node != NONE {
                let n = &self.nodes[node as usize];
                steps.push(n.slot_of(child));
                child = node;
                node = n.parent;
            }
            steps.reverse();
            steps
        };
        path(a.leaf).cmp(&path(b.leaf))
    }

    /// Inserts a span of fresh elements (`span.lv` the next lv; `content` already holds them) at
    /// `gap`; returns its place.
    pub fn insert(&mut self, gap: Pos, span: Span, content: &Content) -> Pos {
        debug_assert_eq!(span.lv, self.index.len());
        let (leaf, idx) = if gap.off > 0 {
            let (leaf, idx) = self.make_room(gap.leaf, gap.idx, 2, false, content);
            self.split_span(leaf, idx, gap.off);
            (leaf, idx + 1)
        } else {
            self.make_room(gap.leaf, gap.idx, 1, true, content)
        };
        let l = &mut self.leaves[leaf as usize];
        let n = l.n as usize;
        l.spans.copy_within(idx as usize..n, idx as usize + 1);
        l.spans[idx as usize] = span;
        l.n += 1;
        self.index.push(span.len(), leaf);
        let wide = span.wide(content) as i64;
        self.add_counts(leaf, span.vis() as i64, wide, span.len() as i64);
        Pos { leaf, idx, off: 0 }
    }

    /// Grows the span at (`leaf`, `idx`) by `n` fresh, visible elements (its run was extended;
    /// `content` already holds them).
    pub fn extend(&mut self, leaf: u32, idx: u32, n: u32, content: &Content) {
        let s = &mut self.leaves[leaf as usize].spans[idx as usize];
        debug_assert!(!s.deleted() && s.end() == self.index.len());
        let added = s.end();
        s.set_len(s.len() + n);
        self.index.push(n, leaf);
        let wide = content.astral(added, n) as i64;
        self.add_counts(leaf, n as i64, wide, n as i64);
    }

    /// Marks elements `lv .. lv + len` (one run, possibly in several fragments) deleted. Calls
    /// `on_delete` with the place and length of each stretch that was visible, in order, before
    /// it is marked, and `on_again` with each lv range that was deleted already.
    pub fn delete(
        &mut self,
        lv: u32,
        len: u32,
        content: &Content,
        mut on_delete: impl FnMut(&Self, Pos, u32),
        mut on_again: impl FnMut(u32, u32),
    ) {
        let end = lv + len;
        let mut at = lv;
        while at < end {
            let p = self.find_lv(at);
            let s = self.span(p.leaf, p.idx);
            let chunk_end = s.end().min(end);
            let chunk = chunk_end - at;
            if s.deleted() {
                on_again(at, chunk);
            } else {
                let (leaf, idx) = self.isolate(p, chunk, content);
                on_delete(self, Pos { leaf, idx, off: 0 }, chunk);
                self.tombstone(leaf, idx, content);
            }
            at = chunk_end;
        }
    }

    /// Tombstones `len` visible elements from `p` on, all within `p`'s span.
    pub fn tombstone_at(&mut self, p: Pos, len: u32, content: &Content) {
        let (leaf, idx) = self.isolate(p, len, content);
        self.tombstone(leaf, idx, content);
    }

    /// Marks the visible span (`leaf`, `idx`) deleted and merges it with its neighbours.
    fn tombstone(&mut self, leaf: u32, idx: u32, content: &Content) {
        let s = self.span(leaf, idx);
        let wide = s.wide(content) as i64;
        self.leaves[leaf as usize].spans[idx as usize].set_deleted();
        self.add_counts(leaf, -(s.len() as i64), -wide, 0);
        self.merge_around(leaf, idx);
    }

    /// Splits the span at `p` so that elements `p.off .. p.off + len` form their own span; returns
    /// its (leaf, idx).
    fn isolate(&mut self, p: Pos, len: u32, content: &Content) -> (u32, u32) {
        let s = self.span(p.leaf, p.idx);
        let need = (p.off > 0) as u32 + (p.off + len < s.len()) as u32;
        let (leaf, mut idx) = if need > 0 {
            self.make_room(p.leaf, p.idx, need, false, content)
        } else {
            (p.leaf, p.idx)
        };
        if p.off > 0 {
            self.split_span(leaf, idx, p.off);
            idx += 1;
        }
        if len < self.span(leaf, idx).len() {
            self.split_span(leaf, idx, len);
        }
        (leaf, idx)
    }

    /// Splits span `idx` of `leaf` at `off` (0 < off < len); the leaf must have room.
    fn split_span(&mut self, leaf: u32, idx: u32, off: u32) {
        let l = &mut self.leaves[leaf as usize];
        let (idx, n) = (idx as usize, l.n as usize);
        debug_assert!(n < LEAF_CAP);
        let s = l.spans[idx];
        debug_assert!(off > 0 && off < s.len());
        l.spans.copy_within(idx + 1..n, idx + 2);
        l.spans[idx].set_len(off);
        l.spans[idx + 1] = Span {
            lv: s.lv + off,
            len_del: s.len_del - off,
            run: s.run,
        };
        l.n += 1;
    }

    /// Merges span `idx` with its neighbours where they continue each other.
    fn merge_around(&mut self, leaf: u32, idx: u32) {
        let l = &mut self.leaves[leaf as usize];
        let idx = idx as usize;
        let mut n = l.n as usize;
        if idx + 1 < n && l.spans[idx].joins(l.spans[idx + 1]) {
            let len = l.spans[idx].len() + l.spans[idx + 1].len();
            l.spans[idx].set_len(len);
            l.spans.copy_within(idx + 2..n, idx + 1);
            n -= 1;
        }
        if idx > 0 && l.spans[idx - 1].joins(l.spans[idx]) {
            let len = l.spans[idx - 1].len() + l.spans[idx].len();
            l.spans[idx - 1].set_len(len);
            l.spans.copy_within(idx + 1..n, idx);
            n -= 1;
        }
        l.n = n as u32;
    }

    /// Makes room for `need` more spans in `leaf`, splitting it when full. `idx` names a span
    /// (or, when `gap`, an insertion point); returns where it is afterwards.
    fn make_room(
        &mut self,
        leaf: u32,
        idx: u32,
        need: u32,
        gap: bool,
        content: &Content,
    ) -> (u32, u32) {
        let n = self.leaves[leaf as usize].n;
        if (n + need) as usize <= LEAF_CAP {
            return (leaf, idx);
        }
        if gap && idx == n {
            // Appending at the end of a full leaf (typing on): a new leaf, nothing moves.
            return (self.split_leaf(leaf, n, content), 0);
        }
        let half = n / 2;
        let right = self.split_leaf(leaf, half, content);
        if idx < half || (gap && idx == half) {
            (leaf, idx)
        } else {
            (right, idx - half)
        }
    }

    /// Moves spans `at..` of `leaf` into a new leaf placed right after it; returns the new leaf.
    fn split_leaf(&mut self, leaf: u32, at: u32, content: &Content) -> u32 {
        self.cursor.set(None);
        self.shape += 1;
        let parent = self.leaves[leaf as usize].parent;
        if parent != NONE {
            self.make_node_room(parent);
        }
        let right = self.leaves.len() as u32;
        let mut new = Leaf::empty();
        {
            let l = &mut self.leaves[leaf as usize];
            let moved = &l.spans[at as usize..l.n as usize];
            new.spans[..moved.len()].copy_from_slice(moved);
            new.n = moved.len() as u32;
            new.next = l.next;
            l.next = right;
            l.n = at;
        }
        let (mut vis, mut wide) = (0u32, 0u32);
        // The moved spans' lvs, coalesced where consecutive (fragments of one run).
        let mut range: Option<(u32, u32)> = None;
        for s in new.spans() {
            vis += s.vis();
            wide += s.wide(content);
            range = match range {
                Some((lv, len)) if lv + len == s.lv => Some((lv, len + s.len())),
                Some((lv, len)) => {
                    self.index.assign(lv, len, right);
                    Some((s.lv, s.len()))
                }
                None => Some((s.lv, s.len())),
            };
        }
        if let Some((lv, len)) = range {
            self.index.assign(lv, len, right);
        }
        self.leaves.push(new);
        // The parent may have changed if making room split it.
        let parent = self.leaves[leaf as usize].parent;
        if parent == NONE {
            let left = (self.vis_len - vis, self.wide_len - wide);
            self.new_root(leaf, right, true, left, (vis, wide));
        } else {
            let p = &mut self.nodes[parent as usize];
            let slot = p.slot_of(leaf);
            p.vis[slot] -= vis;
            p.wide[slot] -= wide;
            p.insert(slot + 1, right, vis, wide);
            self.leaves[right as usize].parent = parent;
        }
        right
    }

    /// Makes sure internal node `node` can take one more child, splitting it when full.
    fn make_node_room(&mut self, node: u32) {
        if (self.nodes[node as usize].n as usize) < NODE_CAP {
            return;
        }
        self.shape += 1;
        let parent = self.nodes[node as usize].parent;
        if parent != NONE {
            self.make_node_room(parent);
        }
        let half = NODE_CAP / 2;
        let right = self.nodes.len() as u32;
        let mut new = Node::new(self.nodes[node as usize].leaf_children);
        let (mut vis, mut wide) = (0u32, 0u32);
        {
            let n = &mut self.nodes[node as usize];
            for i in half..NODE_CAP {
                new.children[i - half] = n.children[i];
                new.vis[i - half] = n.vis[i];
                new.wide[i - half] = n.wide[i];
                vis += n.vis[i];
                wide += n.wide[i];
            }
            new.n = (NODE_CAP - half) as u32;
            n.n = half as u32;
        }
        for &c in &new.children[..new.n as usize] {
            if new.leaf_children {
                self.leaves[c as usize].parent = right;
            } else {
                self.nodes[c as usize].parent = right;
            }
        }
        self.nodes.push(new);
        let parent = self.nodes[node as usize].parent;
        if parent == NONE {
            let left = (self.vis_len - vis, self.wide_len - wide);
            self.new_root(node, right, false, left, (vis, wide));
        } else {
            let p = &mut self.nodes[parent as usize];
            let slot = p.slot_of(node);
            p.vis[slot] -= vis;
            p.wide[slot] -= wide;
            p.insert(slot + 1, right, vis, wide);
            self.nodes[right as usize].parent = parent;
        }
    }

    fn new_root(&mut self, left: u32, right: u32, leaves: bool, l: (u32, u32), r: (u32, u32)) {
        let id = self.nodes.len() as u32;
        let mut root = Node::new(leaves);
        root.insert(0, left, l.0, l.1);
        root.insert(1, right, r.0, r.1);
        self.nodes.push(root);
        if leaves {
            self.leaves[left as usize].parent = id;
            self.leaves[right as usize].parent = id;
        } else {
            self.nodes[left as usize].parent = id;
            self.nodes[right as usize].parent = id;
        }
        self.root = id;
        self.root_is_leaf = false;
    }

    /// Adds to the visible (and astral) count of `leaf` and of every ancestor, and to the totals.
    #[inline]
    fn add_counts(&mut self, leaf: u32, vis: i64, wide: i64, total: i64) {
        if let Some((cached, _)) = self.cursor.get()
            && cached != leaf
        {
            self.cursor.set(None);
        }
        self.edits += 1;
        self.total_len = self.total_len.wrapping_add(total as u32);
        if vis == 0 {
            return;
        }
        let (dv, dw) = (vis as u32, wide as u32);
        self.vis_len = self.vis_len.wrapping_add(dv);
        self.wide_len = self.wide_len.wrapping_add(dw);
        if self.path.leaf != leaf || self.path.shape != self.shape {
            let mut path = PathCache {
                leaf,
                shape: self.shape,
                ..PathCache::EMPTY
            };
            let mut child = leaf;
            let mut node = self.leaves[leaf as usize].parent;
            while node != NONE {
                let n = &self.nodes[node as usize];
                path.steps[path.len] = (node, n.slot_of(child) as u32);
                path.len += 1;
                child = node;
                node = n.parent;
            }
            self.path = path;
        }
        for &(node, slot) in &self.path.steps[..self.path.len] {
            let n = &mut self.nodes[node as usize];
            n.vis[slot as usize] = n.vis[slot as usize].wrapping_add(dv);
            if dw != 0 {
                n.wide[slot as usize] = n.wide[slot as usize].wrapping_add(dw);
            }
        }
    }

    /// Builds a tree from spans in document order (used by the snapshot decoder). The spans'
    /// elements must cover `0..lv_count` exactly once.
    pub fn from_spans(spans: &[Span], lv_count: u32, content: &Content) -> Tree {
        let mut tree = Tree::default();
        if spans.is_empty() {
            return tree;
        }
        // Fill leaves three-quarters full so that the first edits do not split every leaf.
        let per_leaf = LEAF_CAP * 3 / 4;
        tree.leaves.clear();
        tree.leaves.reserve_exact(spans.len().div_ceil(per_leaf));
        let mut level: Vec<(u32, u32, u32)> = Vec::new();
        let mut ranges: Vec<(u32, u32, u32)> = Vec::with_capacity(spans.len());
        for chunk in spans.chunks(per_leaf) {
            let id = tree.leaves.len() as u32;
            let mut leaf = Leaf::empty();
            leaf.n = chunk.len() as u32;
            leaf.spans[..chunk.len()].copy_from_slice(chunk);
            let (mut vis, mut wide) = (0u32, 0u32);
            for s in chunk {
                vis += s.vis();
                wide += s.wide(content);
                tree.total_len += s.len();
                match ranges.last_mut() {
                    Some(r) if r.2 == id && r.0 + r.1 == s.lv => r.1 += s.len(),
                    _ => ranges.push((s.lv, s.len(), id)),
                }
            }
            if let Some(prev) = tree.leaves.last_mut() {
                prev.next = id;
            }
            tree.leaves.push(leaf);
            level.push((id, vis, wide));
        }
        tree.index = LvIndex::from_ranges(ranges, lv_count);
        tree.vis_len = level.iter().map(|c| c.1).sum();
        tree.wide_len = level.iter().map(|c| c.2).sum();
        let mut leaf_children = true;
        let per_node = NODE_CAP * 3 / 4;
        while level.len() > 1 {
            let mut up = Vec::with_capacity(level.len().div_ceil(per_node));
            for chunk in level.chunks(per_node) {
                let id = tree.nodes.len() as u32;
                let mut node = Node::new(leaf_children);
                for (i, &(child, vis, wide)) in chunk.iter().enumerate() {
                    node.insert(i, child, vis, wide);
                    if leaf_children {
                        tree.leaves[child as usize].parent = id;
                    } else {
                        tree.nodes[child as usize].parent = id;
                    }
                }
                let k = chunk.len();
                up.push((id, node.vis[..k].iter().sum(), node.wide[..k].iter().sum()));
                tree.nodes.push(node);
            }
            level = up;
            leaf_children = false;
        }
        tree.root = level[0].0;
        tree.root_is_leaf = tree.nodes.is_empty();
        tree.nodes.shrink_to_fit();
        tree.index.shrink_to_fit();
        tree
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.leaves.capacity() * std::mem::size_of::<Leaf>()
            + self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.index.heap_bytes()
    }

    /// Checks every invariant of the module docs; panics with a description when one fails.
    pub fn check(&self, content: &Content) {
        self.index.check();
        let (vis, wide) = self.check_subtree(self.root, self.root_is_leaf, NONE, content);
        assert_eq!(vis, self.vis_len, "root count");
        assert_eq!(wide, self.wide_len, "root astral count");
        let mut leaf = 0u32;
        let mut seen_total = 0u64;
        let mut chained = 0usize;
        while leaf != NONE {
            let l = &self.leaves[leaf as usize];
            assert!(l.n > 0 || self.total_len == 0, "empty leaf {leaf}");
            for s in l.spans() {
                assert!(s.len() > 0, "empty span");
                for lv in [s.lv, s.end() - 1] {
                    assert_eq!(self.index.leaf(lv), leaf, "index of lv {lv}");
                }
                seen_total += s.len() as u64;
            }
            chained += 1;
            leaf = l.next;
        }
        assert_eq!(chained, self.leaves.len(), "leaf chain misses leaves");
        assert_eq!(seen_total, self.total_len as u64, "leaf chain total");
        assert_eq!(self.index.len() as u64, seen_total, "index length");
        for lv in 0..self.total_len {
            let p = self.find_lv(lv);
            assert_eq!(self.span(p.leaf, p.idx).lv + p.off, lv, "find_lv({lv})");
        }
        if let Some((leaf, start)) = self.cursor.get() {
            let expected = self.vis_before_uncached(leaf);
            assert_eq!(start, expected, "cursor of leaf {leaf}");
        }
    }

    fn vis_before_uncached(&self, leaf: u32) -> u32 {
        let mut before = 0;
        let mut l = 0u32;
        while l != leaf && l != NONE {
            before += self.leaves[l as usize]
                .spans()
                .iter()
                .map(|s| s.vis())
                .sum::<u32>();
            l = self.leaves[l as usize].next;
        }
        before
    }

    fn check_subtree(
        &self,
        node: u32,
        is_leaf: bool,
        parent: u32,
        content: &Content,
    ) -> (u32, u32) {
        if is_leaf {
            let l = &self.leaves[node as usize];
            assert_eq!(l.parent, parent, "leaf {node} parent link");
            let vis = l.spans().iter().map(|s| s.vis()).sum();
            let wide = l.spans().iter().map(|s| s.wide(content)).sum();
            return (vis, wide);
        }
        let n = &self.nodes[node as usize];
        assert_eq!(n.parent, parent, "node {node} parent link");
        assert!(n.n >= 1, "empty internal node");
        let (mut vis, mut wide) = (0, 0);
        for i in 0..n.n as usize {
            let got = self.check_subtree(n.children[i], n.leaf_children, node, content);
            assert_eq!(got.0, n.vis[i], "count of child {i} of node {node}");
            assert_eq!(got.1, n.wide[i], "astral count of child {i} of node {node}");
            vis += got.0;
            wide += got.1;
        }
        (vis, wide)
    }
}
