//! The replica: one copy of a document, its operation log and its waiting buffer.
//!
//! `Rga` owns the content tree (document order, tombstones included), the [`Content`] of every
//! inserted character by lv, the [`Log`] of operations by site, and the operations waiting for
//! their causes. Local edits (`insert`, `delete`, `splice`, ... in `local.rs`) produce operations;
//! remote operations arrive through `apply` (in `apply.rs`). Both paths share `integrate_*`, so a
//! local edit and the same operation applied remotely yield the same state.

use rustc_hash::FxHashMap;

use crate::content::Content;
use crate::id::{CharId, Precedence, SiteId};
use crate::limits::Limits;
use crate::log::{Log, LvRange};
use crate::op::Op;
use crate::pending::Pending;
use crate::tree::Tree;

/// How positions in reported [`Change`](crate::Change)s are counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Units {
    /// Unicode scalar values (Rust `char`s), the crate's own positions.
    #[default]
    Chars,
    /// UTF-16 code units, what JavaScript strings and editors count.
    Utf16,
}

/// A stable place in the text: just after a character (by identifier), or the start. It keeps
/// pointing at the same place whatever is inserted or deleted elsewhere, and resolves back to an
/// index with [`Rga::resolve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Anchor(pub Option<CharId>);

/// A Replicated Growable Array of characters. See the crate documentation.
#[derive(Clone)]
pub struct Rga {
    pub(crate) ssn: u32,
    pub(crate) tree: Tree,
    pub(crate) content: Content,
    pub(crate) log: Log,
    /// Characters whose value an update replaced: lv → (precedence of the winning write, value).
    pub(crate) values: FxHashMap<u32, (Precedence, char)>,
    pub(crate) pending: Pending,
    pub(crate) limits: Limits,
    pub(crate) units: Units,
    /// Where the last local insert ended (typing goes on there).
    pub(crate) typing: Option<crate::local::Typing>,
    /// A buffer reused by local deletes.
    pub(crate) scratch: Vec<LvRange>,
}

impl Default for Rga {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Rga {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rga")
            .field("ssn", &self.ssn)
            .field("len", &self.len())
            .field("elements", &self.tree.total_len())
            .field("sites", &self.log.agents.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Rga {
    /// An empty document in global session 1.
    pub fn new() -> Self {
        Self::with_session(1)
    }

    /// An empty document whose local operations use session number `ssn`; remote operations with
    /// a higher session number are refused as unknown.
    pub fn with_session(ssn: u32) -> Self {
        Rga {
            ssn,
            tree: Tree::default(),
            content: Content::default(),
            log: Log::default(),
            values: FxHashMap::default(),
            pending: Pending::default(),
            limits: Limits::default(),
            units: Units::Chars,
            typing: None,
            scratch: Vec::new(),
        }
    }

    /// The session number of local operations (the highest one accepted).
    pub fn session(&self) -> u32 {
        self.ssn
    }

    /// Moves to a later global session; earlier session numbers stay valid.
    pub fn set_session(&mut self, ssn: u32) {
        self.ssn = self.ssn.max(ssn);
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Replaces the limits (they apply to operations from now on).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// How positions in reported changes are counted (chars by default).
    pub fn set_units(&mut self, units: Units) {
        self.units = units;
    }

    /// Length of the visible text, in chars (Unicode scalar values).
    pub fn len(&self) -> usize {
        self.tree.vis_len() as usize
    }

    /// Length of the visible text in UTF-16 code units.
    pub fn utf16_len(&self) -> usize {
        self.tree.utf16_len() as usize
    }

    /// Whether the visible text is empty.
    pub fn is_empty(&self) -> bool {
        self.tree.vis_len() == 0
    }

    /// Number of elements, tombstones included.
    pub fn element_count(&self) -> usize {
        self.tree.total_len() as usize
    }

    /// Number of operations waiting for their causes.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Number of operations of `site` waiting for their causes.
    pub fn pending_of(&self, site: SiteId) -> usize {
        self.pending.of_site(site)
    }

    /// The operations waiting for their causes.
    pub fn pending_ops(&self) -> Vec<Op> {
        self.pending.ops().cloned().collect()
    }

    /// Whether `id` waits in the buffer.
    pub fn is_pending(&self, id: CharId) -> bool {
        self.pending.get(id).is_some()
    }

    /// The next sequence number this replica expects from `site`.
    pub fn next_seq(&self, site: SiteId) -> u64 {
        self.log.next_seq(site)
    }

    /// Whether the operation `id` has been applied.
    pub fn contains(&self, id: CharId) -> bool {
        self.log.contains(id)
    }

    /// The version vector: every site's highest applied sequence number.
    pub fn version(&self) -> crate::VersionVector {
        self.log.version()
    }

    /// Whether every operation of `version` has been applied here.
    pub fn has_received(&self, version: &crate::VersionVector) -> bool {
        version
            .iter()
            .all(|(site, seq)| seq < self.log.next_seq(site))
    }

    /// Every applied operation that `version` lacks, in an order in which they can be applied
    /// (causes first), run-length merged. `ops_since(&VersionVector::new())` is the whole log.
    /// Inserts longer than [`Limits::max_op_len`] go out in pieces peers accept.
    pub fn ops_since(&self, version: &crate::VersionVector) -> Vec<Op> {
        self.log
            .ops_since(&self.content, version, self.limits.max_op_len)
    }

    /// The operations of `site` from sequence number `from` on.
    pub fn ops_of_site_since(&self, site: SiteId, from: u64) -> Vec<Op> {
        self.log
            .ops_of_site_since(&self.content, site, from, self.limits.max_op_len)
    }

    /// As [`Rga::ops_of_site_since`], with no op longer than `max_len` characters or delete
    /// targets (at least 1): for a transport with a smaller message limit than the op limit.
    pub fn ops_of_site_since_cut(&self, site: SiteId, from: u64, max_len: u64) -> Vec<Op> {
        let max_len = max_len.clamp(1, self.limits.max_op_len);
        self.log
            .ops_of_site_since(&self.content, site, from, max_len)
    }

    /// The current value of the character at `lv`.
    #[inline]
    pub(crate) fn value(&self, lv: u32) -> char {
        if !self.values.is_empty()
            && let Some(&(_, c)) = self.values.get(&lv)
        {
            return c;
        }
        self.content.get(lv)
    }

    /// The visible text.
    pub fn text(&self) -> String {
        let mut out = String::with_capacity(self.len());
        for s in self.tree.spans() {
            if s.deleted() {
                continue;
            }
            if self.values.is_empty() {
                self.content.push_to(s.lv, s.end(), &mut out);
            } else {
                out.extend((s.lv..s.end()).map(|lv| self.value(lv)));
            }
        }
        out
    }

    /// The visible text from char `start` to char `end` (clamped to the end), in
    /// O((k + runs) log n) for k chars.
    pub fn slice(&self, start: usize, end: usize) -> String {
        let end = end.min(self.len());
        let mut out = String::new();
        let mut i = start;
        while i < end {
            let p = self.tree.find_vis(i as u32);
            let s = self.tree.span(p.leaf, p.idx);
            let take = (s.len() - p.off).min((end - i) as u32);
            let from = s.lv + p.off;
            if self.values.is_empty() {
                self.content.push_to(from, from + take, &mut out);
            } else {
                out.extend((from..from + take).map(|lv| self.value(lv)));
            }
            i += take as usize;
        }
        out
    }

    /// The identifier of the visible character at `index`, for anchoring a cursor that survives
    /// concurrent edits; `None` past the end.
    pub fn id_at(&self, index: usize) -> Option<CharId> {
        if index >= self.len() {
            return None;
        }
        let p = self.tree.find_vis(index as u32);
        let s = self.tree.span(p.leaf, p.idx);
        Some(self.log.char_s4(s.run, s.lv + p.off).id())
    }

    /// The current index of character `id`: where it is if visible, or where it would be (the
    /// index of the next visible character) if deleted. `None` if unknown.
    pub fn index_of(&self, id: CharId) -> Option<usize> {
        let (_, lv) = self.log.char_at(id).ok()??;
        let p = self.tree.find_lv(lv);
        Some(self.tree.vis_before(p) as usize)
    }

    /// Whether character `id` is visible (`Some(false)`: deleted; `None`: unknown).
    pub fn is_visible(&self, id: CharId) -> Option<bool> {
        let (_, lv) = self.log.char_at(id).ok()??;
        let p = self.tree.find_lv(lv);
        Some(!self.tree.span(p.leaf, p.idx).deleted())
    }

    /// A stable reference to the place before the visible character at `index` (in chars):
    /// just after the character before it, or the start.
    pub fn anchor_at(&self, index: usize) -> Anchor {
        if index == 0 || self.is_empty() {
            return Anchor(None);
        }
        Anchor(self.id_at(index.min(self.len()) - 1))
    }

    /// The current index (in chars) of an anchor: just after its character, which keeps its
    /// place while deleted. An anchor naming an unknown character resolves to the end.
    pub fn resolve(&self, anchor: Anchor) -> usize {
        let Some(id) = anchor.0 else { return 0 };
        match self.log.char_at(id) {
            Ok(Some((_, lv))) => {
                let p = self.tree.find_lv(lv);
                let visible = !self.tree.span(p.leaf, p.idx).deleted();
                self.tree.vis_before(p) as usize + visible as usize
            }
            _ => self.len(),
        }
    }

    /// The UTF-16 offset of char index `index` (clamped to the end).
    pub fn chars_to_utf16(&self, index: usize) -> usize {
        let index = index.min(self.len()) as u32;
        if !self.content.has_astral() {
            return index as usize;
        }
        if index == self.tree.vis_len() {
            return self.tree.utf16_len() as usize;
        }
        let p = self.tree.find_vis(index);
        self.tree.utf16_before(p, &self.content) as usize
    }

    /// The char index at UTF-16 offset `units` (clamped to the end); an offset inside a
    /// surrogate pair rounds down to the start of its character.
    pub fn utf16_to_chars(&self, units: usize) -> usize {
        let units = units.min(u32::MAX as usize) as u32;
        self.tree.utf16_to_chars(units, &self.content) as usize
    }

    /// The char index at UTF-16 offset `units`, rounding an offset inside a surrogate pair up to
    /// the end of its character (for the end of a range).
    pub fn utf16_to_chars_up(&self, units: usize) -> usize {
        let down = self.utf16_to_chars(units);
        if down < self.len() && self.chars_to_utf16(down) < units {
            down + 1
        } else {
            down
        }
    }

    /// A position in the reported unit for the visible place `p`.
    pub(crate) fn report_index(&self, p: crate::tree::Pos) -> usize {
        match self.units {
            Units::Chars => self.tree.vis_before(p) as usize,
            Units::Utf16 => self.tree.utf16_before(p, &self.content) as usize,
        }
    }

    /// The length in the reported unit of `len` chars from lv `lv` (within one run).
    pub(crate) fn report_len(&self, lv: u32, len: u32) -> usize {
        match self.units {
            Units::Chars => len as usize,
            Units::Utf16 => (len + self.content.astral(lv, len)) as usize,
        }
    }

    /// Approximate heap bytes held by the replica.
    pub fn heap_bytes(&self) -> usize {
        self.tree.heap_bytes()
            + self.content.heap_bytes()
            + self.log.heap_bytes()
            + self.values.capacity() * 16
            + self.pending.bytes()
    }

    /// The identifiers of every element in document order, tombstones included, each with
    /// whether it is deleted: two replicas that applied the same operations have equal ones.
    #[doc(hidden)]
    pub fn element_ids(&self) -> Vec<(CharId, bool)> {
        self.tree
            .spans()
            .flat_map(|s| {
                (s.lv..s.end()).map(move |lv| (self.log.char_s4(s.run, lv).id(), s.deleted()))
            })
            .collect()
    }
}
