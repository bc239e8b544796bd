//! Operations that arrived before their causes (Roh et al.'s causal readiness): an operation
//! waits until its site's previous operation and the character it refers to (reference, delete
//! targets, update target) have been applied. Each waits under the first cause found missing and
//! is re-examined when an operation covering that identifier is applied.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::id::{CharId, SiteId};
use crate::op::Op;

#[derive(Clone, Debug, Default)]
pub(crate) struct Pending {
    /// Missing cause → operations waiting for it.
    waiting: BTreeMap<CharId, Vec<Op>>,
    /// Identifier of each waiting operation → the cause it waits for.
    ids: FxHashMap<CharId, CharId>,
}

impl Pending {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The waiting operation with identifier `id`, if any.
    pub fn get(&self, id: CharId) -> Option<&Op> {
        let cause = self.ids.get(&id)?;
        self.waiting
            .get(cause)?
            .iter()
            .find(|op| op.id().id() == id)
    }

    pub fn push(&mut self, op: Op, cause: CharId) {
        self.ids.insert(op.id().id(), cause);
        self.waiting.entry(cause).or_default().push(op);
    }

    /// Removes and returns the operations waiting for any of `site`'s `from .. to`.
    pub fn take(&mut self, site: SiteId, from: u64, to: u64) -> Vec<Op> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let keys: Vec<CharId> = self
            .waiting
            .range(
                CharId {
                    sid: site,
                    seq: from,
                }..CharId { sid: site, seq: to },
            )
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::new();
        for k in keys {
            if let Some(ops) = self.waiting.remove(&k) {
                for op in &ops {
                    self.ids.remove(&op.id().id());
                }
                out.extend(ops);
            }
        }
        out
    }

    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        self.waiting.values().flatten()
    }
}
