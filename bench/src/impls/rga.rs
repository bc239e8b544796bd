//! `rga`: this project's crate. Positions are chars, like the traces'.
//!
//! - local: `Rga::delete` / `Rga::insert` for each patch, one site.
//! - remote: the whole log as a peer catching up receives it (`ops_since` of the empty version:
//!   consecutive typing is one op), applied op by op to a fresh replica with `Rga::apply_into`,
//!   which reports each change in index terms into a result the caller reuses (what an editor
//!   binding does: it consumes the changes of each op before the next).
//! - encode: `Rga::encode`, the whole replica (ids, tombstones, document order, op log, text).
//! - decode: `Rga::decode`, which validates everything and yields a replica with its text.

use ::rga::{Op, Rga, SiteId, VersionVector};
use anyhow::Result;

use super::{Content, Subject, Trace};

/// This project's RGA.
pub struct RgaCrate;

impl Subject for RgaCrate {
    const NAME: &'static str = "rga";
    type Doc = Rga;
    type Updates = Vec<Op>;
    type Encoded = Vec<u8>;

    fn local(trace: &Trace) -> Result<Rga> {
        let mut doc = Rga::new();
        let site = SiteId(1);
        for e in trace.edits() {
            if e.del > 0 {
                doc.delete(site, e.pos, e.del)?;
            }
            if !e.ins.is_empty() {
                doc.insert(site, e.pos, &e.ins)?;
            }
        }
        Ok(doc)
    }

    fn updates(_: &Trace, doc: &mut Rga) -> Result<Option<Vec<Op>>> {
        Ok(Some(doc.ops_since(&VersionVector::new())))
    }

    fn remote(updates: Vec<Op>) -> Result<Rga> {
        let mut doc = Rga::new();
        let mut applied = ::rga::Applied::default();
        for op in updates {
            applied.clear();
            doc.apply_into(op, &mut applied)?;
        }
        Ok(doc)
    }

    fn encode(doc: &mut Rga) -> Result<Vec<u8>> {
        Ok(doc.encode())
    }

    fn decode(bytes: &[u8]) -> Result<Rga> {
        Ok(Rga::decode(bytes)?)
    }

    fn content(doc: &Rga) -> Result<Content> {
        Ok(Content::Text(doc.text()))
    }
}
