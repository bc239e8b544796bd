//! Applying a batch of remote operations, with a fast path for a replica that starts empty (a
//! fresh client loading a document's whole history, a catch-up into a new replica).
//!
//! Integrating operations one by one keeps the tree current after each: every insert finds its
//! reference in the tree, scans its siblings, and may split a leaf; every delete isolates its
//! targets; every change is reported with its index. For an empty replica none of that is needed
//! until the batch ends. The bulk path validates each operation exactly as [`Rga::apply`] does
//! (the checks read only the log and the content) and records it in the log, as the per-op path
//! would, keeping only each char's run and whether it is deleted beside; at the end it builds the
//! tree once in document order, the way [`Rga::decode`] builds it from a snapshot, and reports one
//! insert of the whole text.
//!
//! The log comes out identical to the per-op path's, and so does the order: the per-op path
//! extends the last run exactly when the new run continues it right after its visible last
//! char (the newest char has no children, and every element after it has lower precedence than
//! the run, so nothing is skipped), which the bulk path decides from the same tables. An
//! operation whose causes are not there ends the bulk path: the tree is built, and that operation
//! and the rest of the batch go through [`Rga::apply_into`] (waiting, release and expiry as
//! usual).

use crate::apply::{Applied, Known, Status};
use crate::error::OpError;
use crate::id::{CharId, S4Vector};
use crate::log::LvRange;
use crate::op::{Change, Op};
use crate::replica::Rga;
use crate::tree::{NONE, Tree};

/// Below this many operations the per-op path is as fast.
const BULK_MIN_OPS: usize = 64;

/// What [`Rga::apply_batch`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchApplied {
    /// Operations applied, including waiting ones that the batch released.
    pub applied: usize,
    /// Operations that had been applied already (or were waiting already).
    pub duplicates: usize,
    /// Operations that wait for a cause.
    pub pending: usize,
    /// Changes to the visible text, in order.
    pub changes: Vec<Change>,
    /// Refused operations, and waiting ones dropped, with why.
    pub errors: Vec<(CharId, OpError)>,
}

/// The tables a bulk build keeps beside the log: per lv, its run and whether it is deleted.
#[derive(Default)]
pub(crate) struct Bulk {
    lv_run: Vec<u32>,
    deleted: Vec<bool>,
}

impl Rga {
    /// Applies `ops` as [`Rga::apply_into`] one by one would, going on past refused ones: the
    /// same resulting state, counts and errors. Into an empty replica the batch is integrated in
    /// bulk and the change reported is one insert of the whole text (see the module docs).
    pub fn apply_batch(&mut self, ops: Vec<Op>) -> BatchApplied {
        let mut out = BatchApplied::default();
        let mut ops = ops.into_iter();
        if self.content.len() == 0 && self.pending.is_empty() && ops.len() >= BULK_MIN_OPS {
            let mut bulk = Bulk::default();
            let mut not_ready = None;
            for op in ops.by_ref() {
                let id = op.id().id();
                match self.bulk_one(op, &mut bulk) {
                    Ok(None) => out.applied += 1,
                    Ok(Some(Known::Duplicate)) => out.duplicates += 1,
                    Ok(Some(Known::New(op, _))) => {
                        not_ready = Some(op);
                        break;
                    }
                    Err(e) => out.errors.push((id, e)),
                }
            }
            self.finish_bulk(bulk, &mut out.changes);
            if let Some(op) = not_ready {
                self.apply_counted(op, &mut out);
            }
        }
        for op in ops {
            self.apply_counted(op, &mut out);
        }
        out
    }

    /// One op through [`Rga::apply_into`], counted into `out`.
    fn apply_counted(&mut self, op: Op, out: &mut BatchApplied) {
        let id = op.id().id();
        let mut one = Applied::default();
        match self.apply_into(op, &mut one) {
            Ok(Status::Applied) => out.applied += 1 + one.released,
            Ok(Status::Duplicate) => out.duplicates += 1,
            Ok(Status::Pending) => out.pending += 1,
            Err(e) => out.errors.push((id, e)),
        }
        out.changes.append(&mut one.changes);
        out.errors.append(&mut one.rejected);
    }

    /// Validates and records one op of a bulk build: `None` when applied, `Some(Duplicate)`,
    /// or the op back (`Some(New)`) when a cause is missing.
    fn bulk_one(&mut self, op: Op, bulk: &mut Bulk) -> Result<Option<Known>, OpError> {
        let n = self.check_shape(&op)?;
        let (op, n) = match self.check_known(op, n)? {
            Known::Duplicate => return Ok(Some(Known::Duplicate)),
            Known::New(op, n) => (op, n),
        };
        if self.missing_cause(&op).is_some() {
            return Ok(Some(Known::New(op, n)));
        }
        self.integrate_bulk(op, n, bulk)?;
        Ok(None)
    }

    /// Records a validated insert of `text` after lv `parent` (see the module docs for the run
    /// rule).
    pub(crate) fn bulk_insert(
        &mut self,
        bulk: &mut Bulk,
        agent: u32,
        id: S4Vector,
        parent: u32,
        text: &str,
    ) {
        let lv = self.content.len();
        let n = self.content.push_str(text);
        let run = if parent != NONE
            && !bulk.deleted[parent as usize]
            && self.log.continues_last_run(agent, &id, parent, lv)
        {
            self.log.extend_last_run(agent, &id, n);
            self.log.runs.len() as u32 - 1
        } else {
            self.log.push_run(agent, id, lv, n, parent)
        };
        let end = (lv + n) as usize;
        bulk.lv_run.resize(end, run);
        bulk.deleted.resize(end, false);
    }

    /// Records a validated delete of `targets`, counting chars deleted more than once as the
    /// tree does.
    pub(crate) fn bulk_delete(
        &mut self,
        bulk: &mut Bulk,
        agent: u32,
        id: S4Vector,
        targets: &[LvRange],
    ) {
        self.log.push_delete(agent, id, targets);
        for t in targets {
            for lv in t.start..t.end() {
                if std::mem::replace(&mut bulk.deleted[lv as usize], true) {
                    *self.log.deleted_again.entry(lv).or_insert(1) += 1;
                }
            }
        }
    }

    /// Builds the tree from the log and the bulk tables, and reports the text as one insert.
    fn finish_bulk(&mut self, bulk: Bulk, changes: &mut Vec<Change>) {
        let spans = crate::encode::document_order(&self.log, &bulk.lv_run, &bulk.deleted);
        drop(bulk);
        self.tree = Tree::from_spans(&spans, self.content.len(), &self.content);
        self.typing = None;
        if !self.is_empty() {
            changes.push(Change::Insert {
                index: 0,
                text: self.text(),
            });
        }
    }
}
