//! `diamond-types`: Joseph Gentle's list CRDT (`ListCRDT` = an oplog plus a checked-out branch).
//! Positions are chars, like the traces'.
//!
//! - local: `ListCRDT::insert` / `delete` for each patch, one agent.
//! - remote: what a peer receives: after each trace transaction, the oplog's binary patch since
//!   the version before it (`encode_from(ENCODE_PATCH, ..)`); the fresh replica merges each one
//!   into its oplog and fast-forwards its branch (`merge_data_and_ff`).
//! - encode: the whole oplog, as diamond-types saves a document (`encode(ENCODE_FULL)`).
//! - decode: `ListCRDT::load_from`, which loads the oplog AND checks out the tip into a branch
//!   (replaying the history into the text), so the replica holds its text, like the others.

use anyhow::Result;
use diamond_types::list::ListCRDT;
use diamond_types::list::encoding::{ENCODE_FULL, ENCODE_PATCH};

use super::{Content, Subject, Trace};

/// Diamond-types' `ListCRDT`.
pub struct DiamondTypes;

fn replay(trace: &Trace, mut after_txn: impl FnMut(&ListCRDT)) -> ListCRDT {
    let mut doc = ListCRDT::new();
    let agent = doc.get_or_create_agent_id("local");
    for txn in trace.txns() {
        for e in txn {
            if e.del > 0 {
                doc.delete(agent, e.pos..e.pos + e.del);
            }
            if !e.ins.is_empty() {
                doc.insert(agent, e.pos, &e.ins);
            }
        }
        after_txn(&doc);
    }
    doc
}

impl Subject for DiamondTypes {
    const NAME: &'static str = "diamond-types";
    type Doc = ListCRDT;
    type Updates = Vec<Vec<u8>>;
    type Encoded = Vec<u8>;

    fn local(trace: &Trace) -> Result<ListCRDT> {
        Ok(replay(trace, |_| {}))
    }

    fn updates(trace: &Trace, _: &mut ListCRDT) -> Result<Option<Vec<Vec<u8>>>> {
        let mut patches = Vec::with_capacity(trace.txn_count());
        let mut before = Vec::new();
        replay(trace, |doc| {
            patches.push(doc.oplog.encode_from(ENCODE_PATCH, &before));
            before = doc.oplog.local_version_ref().to_vec();
        });
        Ok(Some(patches))
    }

    fn remote(updates: Vec<Vec<u8>>) -> Result<ListCRDT> {
        let mut doc = ListCRDT::new();
        for patch in &updates {
            doc.merge_data_and_ff(patch)?;
        }
        Ok(doc)
    }

    fn encode(doc: &mut ListCRDT) -> Result<Vec<u8>> {
        Ok(doc.oplog.encode(ENCODE_FULL))
    }

    fn decode(bytes: &[u8]) -> Result<ListCRDT> {
        Ok(ListCRDT::load_from(bytes)?)
    }

    fn content(doc: &ListCRDT) -> Result<Content> {
        Ok(Content::Text(doc.branch.content().to_string()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replays_the_mixed_trace() {
        super::super::tests::round_trip::<super::DiamondTypes>();
    }
}
