//! `rope`: a plain rope (`jumprope`), the no-CRDT baseline: what the same edits cost with no
//! history, ids or tombstones at all.
//!
//! It has no peers, so no remote phase (`updates` returns `None`). Its `encode` and `decode` are
//! defined as saving and loading a plain text file: the text's UTF-8 bytes, and a rope built from
//! them (after UTF-8 validation), the floor any CRDT snapshot is compared with.

use std::convert::Infallible;

use anyhow::Result;
use jumprope::JumpRope;

use super::{Content, Subject, Trace};

/// The plain rope baseline.
pub struct Rope;

impl Subject for Rope {
    const NAME: &'static str = "rope";
    type Doc = JumpRope;
    type Updates = Infallible;
    type Encoded = Vec<u8>;

    fn local(trace: &Trace) -> Result<JumpRope> {
        let mut rope = JumpRope::new();
        for e in trace.edits() {
            if e.del > 0 {
                rope.remove(e.pos..e.pos + e.del);
            }
            if !e.ins.is_empty() {
                rope.insert(e.pos, &e.ins);
            }
        }
        Ok(rope)
    }

    fn updates(_: &Trace, _: &mut JumpRope) -> Result<Option<Infallible>> {
        Ok(None)
    }

    fn remote(updates: Infallible) -> Result<JumpRope> {
        match updates {}
    }

    fn encode(doc: &mut JumpRope) -> Result<Vec<u8>> {
        Ok(doc.to_string().into_bytes())
    }

    fn decode(bytes: &[u8]) -> Result<JumpRope> {
        Ok(JumpRope::from(std::str::from_utf8(bytes)?))
    }

    fn content(doc: &JumpRope) -> Result<Content> {
        Ok(Content::Text(doc.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replays_the_mixed_trace() {
        super::super::tests::round_trip::<super::Rope>();
    }
}
