//! Operations, the unit of replication, and the changes they make in index terms.
//!
//! JSON forms (serde, used by the HTTP API):
//!
//! ```json
//! {"type":"insert","id":{"ssn":1,"sum":4,"sid":7,"seq":2},"after":{"ssn":1,"sum":3,"sid":7,"seq":1},"text":"ab"}
//! {"type":"insert","id":{"ssn":1,"sum":1,"sid":7,"seq":1},"after":null,"text":"x"}
//! {"type":"delete","id":{"ssn":1,"sum":6,"sid":7,"seq":4},"targets":[{"sid":7,"seq":2,"len":2}]}
//! {"type":"update","id":{"ssn":1,"sum":7,"sid":7,"seq":5},"target":{"sid":7,"seq":1},"value":"y"}
//! ```
//!
//! An insert of `n` characters is a run: character `k` has S4Vector `id.offset(k)` and is placed
//! after character `k - 1`; the first is placed after `after` (`null`: at the head). A delete
//! consumes one sequence number however many characters it removes. Positions in `Change` count
//! Unicode scalar values (Rust `char`s), not bytes or UTF-16 units.

use serde::{Deserialize, Serialize};

use crate::id::{CharId, IdRange, S4Vector, SiteId};

/// An RGA operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", try_from = "WireOp")]
pub enum Op {
    /// Inserts `text` after the character `after` (or at the head when `None`).
    Insert {
        /// S4Vector of the first character.
        id: S4Vector,
        /// S4Vector of the character the run is inserted after; `None` for the head.
        #[serde(default)]
        after: Option<S4Vector>,
        /// The characters, at least one.
        text: String,
    },
    /// Turns the target characters into tombstones.
    Delete {
        /// The delete's own S4Vector (the paper's `s_p` of the targets).
        id: S4Vector,
        /// The characters removed, at least one range.
        targets: Vec<IdRange>,
    },
    /// Replaces the value of one character; the highest precedence wins; never revives a tombstone.
    Update {
        /// The update's S4Vector.
        id: S4Vector,
        /// The character whose value changes.
        target: CharId,
        /// The new value.
        value: char,
    },
}

/// The JSON form read flat: serde's internally tagged enums buffer every object before reading
/// it, several times slower than one pass over a struct, and catch-up pages hold thousands of ops.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireOp {
    #[serde(rename = "type")]
    kind: WireKind,
    id: S4Vector,
    #[serde(default)]
    after: Option<S4Vector>,
    text: Option<String>,
    targets: Option<Vec<IdRange>>,
    target: Option<CharId>,
    value: Option<char>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireKind {
    Insert,
    Delete,
    Update,
}

impl TryFrom<WireOp> for Op {
    type Error = String;

    fn try_from(w: WireOp) -> Result<Op, String> {
        let extra = |kind: &str, fields: &[(&str, bool)]| -> Result<(), String> {
            match fields.iter().find(|(_, present)| *present) {
                Some((name, _)) => Err(format!("an {kind} op has no field `{name}`")),
                None => Ok(()),
            }
        };
        match w.kind {
            WireKind::Insert => {
                extra(
                    "insert",
                    &[
                        ("targets", w.targets.is_some()),
                        ("target", w.target.is_some()),
                        ("value", w.value.is_some()),
                    ],
                )?;
                Ok(Op::Insert {
                    id: w.id,
                    after: w.after,
                    text: w.text.ok_or("missing field `text`")?,
                })
            }
            WireKind::Delete => {
                extra(
                    "delete",
                    &[
                        ("after", w.after.is_some()),
                        ("text", w.text.is_some()),
                        ("target", w.target.is_some()),
                        ("value", w.value.is_some()),
                    ],
                )?;
                Ok(Op::Delete {
                    id: w.id,
                    targets: w.targets.ok_or("missing field `targets`")?,
                })
            }
            WireKind::Update => {
                extra(
                    "update",
                    &[
                        ("after", w.after.is_some()),
                        ("text", w.text.is_some()),
                        ("targets", w.targets.is_some()),
                    ],
                )?;
                Ok(Op::Update {
                    id: w.id,
                    target: w.target.ok_or("missing field `target`")?,
                    value: w.value.ok_or("missing field `value`")?,
                })
            }
        }
    }
}

impl Op {
    /// The S4Vector of the operation (of its first character for an insert).
    pub fn id(&self) -> &S4Vector {
        match self {
            Op::Insert { id, .. } | Op::Delete { id, .. } | Op::Update { id, .. } => id,
        }
    }

    /// The issuing site.
    pub fn site(&self) -> SiteId {
        self.id().sid
    }

    /// How many sequence numbers the operation uses: the characters of an insert, else 1.
    pub fn seq_len(&self) -> u64 {
        match self {
            Op::Insert { text, .. } => text.chars().count() as u64,
            Op::Delete { .. } | Op::Update { .. } => 1,
        }
    }
}

/// A change to the visible text, in the order the changes happened: each index refers to the
/// text after the changes before it (apply them in sequence to patch an editor buffer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    /// `text` now starts at `index`.
    Insert {
        /// Position, in chars.
        index: usize,
        /// The inserted text.
        text: String,
    },
    /// `len` chars starting at `index` were removed.
    Delete {
        /// Position, in chars.
        index: usize,
        /// Number of chars.
        len: usize,
    },
}

/// One index-based edit: at `index`, delete `delete` chars, then insert `insert` there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Splice {
    /// Position, in chars.
    pub index: usize,
    /// Number of chars removed at `index`.
    #[serde(default)]
    pub delete: usize,
    /// Text inserted at `index` after the removal.
    #[serde(default)]
    pub insert: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_through_their_documented_json_forms() {
        let docs = [
            r#"{"type":"insert","id":{"ssn":1,"sum":4,"sid":7,"seq":2},"after":{"ssn":1,"sum":3,"sid":7,"seq":1},"text":"ab"}"#,
            r#"{"type":"insert","id":{"ssn":1,"sum":1,"sid":7,"seq":1},"after":null,"text":"x"}"#,
            r#"{"type":"delete","id":{"ssn":1,"sum":6,"sid":7,"seq":4},"targets":[{"sid":7,"seq":2,"len":2}]}"#,
            r#"{"type":"update","id":{"ssn":1,"sum":7,"sid":7,"seq":5},"target":{"sid":7,"seq":1},"value":"y"}"#,
        ];
        for doc in docs {
            let op: Op = serde_json::from_str(doc).unwrap();
            assert_eq!(serde_json::to_string(&op).unwrap(), doc);
        }
    }

    #[test]
    fn malformed_op_json_is_an_error() {
        for bad in [
            r#"{"type":"insert","id":{"ssn":1,"sum":1,"sid":7,"seq":1}}"#,
            r#"{"type":"update","id":{"ssn":1,"sum":7,"sid":7,"seq":5},"target":{"sid":7,"seq":1},"value":"yz"}"#,
            r#"{"type":"rename"}"#,
            r#"{"type":"delete","id":{"ssn":1,"sum":6,"sid":-7,"seq":4},"targets":[]}"#,
            r#"{"type":"delete","id":{"ssn":1,"sum":6,"sid":7,"seq":4},"targets":[],"text":"x"}"#,
            r#"{"type":"insert","id":{"ssn":1,"sum":1,"sid":7,"seq":1},"text":"x","extra":1}"#,
            r#"{"type":"update","id":{"ssn":1,"sum":7,"sid":7,"seq":5},"target":{"sid":7,"seq":1}}"#,
        ] {
            assert!(serde_json::from_str::<Op>(bad).is_err(), "{bad}");
        }
    }
}
