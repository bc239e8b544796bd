//! `automerge`: the Automerge document CRDT, one text object at the root. Text positions are
//! Unicode code points (requested explicitly: the crate's `utf8-indexing` / `utf16-indexing`
//! features would change the default).
//!
//! - local: an `AutoCommit` document; `splice_text` for each patch and one `commit` per trace
//!   transaction, so each transaction becomes one change, as a live collaborative editor ships
//!   them (committing once at the end, as automerge's own trace benchmark does, is much cheaper).
//! - remote: those changes (`get_changes(&[])`), applied in ONE `apply_changes` call, as a peer
//!   catching up does. One call per change, as a live peer would receive them, costs O(document)
//!   each in automerge 0.12's columnar op set: 93 s for the 26,078 changes of
//!   `friendsforever_flat`, hours for `automerge-paper`.
//! - encode: `save`, the compressed columnar document format.
//! - decode: `load` (default options: the change hashes are verified), which rebuilds the op set.

use anyhow::{Context, Result};
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Change, LoadOptions, ObjType, ROOT, ReadDoc, TextEncoding};

use super::{Content, Subject, Trace};

/// Automerge's `AutoCommit`.
pub struct Automerge;

const TEXT: &str = "text";
const ENCODING: TextEncoding = TextEncoding::UnicodeCodePoint;

impl Subject for Automerge {
    const NAME: &'static str = "automerge";
    type Doc = AutoCommit;
    type Updates = Vec<Change>;
    type Encoded = Vec<u8>;

    fn local(trace: &Trace) -> Result<AutoCommit> {
        let mut doc =
            AutoCommit::new_with_encoding(ENCODING).with_actor(ActorId::from(&[1u8; 16][..]));
        let text = doc.put_object(ROOT, TEXT, ObjType::Text)?;
        doc.commit();
        for txn in trace.txns() {
            for e in txn {
                doc.splice_text(&text, e.pos, isize::try_from(e.del)?, &e.ins)?;
            }
            doc.commit();
        }
        Ok(doc)
    }

    fn updates(_: &Trace, doc: &mut AutoCommit) -> Result<Option<Vec<Change>>> {
        Ok(Some(doc.get_changes(&[])))
    }

    fn remote(updates: Vec<Change>) -> Result<AutoCommit> {
        let mut doc = AutoCommit::new_with_encoding(ENCODING);
        doc.apply_changes(updates)?;
        Ok(doc)
    }

    fn encode(doc: &mut AutoCommit) -> Result<Vec<u8>> {
        Ok(doc.save())
    }

    fn decode(bytes: &[u8]) -> Result<AutoCommit> {
        Ok(AutoCommit::load_with_options(
            bytes,
            LoadOptions::new().text_encoding(ENCODING),
        )?)
    }

    fn content(doc: &AutoCommit) -> Result<Content> {
        let (_, text) = doc.get(ROOT, TEXT)?.context("no text object at the root")?;
        Ok(Content::Text(doc.text(text)?))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replays_the_mixed_trace() {
        super::super::tests::round_trip::<super::Automerge>();
    }
}
