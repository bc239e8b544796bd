//! `cola`: nomad/cola's text CRDT (published as `cola`; `cola-crdt` is its old name, frozen at
//! 0.1). It tracks positions only and keeps no text, so what is checked is its length
//! (`Replica::len`), in whatever unit it is fed: chars here.
//!
//! - local: `Replica::inserted` / `deleted` for each patch.
//! - remote: the `Insertion` / `Deletion` values the local replay returns, which is what cola
//!   ships to peers, integrated in order into a fork of the common empty origin.
//! - encode / decode: `Replica::encode` and `Replica::decode` (feature `encode`).

use anyhow::Result;
use cola::{Deletion, EncodedReplica, Insertion, Replica};

use super::{Content, Subject, Trace};

/// Cola's `Replica`.
pub struct Cola;

/// The id of the replica that replays the trace; peers fork the same empty origin.
const LOCAL: u64 = 1;
const PEER: u64 = 2;

/// One edit as cola ships it.
#[derive(Clone)]
pub enum Op {
    /// An insertion.
    Insert(Insertion),
    /// A deletion.
    Delete(Deletion),
}

fn replay(trace: &Trace, mut shipped: impl FnMut(Op)) -> Replica {
    let mut replica = Replica::new(LOCAL, 0);
    for e in trace.edits() {
        if e.del > 0 {
            shipped(Op::Delete(replica.deleted(e.pos..e.pos + e.del)));
        }
        if e.ins_chars > 0 {
            shipped(Op::Insert(replica.inserted(e.pos, e.ins_chars)));
        }
    }
    replica
}

impl Subject for Cola {
    const NAME: &'static str = "cola";
    type Doc = Replica;
    type Updates = Vec<Op>;
    type Encoded = EncodedReplica<'static>;

    fn local(trace: &Trace) -> Result<Replica> {
        Ok(replay(trace, drop))
    }

    fn updates(trace: &Trace, _: &mut Replica) -> Result<Option<Vec<Op>>> {
        let mut ops = Vec::with_capacity(trace.edits().len());
        replay(trace, |op| ops.push(op));
        Ok(Some(ops))
    }

    fn remote(updates: Vec<Op>) -> Result<Replica> {
        let mut replica = Replica::new(LOCAL, 0).fork(PEER);
        for op in &updates {
            // The returned offsets would edit a text buffer; cola keeps none.
            match op {
                Op::Insert(insertion) => {
                    let _ = replica.integrate_insertion(insertion);
                }
                Op::Delete(deletion) => {
                    let _ = replica.integrate_deletion(deletion);
                }
            }
        }
        Ok(replica)
    }

    fn encode(doc: &mut Replica) -> Result<EncodedReplica<'static>> {
        Ok(doc.encode())
    }

    fn decode(bytes: &[u8]) -> Result<Replica> {
        Ok(Replica::decode(PEER, &EncodedReplica::from_bytes(bytes))?)
    }

    fn content(doc: &Replica) -> Result<Content> {
        Ok(Content::Len(doc.len()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replays_the_mixed_trace() {
        super::super::tests::round_trip::<super::Cola>();
    }
}
