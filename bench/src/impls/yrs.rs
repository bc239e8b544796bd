//! `yrs`: the Rust port of Yjs. It counts text positions in UTF-8 bytes or UTF-16 code units,
//! never in chars: the document is opened with `OffsetKind::Utf16` and fed the trace's UTF-16
//! positions, computed outside the timed region (they equal the char positions in traces without
//! astral chars).
//!
//! - local: one `transact_mut` per trace transaction, `insert` / `remove_range` for each patch.
//! - remote: the v1 update each of those transactions emits on commit (`observe_update_v1`), as
//!   Yjs providers ship them; the fresh replica decodes and applies each in its own transaction.
//! - encode: the whole document as one v1 update (`encode_state_as_update_v1` from the empty
//!   state vector), the usual way to save a Yjs document.
//! - decode: a fresh document applying that update.

use std::cell::RefCell;
use std::rc::Rc;

use anyhow::Result;
use yrs::updates::decoder::Decode;
use yrs::{
    ClientID, Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Text, TextRef, Transact,
    Update,
};

use super::{Content, Subject, Trace};

/// Yrs' `Doc` with one root text.
pub struct Yrs;

/// A yrs document and its root text.
pub struct YDoc {
    doc: Doc,
    text: TextRef,
}

const TEXT: &str = "text";

impl YDoc {
    fn new(client_id: u64) -> Self {
        let doc = Doc::with_options(Options {
            offset_kind: OffsetKind::Utf16,
            ..Options::with_client_id(ClientID::new(client_id))
        });
        let text = doc.get_or_insert_text(TEXT);
        Self { doc, text }
    }
}

fn replay(trace: &Trace, doc: &YDoc) -> Result<()> {
    for txn in trace.txns() {
        let mut tx = doc.doc.transact_mut();
        for e in txn {
            // Yrs takes `u32` offsets.
            let pos = u32::try_from(e.pos_utf16)?;
            if e.del_utf16 > 0 {
                doc.text
                    .remove_range(&mut tx, pos, u32::try_from(e.del_utf16)?);
            }
            if !e.ins.is_empty() {
                doc.text.insert(&mut tx, pos, &e.ins);
            }
        }
    }
    Ok(())
}

impl Subject for Yrs {
    const NAME: &'static str = "yrs";
    type Doc = YDoc;
    type Updates = Vec<Vec<u8>>;
    type Encoded = Vec<u8>;

    fn local(trace: &Trace) -> Result<YDoc> {
        let doc = YDoc::new(1);
        replay(trace, &doc)?;
        Ok(doc)
    }

    fn updates(trace: &Trace, _: &mut YDoc) -> Result<Option<Vec<Vec<u8>>>> {
        let doc = YDoc::new(1);
        let updates = Rc::new(RefCell::new(Vec::with_capacity(trace.txn_count())));
        let sink = Rc::clone(&updates);
        doc.doc.observe_update_v1("bench", move |_, event| {
            sink.borrow_mut().push(event.update.clone())
        })?;
        replay(trace, &doc)?;
        doc.doc.unobserve_update_v1("bench")?;
        Ok(Some(updates.take()))
    }

    fn remote(updates: Vec<Vec<u8>>) -> Result<YDoc> {
        let doc = YDoc::new(2);
        for update in &updates {
            doc.doc
                .transact_mut()
                .apply_update(Update::decode_v1(update)?)?;
        }
        Ok(doc)
    }

    fn encode(doc: &mut YDoc) -> Result<Vec<u8>> {
        Ok(doc
            .doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default()))
    }

    fn decode(bytes: &[u8]) -> Result<YDoc> {
        let doc = YDoc::new(2);
        doc.doc
            .transact_mut()
            .apply_update(Update::decode_v1(bytes)?)?;
        Ok(doc)
    }

    fn content(doc: &YDoc) -> Result<Content> {
        Ok(Content::Text(doc.text.get_string(&doc.doc.transact())))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replays_the_mixed_trace() {
        super::super::tests::round_trip::<super::Yrs>();
    }
}
