//! `loro`: the Loro CRDT framework, one root text container. `LoroText::insert` / `delete` count
//! Unicode chars (the `_utf8` / `_utf16` variants count code units).
//!
//! - local: `insert` / `delete` for each patch and one `commit` per trace transaction.
//! - remote: the update each commit emits (`subscribe_local_update`), as Loro apps ship them;
//!   the fresh replica `import`s each in order.
//! - encode: `export(ExportMode::Snapshot)`, history and state.
//! - decode: `LoroDoc::from_snapshot`, plus reading the text's length: Loro decodes a
//!   container's state lazily on first access, and this forces the text's (its history blocks stay
//!   lazily parsed, which is Loro's design, not a shortcut of this adapter).

use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Result;
use loro::{ExportMode, LoroDoc};

use super::{Content, Subject, Trace};

/// Loro's `LoroDoc`.
pub struct Loro;

const TEXT: &str = "text";

fn replay(trace: &Trace, doc: &LoroDoc) -> Result<()> {
    let text = doc.get_text(TEXT);
    for txn in trace.txns() {
        for e in txn {
            if e.del > 0 {
                text.delete(e.pos, e.del)?;
            }
            if !e.ins.is_empty() {
                text.insert(e.pos, &e.ins)?;
            }
        }
        doc.commit();
    }
    Ok(())
}

fn new_doc(peer: u64) -> Result<LoroDoc> {
    let doc = LoroDoc::new();
    doc.set_peer_id(peer)?;
    Ok(doc)
}

impl Subject for Loro {
    const NAME: &'static str = "loro";
    type Doc = LoroDoc;
    type Updates = Vec<Vec<u8>>;
    type Encoded = Vec<u8>;

    fn local(trace: &Trace) -> Result<LoroDoc> {
        let doc = new_doc(1)?;
        replay(trace, &doc)?;
        Ok(doc)
    }

    fn updates(trace: &Trace, _: &mut LoroDoc) -> Result<Option<Vec<Vec<u8>>>> {
        let doc = new_doc(1)?;
        let updates = Arc::new(Mutex::new(Vec::with_capacity(trace.txn_count())));
        let sink = Arc::clone(&updates);
        let subscription = doc.subscribe_local_update(Box::new(move |update| {
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(update.clone());
            true
        }));
        replay(trace, &doc)?;
        drop(subscription);
        let updates = std::mem::take(&mut *updates.lock().unwrap_or_else(PoisonError::into_inner));
        Ok(Some(updates))
    }

    fn remote(updates: Vec<Vec<u8>>) -> Result<LoroDoc> {
        let doc = new_doc(2)?;
        for update in &updates {
            doc.import(update)?;
        }
        Ok(doc)
    }

    fn encode(doc: &mut LoroDoc) -> Result<Vec<u8>> {
        Ok(doc.export(ExportMode::Snapshot)?)
    }

    fn decode(bytes: &[u8]) -> Result<LoroDoc> {
        let doc = LoroDoc::from_snapshot(bytes)?;
        std::hint::black_box(doc.get_text(TEXT).len_unicode());
        Ok(doc)
    }

    fn content(doc: &LoroDoc) -> Result<Content> {
        Ok(Content::Text(doc.get_text(TEXT).to_string()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replays_the_mixed_trace() {
        super::super::tests::round_trip::<super::Loro>();
    }
}
