//! The RGA CRDT for JavaScript: [`rga::Rga`] behind `wasm-bindgen`, for the TypeScript client in
//! `clients/js`.
//!
//! Every position and length the JavaScript side sees is in **UTF-16 code units**, what JS
//! strings, CodeMirror and Monaco count. Conversions go through the replica's tree in O(log n) and
//! never split a surrogate pair: a start inside a pair rounds down to the pair, an end inside one
//! rounds up past it.
//!
//! Ops, versions, anchors and changes cross the boundary as JSON strings in the wire forms of the
//! HTTP API (`docs/openapi.yaml`): the client receives ops as JSON from the server and sends them
//! as JSON, so one parse in Rust is cheaper than building JS objects and converting them.
//! `shared/rga` itself knows nothing of JavaScript.

use rga::{
    Anchor, Change, CharId, EditError, MAX_SAFE_INTEGER, Op, Rga, SiteId, Units, VersionVector,
};
use serde::Serialize;
use wasm_bindgen::prelude::*;

/// Longest op the client sends, in chars (or delete targets): API Gateway takes WebSocket frames
/// up to 32 KB (and browsers send a message as one frame), and a char is at most 6 bytes of
/// JSON (`\u001f`).
pub const WS_OP_CHARS: u64 = 4 * 1024;

/// One change to the visible text, in UTF-16 code units: at `index`, remove `delete` units, then
/// insert `insert`. Changes of one answer apply in sequence.
#[derive(Serialize)]
struct Patch<'a> {
    index: usize,
    delete: usize,
    insert: &'a str,
}

fn patches(changes: &[Change]) -> Vec<Patch<'_>> {
    changes
        .iter()
        .map(|c| match c {
            Change::Insert { index, text } => Patch {
                index: *index,
                delete: 0,
                insert: text,
            },
            Change::Delete { index, len } => Patch {
                index: *index,
                delete: *len,
                insert: "",
            },
        })
        .collect()
}

/// Merges changes that continue each other (typing, a run of backspaces) into one.
fn coalesce(changes: Vec<Change>) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::with_capacity(changes.len());
    // UTF-16 length of the last change's text, if it is an insert.
    let mut units = 0;
    for c in changes {
        match (out.last_mut(), c) {
            (
                Some(Change::Insert { index, text }),
                Change::Insert {
                    index: at,
                    text: more,
                },
            ) if at >= *index && at - *index == units => {
                units += utf16(&more);
                text.push_str(&more);
            }
            (Some(Change::Delete { index, len }), Change::Delete { index: at, len: n })
                if at == *index =>
            {
                *len += n
            }
            (Some(Change::Delete { index, len }), Change::Delete { index: at, len: n })
                if at + n == *index =>
            {
                *index = at;
                *len += n
            }
            (_, c) => {
                units = match &c {
                    Change::Insert { text, .. } => utf16(text),
                    Change::Delete { .. } => 0,
                };
                out.push(c)
            }
        }
    }
    out
}

fn utf16(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// About how many bytes the patches take as JSON.
fn patch_bytes(changes: &[Change]) -> usize {
    changes
        .iter()
        .map(|c| match c {
            Change::Insert { text, .. } => 40 + text.len(),
            Change::Delete { .. } => 40,
        })
        .sum()
}

/// What [`Replica::apply`] did with a batch of remote ops.
#[derive(Serialize)]
struct ApplyReport<'a> {
    /// Changes to the visible text (UTF-16), in order.
    changes: Vec<Patch<'a>>,
    applied: usize,
    duplicates: usize,
    pending: usize,
    /// Ops (or waiting ops they released) that were refused, with the reason.
    errors: Vec<OpFailure>,
}

#[derive(Serialize)]
struct OpFailure {
    id: CharId,
    error: String,
}

/// What [`Replica::delete_chars`] did (undo of this site's own inserts).
#[derive(Serialize)]
struct Removal<'a> {
    ops: &'a [Op],
    changes: Vec<Patch<'a>>,
    /// The removed text, with the anchor of the place it was at, so it can be put back.
    removed: Vec<Removed>,
}

#[derive(Serialize)]
struct Removed {
    anchor: Anchor,
    text: String,
}

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    // Ops, versions and patches are plain data: serialization cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn parse<'a, T: serde::Deserialize<'a>>(what: &str, s: &'a str) -> Result<T, JsError> {
    serde_json::from_str(s).map_err(|e| JsError::new(&format!("malformed {what}: {e}")))
}

fn edit_error(e: EditError) -> JsError {
    JsError::new(&e.to_string())
}

fn site_id(site: f64) -> Result<SiteId, JsError> {
    if site.fract() != 0.0 || !(0.0..=MAX_SAFE_INTEGER as f64).contains(&site) {
        return Err(JsError::new(
            "a site id is a non-negative integer at most 2^53 - 1",
        ));
    }
    Ok(SiteId(site as u64))
}

/// A replica of one document, editing as one site (the client's session).
#[wasm_bindgen]
pub struct Replica {
    rga: Rga,
    site: SiteId,
}

#[wasm_bindgen]
impl Replica {
    /// An empty replica for `site` (the session id) with session number `ssn`.
    #[wasm_bindgen(constructor)]
    pub fn new(site: f64, ssn: u32) -> Result<Replica, JsError> {
        let mut rga = Rga::with_session(ssn.max(1));
        rga.set_units(Units::Utf16);
        Ok(Replica {
            rga,
            site: site_id(site)?,
        })
    }

    /// A replica decoded from a snapshot (the `snapshot` of `POST /documents/{id}/sessions`,
    /// base64-decoded), editing as `site` with session number `ssn`.
    pub fn decode(bytes: &[u8], site: f64, ssn: u32) -> Result<Replica, JsError> {
        let site = site_id(site)?;
        let mut rga =
            Rga::decode(bytes).map_err(|e| JsError::new(&format!("bad snapshot: {e}")))?;
        if ssn > rga.session() {
            rga.set_session(ssn);
        }
        rga.set_units(Units::Utf16);
        Ok(Replica { rga, site })
    }

    /// The replica encoded (the same format as the server's snapshots).
    pub fn encode(&self) -> Vec<u8> {
        self.rga.encode()
    }

    /// The site this replica edits as.
    #[wasm_bindgen(getter)]
    pub fn site(&self) -> f64 {
        self.site.0 as f64
    }

    /// The session number of this replica's ops.
    #[wasm_bindgen(getter)]
    pub fn ssn(&self) -> u32 {
        self.rga.session()
    }

    /// The visible text.
    pub fn text(&self) -> String {
        self.rga.text()
    }

    /// The text from UTF-16 offset `from` to `to` (rounded outwards to whole characters).
    pub fn slice(&self, from: usize, to: usize) -> String {
        let start = self.rga.utf16_to_chars(from);
        let end = self.rga.utf16_to_chars_up(to.max(from));
        self.rga.slice(start, end)
    }

    /// Length of the visible text in UTF-16 code units.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> usize {
        self.rga.utf16_len()
    }

    /// The version vector, as JSON (`{"<site>": <seq>, ...}`).
    pub fn version(&self) -> String {
        json(&self.rga.version())
    }

    /// Whether every op of `version` (JSON) has been applied here.
    #[wasm_bindgen(js_name = hasReceived)]
    pub fn has_received(&self, version: &str) -> Result<bool, JsError> {
        let v: VersionVector = parse("version", version)?;
        Ok(self.rga.has_received(&v))
    }

    /// The next sequence number this site will use.
    #[wasm_bindgen(js_name = nextSeq)]
    pub fn next_seq(&self) -> f64 {
        self.rga.next_seq(self.site) as f64
    }

    /// Number of remote ops waiting for their causes.
    #[wasm_bindgen(getter, js_name = pendingCount)]
    pub fn pending_count(&self) -> usize {
        self.rga.pending_len()
    }

    /// Inserts `text` at UTF-16 offset `index`; returns the ops it made, as JSON.
    pub fn insert(&mut self, index: usize, text: &str) -> Result<String, JsError> {
        let at = self.char_index(index)?;
        let ops = self.rga.insert(self.site, at, text).map_err(edit_error)?;
        Ok(json(&ops.to_vec()))
    }

    /// Deletes `len` UTF-16 units from `index` (whole characters); returns the ops, as JSON.
    pub fn delete(&mut self, index: usize, len: usize) -> Result<String, JsError> {
        let (start, end) = self.char_range(index, len)?;
        let ops = self
            .rga
            .delete(self.site, start, end - start)
            .map_err(edit_error)?;
        Ok(json(&ops.to_vec()))
    }

    /// Replaces `len` UTF-16 units from `index` with `text`; returns the ops, as JSON.
    pub fn replace(&mut self, index: usize, len: usize, text: &str) -> Result<String, JsError> {
        let (start, end) = self.char_range(index, len)?;
        let ops = self
            .rga
            .replace(self.site, start, end - start, text)
            .map_err(edit_error)?;
        Ok(json(&ops.to_vec()))
    }

    /// Replaces `len` UTF-16 units from `index` with `text` without building the ops (the
    /// client sends [`Replica::own_ops_from`] when it flushes). Returns where the edit landed in
    /// UTF-16 units: `index` itself unless it was inside a surrogate pair.
    pub fn splice(&mut self, index: usize, len: usize, text: &str) -> Result<usize, JsError> {
        let (start, end) = self.char_range(index, len)?;
        let at = if self.rga.utf16_len() == self.rga.len() {
            index
        } else {
            self.rga.chars_to_utf16(start)
        };
        self.rga
            .replace(self.site, start, end - start, text)
            .map_err(edit_error)?;
        Ok(at)
    }

    /// Applies remote ops (a JSON array, in any order, duplicates harmless), one by one: a
    /// refused op is reported and the others still apply. Returns an apply report as JSON:
    /// `{"changes": [{"index", "delete", "insert"}], "applied", "duplicates", "pending",
    /// "errors": [{"id", "error"}]}`.
    pub fn apply(&mut self, ops: &str) -> Result<String, JsError> {
        let ops: Vec<Op> = parse("ops", ops)?;
        Ok(self.apply_ops(ops))
    }

    /// [`Replica::apply`] for ops in the binary batch form (`rga::encode_ops`, what
    /// `GET /operations` answers to `Accept: application/x-rga-ops`): the same report.
    #[wasm_bindgen(js_name = applyBinary)]
    pub fn apply_binary(&mut self, bytes: &[u8]) -> Result<String, JsError> {
        let ops = rga::decode_ops(bytes).map_err(|e| JsError::new(&format!("ops: {e}")))?;
        Ok(self.apply_ops(ops))
    }

    /// The ops that `version` (JSON) lacks, in the binary batch form.
    #[wasm_bindgen(js_name = opsSinceBinary)]
    pub fn ops_since_binary(&self, version: &str) -> Result<Vec<u8>, JsError> {
        let v: VersionVector = parse("version", version)?;
        Ok(rga::encode_ops(&self.rga.ops_since(&v)))
    }
}

impl Replica {
    fn apply_ops(&mut self, ops: Vec<Op>) -> String {
        let before = self.rga.utf16_len();
        // Into an empty replica (a fresh client loading a history) the batch goes in bulk and
        // its change is one insert of the whole text.
        let rga::BatchApplied {
            applied,
            duplicates,
            pending,
            changes,
            errors,
        } = self.rga.apply_batch(ops);
        let errors: Vec<OpFailure> = errors
            .into_iter()
            .map(|(id, e)| OpFailure {
                id,
                error: e.to_string(),
            })
            .collect();
        let coalesced = coalesce(changes);
        // A batch that rewrote most of the text (a catch-up, a fresh replica) is cheaper to hand
        // over as one replacement than as thousands of patches.
        let text;
        let changes = if coalesced.len() > 256 && patch_bytes(&coalesced) > self.rga.utf16_len() {
            text = self.rga.text();
            vec![Patch {
                index: 0,
                delete: before,
                insert: &text,
            }]
        } else {
            patches(&coalesced)
        };
        json(&ApplyReport {
            changes,
            applied,
            duplicates,
            pending,
            errors,
        })
    }
}

#[wasm_bindgen]
impl Replica {
    /// The ops that `version` (JSON) lacks, as JSON, in an order in which they apply.
    #[wasm_bindgen(js_name = opsSince)]
    pub fn ops_since(&self, version: &str) -> Result<String, JsError> {
        let v: VersionVector = parse("version", version)?;
        Ok(json(&self.rga.ops_since(&v)))
    }

    /// This site's own ops from sequence number `from` on, as JSON (what a client sends, and
    /// resends when their acknowledgement never came; cut as the replica holds them, and into
    /// pieces of at most [`WS_OP_CHARS`] so each fits in a WebSocket message).
    #[wasm_bindgen(js_name = ownOpsFrom)]
    pub fn own_ops_from(&self, from: f64) -> String {
        let from = if from.is_finite() && from > 1.0 {
            from as u64
        } else {
            1
        };
        json(&self.rga.ops_of_site_since_cut(self.site, from, WS_OP_CHARS))
    }

    /// A stable reference to UTF-16 offset `index`, as JSON (`null` for the start, else the id of
    /// the character before it).
    #[wasm_bindgen(js_name = anchorAt)]
    pub fn anchor_at(&self, index: usize) -> String {
        let at = self.rga.utf16_to_chars(index);
        json(&self.rga.anchor_at(at))
    }

    /// The current UTF-16 offset of an anchor (JSON, from [`Replica::anchor_at`]); an anchor this
    /// replica does not know resolves to the end.
    pub fn resolve(&self, anchor: &str) -> Result<usize, JsError> {
        let a: Anchor = parse("anchor", anchor)?;
        Ok(self.rga.chars_to_utf16(self.rga.resolve(a)))
    }

    /// Deletes whichever of this site's characters with sequence numbers `from..to` are still
    /// visible (undo of its own insert). Returns JSON: `{"ops", "changes", "removed": [{"anchor",
    /// "text"}]}`, where `removed` says what to insert where to redo.
    #[wasm_bindgen(js_name = deleteOwn)]
    pub fn delete_own(&mut self, from: f64, to: f64) -> Result<String, JsError> {
        if !(from.is_finite() && to.is_finite()) || from < 1.0 || to < from {
            return Err(JsError::new("a sequence range is 1 <= from <= to"));
        }
        let (from, to) = (from as u64, (to as u64).min(self.rga.next_seq(self.site)));
        // The visible ones, as char ranges, from the last to the first so earlier indexes hold.
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for seq in from..to {
            let id = CharId {
                sid: self.site,
                seq,
            };
            if self.rga.is_visible(id) != Some(true) {
                continue;
            }
            let Some(i) = self.rga.index_of(id) else {
                continue;
            };
            match ranges.last_mut() {
                Some((_, e)) if *e == i => *e = i + 1,
                Some((s, _)) if i + 1 == *s => *s = i,
                _ => ranges.push((i, i + 1)),
            }
        }
        ranges.sort_unstable_by_key(|r| std::cmp::Reverse(r.0));
        let mut ops = Vec::new();
        let mut changes = Vec::new();
        let mut removed = Vec::new();
        for (s, e) in ranges {
            let index = self.rga.chars_to_utf16(s);
            let len = self.rga.chars_to_utf16(e) - index;
            removed.push(Removed {
                anchor: self.rga.anchor_at(s),
                text: self.rga.slice(s, e),
            });
            let made = self.rga.delete(self.site, s, e - s).map_err(edit_error)?;
            ops.extend(made.to_vec());
            changes.push(Change::Delete { index, len });
        }
        Ok(json(&Removal {
            ops: &ops,
            changes: patches(&changes),
            removed,
        }))
    }

    /// Whether every character of the `len` UTF-16 units at `index` is this site's, with a
    /// sequence number of at least `from` (made by the edits since then: an undo group).
    #[wasm_bindgen(js_name = ownSince)]
    pub fn own_since(&self, index: usize, len: usize, from: f64) -> bool {
        let Ok((start, end)) = self.char_range(index, len) else {
            return false;
        };
        (start..end).all(|i| {
            self.rga
                .id_at(i)
                .is_some_and(|id| id.sid == self.site && id.seq as f64 >= from)
        })
    }

    /// The char offset of a UTF-16 offset (for tests and diagnostics).
    #[wasm_bindgen(js_name = charsAt)]
    pub fn chars_at(&self, index: usize) -> usize {
        self.rga.utf16_to_chars(index)
    }
}

impl Replica {
    fn char_index(&self, index: usize) -> Result<usize, JsError> {
        let len = self.rga.utf16_len();
        if index > len {
            return Err(JsError::new(&format!(
                "index {index} is past the end of a text of {len} UTF-16 units"
            )));
        }
        Ok(self.rga.utf16_to_chars(index))
    }

    fn char_range(&self, index: usize, len: usize) -> Result<(usize, usize), JsError> {
        let total = self.rga.utf16_len();
        match index.checked_add(len) {
            Some(end) if end <= total => {
                let start = self.rga.utf16_to_chars(index);
                // An empty range inside a surrogate pair stays empty (before the pair).
                let end = if len == 0 {
                    start
                } else {
                    self.rga.utf16_to_chars_up(end)
                };
                Ok((start, end))
            }
            _ => Err(JsError::new(&format!(
                "the range {index}+{len} runs past the end of a text of {total} UTF-16 units"
            ))),
        }
    }
}
