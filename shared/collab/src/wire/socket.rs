//! The messages exchanged with editors over an API Gateway WebSocket connection: what a client
//! sends ([`ClientMessage`]) and what it is sent ([`ServerMessage`]). A message over API
//! Gateway's 128 KB frame limit is split ([`encode_for_socket`]): an `ops` push becomes several
//! pushes, each applicable alone (the ops of one commit may arrive in any order anyway).

use rga::{CharId, Op, SiteId, Splice, VersionVector};
use serde::{Deserialize, Serialize};

use super::replication::{Broadcast, Envelope, split};
use crate::ids::{DocumentId, ReplicaId, UserId};
use crate::model::DocumentInfo;

/// API Gateway's limit for one WebSocket message.
pub const WS_MAX_BYTES: usize = 128 * 1024;

/// What an editor sends on its WebSocket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Index-based edits, as `POST /documents/{id}/edits`.
    Edits {
        /// The session (site id).
        session: SiteId,
        /// The version the indexes refer to (default: the current text).
        #[serde(default)]
        base: Option<VersionVector>,
        /// The splices.
        edits: Vec<Splice>,
        /// Echoed in the acknowledgement.
        #[serde(default)]
        request_id: Option<String>,
    },
    /// RGA ops of the session's site, as `POST /documents/{id}/operations`.
    Ops {
        /// The session (site id).
        session: SiteId,
        /// The ops.
        ops: Vec<Op>,
        /// Echoed in the acknowledgement.
        #[serde(default)]
        request_id: Option<String>,
    },
    /// Cursor and selection, relayed to the other editors (never stored).
    Presence {
        /// Cursor position, in chars.
        #[serde(default)]
        cursor: Option<usize>,
        /// Selected range `[start, end)`, in chars.
        #[serde(default)]
        selection: Option<(usize, usize)>,
        /// Name to show (at most 64 chars).
        #[serde(default)]
        name: Option<String>,
        /// Colour to show it in, a CSS colour (at most 32 chars).
        #[serde(default)]
        color: Option<String>,
        /// Cursor and selection as anchors, which keep their place under concurrent edits.
        #[serde(default)]
        anchors: Option<PresenceAnchors>,
    },
    /// Keep-alive.
    Ping {},
}

/// A cursor and selection as two [`rga::Anchor`]s (`null` is the start of the text): `head` is
/// where the caret is, `tail` the other end of the selection (equal to `head` when nothing is
/// selected). Either may be `null` (or, like any anchor, left out): the start of the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceAnchors {
    /// The caret.
    pub head: rga::Anchor,
    /// The other end of the selection.
    pub tail: rga::Anchor,
}

/// Longest presence `name`, in chars.
pub const MAX_PRESENCE_NAME: usize = 64;
/// Longest presence `color`, in chars.
pub const MAX_PRESENCE_COLOR: usize = 32;

/// What the server sends to an editor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// New ops of the document (from anyone, including this editor).
    Ops {
        /// The document.
        document: DocumentId,
        /// The ops, in an order in which they can be applied.
        ops: Vec<Op>,
    },
    /// Another editor's presence.
    Presence {
        /// Its connection.
        connection: String,
        /// Its user.
        user: UserId,
        /// Cursor position.
        cursor: Option<usize>,
        /// Selected range.
        selection: Option<(usize, usize)>,
        /// Name to show.
        name: Option<String>,
        /// Colour to show it in.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        color: Option<String>,
        /// Cursor and selection as anchors.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        anchors: Option<PresenceAnchors>,
    },
    /// Another editor left.
    PresenceGone {
        /// Its connection.
        connection: String,
        /// Its user.
        user: UserId,
    },
    /// A message of this editor was applied.
    Ack {
        /// The request's `request_id`.
        request_id: Option<String>,
        /// The version of the editor's copy after its edits (for `edits`), or the replica's.
        version: VersionVector,
        /// Ops generated for `edits`.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        ops: Vec<Op>,
        /// Ops of an `ops` message still waiting for their causes.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        pending: Vec<CharId>,
    },
    /// A message of this editor was refused.
    Error {
        /// The request's `request_id`, if it had one.
        request_id: Option<String>,
        /// Machine-readable code (as in HTTP error bodies).
        error: String,
        /// Explanation.
        message: String,
    },
    /// Answer to `ping`.
    Pong,
}

/// Serializes `message`; an `Ops` message over the limit becomes several.
pub fn encode_for_socket(message: &ServerMessage) -> Vec<String> {
    let one = serde_json::to_string(message).unwrap_or_default();
    if one.len() <= WS_MAX_BYTES {
        return vec![one];
    }
    let ServerMessage::Ops { document, ops } = message else {
        return vec![one];
    };
    // Reuse the SNS splitter's packing (it cuts long runs too), then re-wrap each part.
    let info = DocumentInfo {
        id: *document,
        title: String::new(),
        owner_id: UserId(String::new()),
        created_at: chrono::DateTime::UNIX_EPOCH,
        origin_replica: ReplicaId(0),
        title_stamp: 0,
        title_replica: ReplicaId(0),
        deleted: false,
    };
    let envelope = Envelope {
        origin: ReplicaId(0),
        body: Broadcast::Ops {
            document: info,
            ops: ops.clone(),
        },
    };
    split(&envelope, WS_MAX_BYTES - 1024)
        .into_iter()
        .filter_map(
            |m| match serde_json::from_str::<Envelope>(&m.body).ok()?.body {
                Broadcast::Ops { ops, .. } => serde_json::to_string(&ServerMessage::Ops {
                    document: *document,
                    ops,
                })
                .ok(),
                _ => None,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_and_bad_ones_do_not() {
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"presence","cursor":3,"selection":[1,4],"name":"Ada"}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ClientMessage::Presence {
                cursor: Some(3),
                selection: Some((1, 4)),
                name: Some("Ada".into()),
                color: None,
                anchors: None,
            }
        );
        let m: ClientMessage = serde_json::from_str(
            r##"{"type":"presence","color":"#e11d48","anchors":{"head":{"sid":7,"seq":2},"tail":null}}"##,
        )
        .unwrap();
        let ClientMessage::Presence {
            anchors: Some(a), ..
        } = m
        else {
            panic!("{m:?}")
        };
        assert_eq!(
            a.head,
            rga::Anchor(Some(rga::CharId {
                sid: SiteId(7),
                seq: 2
            }))
        );
        assert_eq!(a.tail, rga::Anchor(None));
        assert_eq!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"ping"}"#).unwrap(),
            ClientMessage::Ping {}
        );
        for bad in [
            r#"{"type":"shout"}"#,
            r#"{"type":"ping","x":1}"#,
            r#"{"type":"presence","anchors":{"head":null,"tail":null,"x":1}}"#,
            r#"{"type":"edits","session":1}"#,
            "nope",
        ] {
            assert!(serde_json::from_str::<ClientMessage>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn large_pushes_split_under_the_websocket_limit() {
        let mut doc = rga::Rga::new();
        doc.insert(SiteId(1), 0, &"y".repeat(400_000)).unwrap();
        let ops = doc.ops_since(&VersionVector::new());
        let parts = encode_for_socket(&ServerMessage::Ops {
            document: DocumentId::new(),
            ops,
        });
        assert!(parts.len() >= 4);
        let mut back = rga::Rga::new();
        for p in &parts {
            assert!(p.len() <= WS_MAX_BYTES);
            let ServerMessage::Ops { ops, .. } = serde_json::from_str(p).unwrap() else {
                panic!()
            };
            back.apply_all(ops).unwrap();
        }
        assert_eq!(back.text(), doc.text());
    }
}
