//! The replica: one copy of a document, its operation log and its waiting buffer.
//!
//! `Rga` holds the content tree (document order, tombstones included), the text of every inserted
//! character by lv, the log of operations by site, and the operations waiting for their causes.
//! Local edits (`insert`, `delete`, `splice`, ... in `local.rs`) produce operations; remote
//! operations arrive through `apply` (in `apply.rs`). Both paths share `integrate_*`, so a local
//! edit and the same operation applied remotely yield the same state.

use rustc_hash::FxHashMap;

use crate::id::{CharId, Precedence, SiteId};
use crate::log::{Agent, DeleteRec, InsertRun, LvRange, UpdateRec};
use crate::pending::Pending;
use crate::tree::Tree;

/// Limits that keep one replica's memory bounded against hostile input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most characters (or deleted characters) one operation may carry.
    pub max_op_len: u64,
    /// Most operations that may wait for their causes at once.
    pub max_pending: usize,
    /// Most elements (characters including tombstones) in the document.
    pub max_elements: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_op_len: 1 << 24,
            max_pending: 100_000,
            max_elements: (1 << 31) - 1,
        }
    }
}

/// A Replicated Growable Array of characters. See the crate documentation.
#[derive(Clone)]
pub struct Rga {
    pub(crate) ssn: u32,
    pub(crate) tree: Tree,
    /// The value of every inserted character, by lv (tombstones keep theirs).
    pub(crate) content: Vec<char>,
    pub(crate) runs: Vec<InsertRun>,
    pub(crate) deletes: Vec<DeleteRec>,
    pub(crate) del_targets: Vec<LvRange>,
    pub(crate) updates: Vec<UpdateRec>,
    /// Characters whose value an update replaced: lv → (precedence of the winning write, value).
    pub(crate) values: FxHashMap<u32, (Precedence, char)>,
    pub(crate) agents: Vec<Agent>,
    pub(crate) sites: FxHashMap<SiteId, u32>,
    /// The site used last, with its agent index (most operations come from one site in a row).
    pub(crate) last_agent: Option<(SiteId, u32)>,
    /// Where the last local insert ended (typing goes on there).
    pub(crate) typing: Option<crate::local::Typing>,
    /// Σ v[k] over this replica's version vector.
    pub(crate) clock_total: u64,
    /// Highest sum of any applied operation.
    pub(crate) max_sum: u64,
    pub(crate) next_order: u32,
    pub(crate) pending: Pending,
    pub(crate) limits: Limits,
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
            .field("sites", &self.agents.len())
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
            content: Vec::new(),
            runs: Vec::new(),
            deletes: Vec::new(),
            del_targets: Vec::new(),
            updates: Vec::new(),
            values: FxHashMap::default(),
            agents: Vec::new(),
            sites: FxHashMap::default(),
            last_agent: None,
            typing: None,
            clock_total: 0,
            max_sum: 0,
            next_order: 0,
            pending: Pending::default(),
            limits: Limits::default(),
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

    /// Length of the visible text, in chars (Unicode scalar values).
    pub fn len(&self) -> usize {
        self.tree.vis_len() as usize
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

    /// The operations waiting for their causes.
    pub fn pending_ops(&self) -> Vec<crate::Op> {
        self.pending.ops().cloned().collect()
    }

    /// The current value of the character at `lv`.
    #[inline]
    pub(crate) fn value(&self, lv: u32) -> char {
        if !self.values.is_empty()
            && let Some(&(_, c)) = self.values.get(&lv)
        {
            return c;
        }
        self.content[lv as usize]
    }

    /// The visible text.
    pub fn text(&self) -> String {
        let mut out = String::with_capacity(self.len());
        for s in self.tree.spans() {
            if s.deleted() {
                continue;
            }
            let chars = &self.content[s.lv as usize..s.end() as usize];
            if self.values.is_empty() {
                out.extend(chars);
            } else {
                out.extend((s.lv..s.end()).map(|lv| self.value(lv)));
            }
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
        Some(self.char_s4(s.run, s.lv + p.off).id())
    }

    /// The current index of character `id`: where it is if visible, or where it would be (the
    /// index of the next visible character) if deleted. `None` if unknown.
    pub fn index_of(&self, id: CharId) -> Option<usize> {
        let lv = self.char_lv(id).ok()??;
        let p = self.tree.find_lv(lv);
        Some(self.tree.vis_before(p) as usize)
    }
}
