//! The implementations under comparison, one file each, behind the [`Subject`] trait, and
//! [`Trace`], the edits they all replay.
//!
//! A trace's positions count Unicode scalar values; [`Trace`] also carries them in UTF-16 code
//! units, computed once outside every timed region, for libraries that count those.
//!
//! Adding an implementation: a file here with a type implementing [`Subject`], its `mod` line,
//! and its entry in [`ALL`]. Each file's `//!` says which API path each phase takes and why.

mod automerge;
mod cola;
mod diamond_types;
mod loro;
mod rga;
mod rope;
mod yrs;

use anyhow::{Result, bail, ensure};
use editing_traces::SequentialTrace;

use crate::traces::{Measured, measure};

/// Every implementation, in table order; the runner takes a ratio to the one named `rga`.
pub const ALL: &[Entry] = &[
    entry::<rga::RgaCrate>(),
    entry::<diamond_types::DiamondTypes>(),
    entry::<cola::Cola>(),
    entry::<yrs::Yrs>(),
    entry::<automerge::Automerge>(),
    entry::<loro::Loro>(),
    entry::<rope::Rope>(),
];

/// A registered implementation: its name, and the runner instantiated for it.
pub struct Entry {
    /// [`Subject::NAME`].
    pub name: &'static str,
    /// Measures every phase on a trace, the given number of runs each.
    pub measure: fn(&Trace, usize) -> Measured,
}

const fn entry<S: Subject>() -> Entry {
    Entry {
        name: S::NAME,
        measure: measure::<S>,
    }
}

/// One text implementation as the runner drives it. Each function is one timed phase, except
/// [`Subject::updates`], which prepares the input of [`Subject::remote`] outside the timer.
pub trait Subject {
    /// The name in tables and JSON (`rga`, `diamond-types`, ...).
    const NAME: &'static str;
    /// A replica able to produce its text (or, for `cola`, its length).
    type Doc;
    /// What the local replay ships to a peer, consumed by [`Subject::remote`].
    type Updates: Clone;
    /// An encoded snapshot of a replica.
    type Encoded: AsRef<[u8]>;

    /// Replays every edit of the trace as a local edit on an empty document.
    fn local(trace: &Trace) -> Result<Self::Doc>;
    /// The updates the local replay of `trace` (whose result is `doc`) ships to peers, or `None`
    /// when the implementation has no remote phase.
    fn updates(trace: &Trace, doc: &mut Self::Doc) -> Result<Option<Self::Updates>>;
    /// Applies `updates` in order to a fresh replica.
    fn remote(updates: Self::Updates) -> Result<Self::Doc>;
    /// Encodes the whole state of `doc` (history included, as the library saves it).
    fn encode(doc: &mut Self::Doc) -> Result<Self::Encoded>;
    /// Decodes bytes from [`Subject::encode`] into a replica.
    fn decode(bytes: &[u8]) -> Result<Self::Doc>;
    /// What is checked against the trace's `endContent`; an error counts as a mismatch.
    fn content(doc: &Self::Doc) -> Result<Content>;
}

/// A replica's observable result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// The full text.
    Text(String),
    /// Only the length in chars, for implementations that keep no text.
    Len(usize),
}

/// One patch of a trace: at `pos`, delete `del` chars, then insert `ins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// Position in chars (Unicode scalar values).
    pub pos: usize,
    /// Chars deleted at `pos`.
    pub del: usize,
    /// Text inserted at `pos` after the deletion.
    pub ins: String,
    /// `ins.chars().count()`.
    pub ins_chars: usize,
    /// `pos` in UTF-16 code units.
    pub pos_utf16: usize,
    /// `del` in UTF-16 code units.
    pub del_utf16: usize,
}

/// A sequential trace ready to replay from an empty document.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The trace's name (`automerge-paper`, ...).
    pub name: String,
    /// The expected final text.
    pub end_content: String,
    /// Its length in chars.
    pub end_chars: usize,
    edits: Vec<Edit>,
    /// Index in `edits` one past each transaction's last edit.
    txn_ends: Vec<usize>,
}

impl Trace {
    /// Checks that every patch fits the document it applies to, and computes UTF-16 positions.
    pub fn new(name: String, trace: SequentialTrace) -> Result<Self> {
        ensure!(
            trace.start_content.is_empty(),
            "{name}: traces with a startContent are not supported"
        );
        let bmp_only = trace
            .txns
            .iter()
            .flat_map(|t| &t.patches)
            .all(|p| p.ins().chars().all(|c| c.len_utf16() == 1));
        // Outside the Basic Multilingual Plane the UTF-16 positions depend on the text before
        // them, so a plain replay computes them; it is quadratic, but the five published traces
        // are BMP-only and skip it.
        let mut text: Vec<char> = Vec::new();
        let mut len = 0usize;
        let mut edits = Vec::with_capacity(trace.patch_count());
        let mut txn_ends = Vec::with_capacity(trace.txns.len());
        for txn in trace.txns {
            for patch in txn.patches {
                let editing_traces::Patch(pos, del, ins) = patch;
                let ins_chars = ins.chars().count();
                let Some(end) = pos.checked_add(del).filter(|&end| end <= len) else {
                    bail!(
                        "{name}: patch #{} deletes {pos}..{pos}+{del} of a {len}-char text",
                        edits.len()
                    );
                };
                let (pos_utf16, del_utf16) = if bmp_only {
                    (pos, del)
                } else {
                    let utf16 = |chars: &[char]| chars.iter().map(|c| c.len_utf16()).sum();
                    let at = (utf16(&text[..pos]), utf16(&text[pos..end]));
                    text.splice(pos..end, ins.chars());
                    at
                };
                len = len - del + ins_chars;
                edits.push(Edit {
                    pos,
                    del,
                    ins,
                    ins_chars,
                    pos_utf16,
                    del_utf16,
                });
            }
            txn_ends.push(edits.len());
        }
        let end_chars = trace.end_content.chars().count();
        Ok(Self {
            name,
            end_content: trace.end_content,
            end_chars,
            edits,
            txn_ends,
        })
    }

    /// Every edit, in order.
    pub fn edits(&self) -> &[Edit] {
        &self.edits
    }

    /// The edits grouped by the trace's transactions, in order.
    pub fn txns(&self) -> impl Iterator<Item = &[Edit]> {
        let starts = std::iter::once(0).chain(self.txn_ends.iter().copied());
        starts
            .zip(&self.txn_ends)
            .map(|(start, &end)| &self.edits[start..end])
    }

    /// Number of transactions.
    pub fn txn_count(&self) -> usize {
        self.txn_ends.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use editing_traces::{Patch, Txn};

    /// A small trace that crosses the BMP and mixes multi-patch transactions, deletions spanning
    /// astral chars, replacements and pastes: every adapter must replay it exactly.
    pub(crate) fn mixed_trace() -> Trace {
        let patch = |pos, del, ins: &str| Patch(pos, del, ins.to_owned());
        let txns = vec![
            vec![patch(0, 0, "héllo wörld")],
            vec![patch(5, 0, " 😀🎉"), patch(0, 1, "H")],
            vec![patch(6, 1, "")],
            vec![patch(7, 2, "→"), patch(12, 0, "!"), patch(0, 0, "«")],
            vec![patch(2, 0, "x"), patch(2, 1, "")],
            vec![patch(14, 0, "𝄞 end"), patch(7, 2, "")],
        ];
        let mut doc: Vec<char> = Vec::new();
        for p in txns.iter().flatten() {
            editing_traces::apply_patch(&mut doc, p);
        }
        let raw = SequentialTrace {
            start_content: String::new(),
            end_content: doc.iter().collect(),
            txns: txns.into_iter().map(|patches| Txn { patches }).collect(),
        };
        Trace::new("mixed".to_owned(), raw).expect("valid trace")
    }

    #[test]
    fn utf16_positions_count_astral_chars_twice() {
        let trace = mixed_trace();
        assert_eq!(trace.end_content, "«Héllo örld!𝄞 end");
        let txns: Vec<&[Edit]> = trace.txns().collect();
        let units = |e: &Edit| (e.pos, e.del, e.pos_utf16, e.del_utf16);
        // Deleting 😀 deletes one char, two code units.
        assert_eq!(units(&txns[2][0]), (6, 1, 6, 2));
        // Appending after 🎉 is one unit further in UTF-16.
        assert_eq!(units(&txns[3][1]), (12, 0, 13, 0));
        // Deleting "🎉→" deletes two chars, three code units.
        assert_eq!(units(&txns[5][1]), (7, 2, 7, 3));
    }

    #[test]
    fn txns_partition_the_edits_in_order() {
        let trace = mixed_trace();
        let sizes: Vec<usize> = trace.txns().map(<[Edit]>::len).collect();
        assert_eq!(sizes, [1, 2, 1, 3, 2, 2]);
        assert_eq!(trace.txn_count(), 6);
        assert_eq!(trace.txns().flatten().count(), trace.edits().len());
    }

    #[test]
    fn a_patch_past_the_end_of_the_text_is_rejected() {
        let raw = SequentialTrace {
            start_content: String::new(),
            end_content: String::new(),
            txns: vec![Txn {
                patches: vec![Patch(0, 0, "ab".to_owned()), Patch(1, 2, String::new())],
            }],
        };
        let err = Trace::new("bad".to_owned(), raw).expect_err("out of range");
        assert!(err.to_string().contains("patch #1"), "{err}");
    }

    /// Runs every phase of `S` on the mixed trace and checks each result.
    pub(crate) fn round_trip<S: Subject>() {
        let trace = mixed_trace();
        let want = |doc: &S::Doc| match S::content(doc).expect("content") {
            Content::Text(text) => assert_eq!(text, trace.end_content, "{}", S::NAME),
            Content::Len(len) => assert_eq!(len, trace.end_chars, "{}", S::NAME),
        };
        let mut doc = S::local(&trace).expect("local replay");
        want(&doc);
        if let Some(updates) = S::updates(&trace, &mut doc).expect("updates") {
            want(&S::remote(updates).expect("remote replay"));
        }
        let bytes = S::encode(&mut doc).expect("encode");
        want(&S::decode(bytes.as_ref()).expect("decode"));
    }
}
