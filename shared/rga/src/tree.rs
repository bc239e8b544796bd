//! The content tree: every element of the document (tombstones included) in document order,
//! grouped into spans, stored in a B-tree whose internal nodes count the visible characters
//! under each child. Index → element and element → index both cost O(log n).
//!
//! A span is a fragment of one insert run (consecutive characters typed by one site, stored
//! under consecutive local versions, "lv"), wholly visible or wholly deleted. `lv_leaf[lv]`
//! names the leaf holding each element, so finding an element by identifier is a table read and
//! a scan of one leaf. Spans split on demand and adjacent fragments of the same run merge back.
//!
//! Invariants (checked by [`Tree::check`]):
//! - leaves are chained by `next` in document order starting at leaf 0, and every leaf but the
//!   root of an empty tree holds at least one span;
//! - an internal node's `vis[i]` is the number of visible characters under child `i`, and the
//!   tree's `vis_len` their sum at the root (`total_len` counts tombstones too);
//! - every `parent` link points at the node that lists the child;
//! - `lv_leaf[lv]` is the leaf whose span contains `lv`.
//!
//! Nodes never underflow: elements are never removed (deletes leave tombstones), so the tree only
//! grows, and leaves only split.

use std::cell::Cell;

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

#[derive(Clone)]
struct Node {
    children: [u32; NODE_CAP],
    vis: [u32; NODE_CAP],
    n: u32,
    parent: u32,
    leaf_children: bool,
}

impl Node {
    fn new(leaf_children: bool) -> Self {
        Node {
            children: [NONE; NODE_CAP],
            vis: [0; NODE_CAP],
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
    fn insert(&mut self, slot: usize, child: u32, vis: u32) {
        let n = self.n as usize;
        self.children.copy_within(slot..n, slot + 1);
        self.vis.copy_within(slot..n, slot + 1);
        self.children[slot] = child;
        self.vis[slot] = vis;
        self.n += 1;
    }
}

/// Internal invariant broken: a bug in this crate, never bad input.
#[cold]
#[track_caller]
fn broken(what: &str) -> ! {
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
    total_len: u32,
    pub lv_leaf: Vec<u32>,
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

impl Default for Tree {
    fn default() -> Self {
        Tree {
            leaves: vec![Leaf {
                spans: [Span::default(); LEAF_CAP],
                n: 0,
                parent: NONE,
                next: NONE,
            }],
            nodes: Vec::new(),
            root: 0,
            root_is_leaf: true,
            vis_len: 0,
            total_len: 0,
            lv_leaf: Vec::new(),
            cursor: Cell::new(None),
            edits: 0,
            shape: 0,
            path: PathCache {
                leaf: NONE,
                shape: 0,
                len: 0,
                steps: [(0, 0); 16],
            },
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
            let spans = &l.spans[..l.n as usize];
            leaf = l.next;
            Some(spans.iter().copied())
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
        let l = &self.leaves[leaf as usize];
        for (i, s) in l.spans[..l.n as usize].iter().enumerate() {
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
        let leaf = self.lv_leaf[lv as usize];
        let l = &self.leaves[leaf as usize];
        for (i, s) in l.spans[..l.n as usize].iter().enumerate() {
            if lv >= s.lv && lv < s.end() {
                return Pos {
                    leaf,
                    idx: i as u32,
                    off: lv - s.lv,
                };
            }
        }
        broken("lv_leaf names a leaf without the element")
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
        let mut child = p.leaf;
        let mut node = l.parent;
        let mut before = 0u32;
        while node != NONE {
            let n = &self.nodes[node as usize];
            let slot = n.slot_of(child);
            before += n.vis[..slot].iter().sum::<u32>();
            child = node;
            node = n.parent;
        }
        self.cursor.set(Some((p.leaf, before)));
        before + vis
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

    /// Inserts a span of fresh elements (`span.lv == lv_leaf.len()`) at `gap`; returns its place.
    pub fn insert(&mut self, gap: Pos, span: Span) -> Pos {
        debug_assert_eq!(span.lv as usize, self.lv_leaf.len());
        let (leaf, idx) = if gap.off > 0 {
            let (leaf, idx) = self.make_room(gap.leaf, gap.idx, 2, false);
            self.split_span(leaf, idx, gap.off);
            (leaf, idx + 1)
        } else {
            self.make_room(gap.leaf, gap.idx, 1, true)
        };
        let l = &mut self.leaves[leaf as usize];
        let n = l.n as usize;
        l.spans.copy_within(idx as usize..n, idx as usize + 1);
        l.spans[idx as usize] = span;
        l.n += 1;
        self.lv_leaf.resize(span.end() as usize, leaf);
        self.add_counts(leaf, span.vis() as i64, span.len() as i64);
        Pos { leaf, idx, off: 0 }
    }

    /// Grows the span at (`leaf`, `idx`) by `n` fresh, visible elements (its run was extended).
    pub fn extend(&mut self, leaf: u32, idx: u32, n: u32) {
        let s = &mut self.leaves[leaf as usize].spans[idx as usize];
        debug_assert!(!s.deleted() && s.end() as usize == self.lv_leaf.len());
        s.set_len(s.len() + n);
        let end = s.end() as usize;
        self.lv_leaf.resize(end, leaf);
        self.add_counts(leaf, n as i64, n as i64);
    }

    /// Marks elements `lv .. lv + len` (one run, possibly in several fragments) deleted. With
    /// `on_delete`, calls it with (visible index, count) for each stretch that was visible, in
    /// order.
    pub fn delete(&mut self, lv: u32, len: u32, mut on_delete: Option<&mut dyn FnMut(u32, u32)>) {
        let end = lv + len;
        let mut at = lv;
        while at < end {
            let p = self.find_lv(at);
            let s = self.span(p.leaf, p.idx);
            let chunk_end = s.end().min(end);
            if !s.deleted() {
                let chunk = chunk_end - at;
                let (leaf, idx) = self.isolate(p, chunk);
                if let Some(f) = on_delete.as_deref_mut() {
                    f(self.vis_before(Pos { leaf, idx, off: 0 }), chunk);
                }
                self.leaves[leaf as usize].spans[idx as usize].set_deleted();
                self.add_counts(leaf, -(chunk as i64), 0);
                self.merge_around(leaf, idx);
            }
            at = chunk_end;
        }
    }
    /// Splits the span at `p` so that elements `p.off .. p.off + len` form their own span; returns
    /// its (leaf, idx).
    fn isolate(&mut self, p: Pos, len: u32) -> (u32, u32) {
        let s = self.span(p.leaf, p.idx);
        let need = (p.off > 0) as u32 + (p.off + len < s.len()) as u32;
        let (leaf, mut idx) = if need > 0 {
            self.make_room(p.leaf, p.idx, need, false)
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
    fn make_room(&mut self, leaf: u32, idx: u32, need: u32, gap: bool) -> (u32, u32) {
        if (self.leaves[leaf as usize].n + need) as usize <= LEAF_CAP {
            return (leaf, idx);
        }
        let half = self.leaves[leaf as usize].n / 2;
        let right = self.split_leaf(leaf, half);
        if idx < half || (gap && idx == half) {
            (leaf, idx)
        } else {
            (right, idx - half)
        }
    }

    /// Moves spans `at..` of `leaf` into a new leaf placed right after it; returns the new leaf.
    fn split_leaf(&mut self, leaf: u32, at: u32) -> u32 {
        self.cursor.set(None);
        self.shape += 1;
        let parent = self.leaves[leaf as usize].parent;
        if parent != NONE {
            self.make_node_room(parent);
        }
        let right = self.leaves.len() as u32;
        let mut vis = 0u32;
        let mut new = Leaf {
            spans: [Span::default(); LEAF_CAP],
            n: 0,
            parent: NONE,
            next: NONE,
        };
        {
            let l = &mut self.leaves[leaf as usize];
            let n = l.n as usize;
            let moved = &l.spans[at as usize..n];
            new.spans[..moved.len()].copy_from_slice(moved);
            new.n = moved.len() as u32;
            new.next = l.next;
            l.next = right;
            l.n = at;
            for s in moved {
                vis += s.vis();
                self.lv_leaf[s.lv as usize..s.end() as usize].fill(right);
            }
        }
        self.leaves.push(new);
        // The parent may have changed if making room split it.
        let parent = self.leaves[leaf as usize].parent;
        if parent == NONE {
            self.new_root(leaf, right, true, self.vis_len - vis, vis);
        } else {
            let p = &mut self.nodes[parent as usize];
            let slot = p.slot_of(leaf);
            p.vis[slot] -= vis;
            p.insert(slot + 1, right, vis);
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
        let mut vis = 0u32;
        {
            let n = &mut self.nodes[node as usize];
            for i in half..NODE_CAP {
                new.children[i - half] = n.children[i];
                new.vis[i - half] = n.vis[i];
                vis += n.vis[i];
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
            self.new_root(node, right, false, self.vis_len - vis, vis);
        } else {
            let p = &mut self.nodes[parent as usize];
            let slot = p.slot_of(node);
            p.vis[slot] -= vis;
            p.insert(slot + 1, right, vis);
            self.nodes[right as usize].parent = parent;
        }
    }

    fn new_root(&mut self, left: u32, right: u32, leaves: bool, left_vis: u32, right_vis: u32) {
        let id = self.nodes.len() as u32;
        let mut root = Node::new(leaves);
        root.insert(0, left, left_vis);
        root.insert(1, right, right_vis);
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

    /// Adds to the visible count of `leaf` and of every ancestor, and to the totals.
    #[inline]
    fn add_counts(&mut self, leaf: u32, vis: i64, total: i64) {
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
        let dv = vis as u32;
        self.vis_len = self.vis_len.wrapping_add(dv);
        if self.path.leaf != leaf || self.path.shape != self.shape {
            let mut path = PathCache {
                leaf,
                shape: self.shape,
                len: 0,
                steps: [(0, 0); 16],
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
            let v = &mut self.nodes[node as usize].vis[slot as usize];
            *v = v.wrapping_add(dv);
        }
    }

    /// Builds a tree from spans in document order (used by the snapshot decoder). The spans'
    /// elements must cover `0..lv_count` exactly once.
    pub fn from_spans(spans: &[Span], lv_count: u32) -> Tree {
        let mut tree = Tree {
            lv_leaf: vec![0; lv_count as usize],
            ..Tree::default()
        };
        if spans.is_empty() {
            return tree;
        }
        // Fill leaves three-quarters full so that the first edits do not split every leaf.
        let per_leaf = LEAF_CAP * 3 / 4;
        tree.leaves.clear();
        let mut level: Vec<(u32, u32)> = Vec::new();
        for chunk in spans.chunks(per_leaf) {
            let id = tree.leaves.len() as u32;
            let mut leaf = Leaf {
                spans: [Span::default(); LEAF_CAP],
                n: chunk.len() as u32,
                parent: NONE,
                next: NONE,
            };
            leaf.spans[..chunk.len()].copy_from_slice(chunk);
            let mut vis = 0u32;
            for s in chunk {
                vis += s.vis();
                tree.total_len += s.len();
                tree.lv_leaf[s.lv as usize..s.end() as usize].fill(id);
            }
            if let Some(prev) = tree.leaves.last_mut() {
                prev.next = id;
            }
            tree.leaves.push(leaf);
            level.push((id, vis));
        }
        tree.vis_len = level.iter().map(|c| c.1).sum();
        let mut leaf_children = true;
        let per_node = NODE_CAP * 3 / 4;
        while level.len() > 1 {
            let mut up = Vec::new();
            for chunk in level.chunks(per_node) {
                let id = tree.nodes.len() as u32;
                let mut node = Node::new(leaf_children);
                for (i, &(child, vis)) in chunk.iter().enumerate() {
                    node.insert(i, child, vis);
                    if leaf_children {
                        tree.leaves[child as usize].parent = id;
                    } else {
                        tree.nodes[child as usize].parent = id;
                    }
                }
                up.push((id, node.vis[..chunk.len()].iter().sum()));
                tree.nodes.push(node);
            }
            level = up;
            leaf_children = false;
        }
        tree.root = level[0].0;
        tree.root_is_leaf = tree.nodes.is_empty();
        tree
    }

    /// Checks every invariant of the module docs; panics with a description when one fails.
    pub fn check(&self) {
        let vis = self.check_subtree(self.root, self.root_is_leaf, NONE);
        assert_eq!(vis, self.vis_len, "root count");
        let mut leaf = 0u32;
        let mut seen_total = 0u64;
        let mut chained = 0usize;
        while leaf != NONE {
            let l = &self.leaves[leaf as usize];
            assert!(l.n > 0 || self.total_len == 0, "empty leaf {leaf}");
            for s in &l.spans[..l.n as usize] {
                assert!(s.len() > 0, "empty span");
                for lv in s.lv..s.end() {
                    assert_eq!(self.lv_leaf[lv as usize], leaf, "lv_leaf[{lv}]");
                }
                seen_total += s.len() as u64;
            }
            chained += 1;
            leaf = l.next;
        }
        assert_eq!(chained, self.leaves.len(), "leaf chain misses leaves");
        assert_eq!(seen_total, self.total_len as u64, "leaf chain total");
        assert_eq!(self.lv_leaf.len() as u64, seen_total, "lv_leaf length");
        if let Some((leaf, start)) = self.cursor.get() {
            let expected = self.vis_before_uncached(leaf);
            assert_eq!(start, expected, "cursor of leaf {leaf}");
        }
    }

    fn vis_before_uncached(&self, leaf: u32) -> u32 {
        let mut before = 0;
        let mut l = 0u32;
        while l != leaf && l != NONE {
            before += self.leaves[l as usize].spans[..self.leaves[l as usize].n as usize]
                .iter()
                .map(|s| s.vis())
                .sum::<u32>();
            l = self.leaves[l as usize].next;
        }
        before
    }

    fn check_subtree(&self, node: u32, is_leaf: bool, parent: u32) -> u32 {
        if is_leaf {
            let l = &self.leaves[node as usize];
            assert_eq!(l.parent, parent, "leaf {node} parent link");
            return l.spans[..l.n as usize].iter().map(|s| s.vis()).sum();
        }
        let n = &self.nodes[node as usize];
        assert_eq!(n.parent, parent, "node {node} parent link");
        assert!(n.n >= 1, "empty internal node");
        let mut vis = 0;
        for i in 0..n.n as usize {
            let got = self.check_subtree(n.children[i], n.leaf_children, node);
            assert_eq!(got, n.vis[i], "count of child {i} of node {node}");
            vis += got;
        }
        vis
    }
}
