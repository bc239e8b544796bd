//! What an answer weighs, so that none exceeds Lambda's 6 MB response limit (issue 13).
//!
//! The largest answers are about a whole document: `POST /documents/{id}/sessions` (its text
//! and its encoded replica, base64), `GET /documents/{id}` and `/edits?include=text` (its text).
//! A local write that would make the session answer heavier than [`MAX_ANSWER_BYTES`] is
//! refused (413), so every answer about a document the limits allow fits. The weight is counted
//! as Lambda carries it: the JSON body is itself a JSON string in the response payload, so a
//! quote in the text costs four bytes, a newline three.
//!
//! The encoded replica is not re-encoded on every write: the cache keeps an upper bound of its
//! size ([`op_bound`] per op applied since the last exact encoding), and the text and the
//! encoding are measured exactly only when the cheap bounds say they might matter (a document
//! near the limit), so a write to an ordinary document costs nothing here.

use rga::{Op, Rga};

/// The heaviest answer about a document, in bytes of Lambda response payload: 5 MiB, leaving
/// room under the 6 MB limit for the status, headers and the envelope.
pub const MAX_ANSWER_BYTES: usize = 5 << 20;

/// Bytes of the session answer besides the text, snapshot and version (ids, keys, quotes).
const FIXED: usize = 512;

/// An upper bound of what `op` adds to `Rga::encode`: its text, and its ids and references as
/// varints (the order and deletion records an op can split are counted per target too).
pub fn op_bound(op: &Op) -> usize {
    match op {
        Op::Insert { text, .. } => 96 + text.len(),
        Op::Delete { targets, .. } => 64 + 96 * targets.len(),
        Op::Update { .. } => 64,
    }
}

/// The bound of `ops` together.
pub fn ops_bound<'a>(ops: impl IntoIterator<Item = &'a Op>) -> usize {
    ops.into_iter().map(op_bound).sum()
}

/// Bytes `text` takes in the payload: JSON-escaped in the body, and the body escaped again as
/// a JSON string.
pub fn text_payload_bytes(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            // `\"` in the body, `\\\"` in the payload.
            '"' | '\\' => 4,
            // `\n` in the body, `\\n` in the payload.
            '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 3,
            // `\u0001` in the body, `\\u0001` in the payload.
            c if (c as u32) < 0x20 => 7,
            c => c.len_utf8(),
        })
        .sum()
}

/// Bytes a JSON body takes in the payload (its quotes and backslashes escaped once more).
pub fn payload_bytes(json: &str) -> usize {
    json.len() + json.bytes().filter(|b| matches!(b, b'"' | b'\\')).count()
}

/// The version vector's bytes in the payload, bounded by its number of sites (a site id and a
/// count as escaped JSON key and number).
fn version_bound(sites: usize) -> usize {
    64 + 64 * sites
}

/// The base64 length of `n` bytes.
fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Whether the session answer of `rga` (text, a version of at most `sites` sites, and a
/// snapshot of at most `encoded` bytes) stays within `budget`: a cheap bound first, the exact
/// text when the bound does not decide.
pub fn session_answer_fits(rga: &Rga, sites: usize, encoded: usize, budget: usize) -> bool {
    let rest = FIXED + base64_len(encoded) + version_bound(sites);
    if rest + 7 * rga.len() <= budget {
        return true;
    }
    rest <= budget && text_payload_bytes(&rga.text()) <= budget - rest
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_bound_covers_the_encoding_whatever_the_edits() {
        for seed in 0..20u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut a = Rga::new();
            let mut b = Rga::new();
            let mut bound = a.encode().len();
            for _ in 0..400 {
                let len = a.len();
                let site = rga::SiteId(rng.random_range(1..4));
                let edit = if len > 0 && rng.random_bool(0.4) {
                    let at = rng.random_range(0..len);
                    let n = rng.random_range(1..=(len - at).min(30));
                    a.delete(site, at, n)
                } else {
                    let at = rng.random_range(0..=len);
                    let text: String = (0..rng.random_range(1..40))
                        .map(|_| ['a', 'é', '漢', '🦀', '\n', '"'][rng.random_range(0..6)])
                        .collect();
                    a.insert(site, at, &text)
                };
                for op in edit.expect("a local edit").to_vec() {
                    bound += op_bound(&op);
                    b.apply(op).expect("the op applies remotely");
                }
                assert!(
                    a.encode().len() <= bound,
                    "seed {seed}: encoding {} over the bound {bound}",
                    a.encode().len()
                );
                assert!(b.encode().len() <= bound, "seed {seed}: remote replica");
            }
        }
    }

    #[test]
    fn text_is_counted_as_lambda_carries_it() {
        let body =
            serde_json::to_string(&serde_json::json!({ "text": "a\"b\\c\nd\u{1}é🦀" })).unwrap();
        let payload = serde_json::to_string(&body).unwrap();
        let fixed = serde_json::to_string(
            &serde_json::to_string(&serde_json::json!({ "text": "" })).unwrap(),
        )
        .unwrap()
        .len();
        assert_eq!(
            text_payload_bytes("a\"b\\c\nd\u{1}é🦀"),
            payload.len() - fixed
        );
        assert_eq!(payload_bytes(&body), payload.len() - 2);
    }

    #[test]
    fn a_small_document_fits_without_reading_its_text_and_a_huge_one_does_not() {
        let mut r = Rga::new();
        r.insert(rga::SiteId(1), 0, "fn main() {}\n").unwrap();
        let v = r.version();
        assert!(session_answer_fits(&r, v.len(), 100, MAX_ANSWER_BYTES));
        let mut big = Rga::new();
        big.insert(rga::SiteId(1), 0, &"\"".repeat(1 << 20))
            .unwrap();
        // A mebichar of quotes is 4 MiB of payload: it fits alone, not with a 2 MiB snapshot.
        assert!(session_answer_fits(&big, 1, 1000, MAX_ANSWER_BYTES));
        assert!(!session_answer_fits(&big, 1, 2 << 20, MAX_ANSWER_BYTES));
    }
}
