//! Real-time push over API Gateway WebSocket connections: the messages exchanged with editors,
//! and the push of new ops after every commit.
//!
//! After a commit adds ops to a document (from the HTTP API, a WebSocket message, or another
//! replica through integrate), [`Service`](crate::Service) calls its push hook, which posts them
//! to every connection on that document on this replica through API Gateway's management API
//! (`PostToConnection`). A message over 128 KB is split; a connection API Gateway reports gone
//! (`GoneException`) is deleted; a slow or broken connection never fails the write that triggered
//! the push (errors are logged). A client that missed pushes catches up with
//! `GET /documents/{id}/operations?since=<its version>`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rga::{CharId, Op, SiteId, Splice, VersionVector};
use serde::{Deserialize, Serialize};

use crate::ids::{DocumentId, UserId};
use crate::message::{Broadcast, Envelope, split};
use crate::model::DocumentInfo;
use crate::store::DocumentStore;

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

/// Why a post to a connection failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostError {
    /// The connection is gone: forget it.
    Gone,
    /// Anything else (logged; the connection stays).
    Other(String),
}

/// Sends data to a WebSocket connection (API Gateway's management API).
pub trait ConnectionPoster: Send + Sync {
    /// Posts one message (at most 128 KB).
    fn post(
        &self,
        connection: &str,
        data: &str,
    ) -> impl Future<Output = Result<(), PostError>> + Send;
}

/// Posts through `aws-sdk-apigatewaymanagement`, to the endpoint of the WebSocket API's stage
/// (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`, or the local gateway's).
#[derive(Clone, Debug)]
pub struct ApiGatewayPoster {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ApiGatewayPoster {
    /// A poster for the stage at `endpoint`, with the default credentials chain.
    pub async fn new(endpoint: &str, region: &str) -> Self {
        let conf = crate::config::aws_loader(region, None).load().await;
        Self::from_sdk(&conf, endpoint)
    }

    /// A poster for the stage at `endpoint` from an SDK configuration.
    pub fn from_sdk(conf: &aws_config::SdkConfig, endpoint: &str) -> Self {
        let conf = aws_sdk_apigatewaymanagement::config::Builder::from(conf)
            .endpoint_url(endpoint)
            .build();
        ApiGatewayPoster {
            client: aws_sdk_apigatewaymanagement::Client::from_conf(conf),
        }
    }
}

impl ConnectionPoster for ApiGatewayPoster {
    async fn post(&self, connection: &str, data: &str) -> Result<(), PostError> {
        use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
        match self
            .client
            .post_to_connection()
            .connection_id(connection)
            .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(
                data.as_bytes(),
            ))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(PostToConnectionError::GoneException(_)) => Err(PostError::Gone),
                _ => Err(PostError::Other(
                    aws_sdk_apigatewaymanagement::error::DisplayErrorContext(e).to_string(),
                )),
            },
        }
    }
}

/// Called after a commit with the document and its new ops.
pub type PushHook =
    Arc<dyn Fn(DocumentInfo, Vec<Op>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

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
        origin_replica: crate::ids::ReplicaId(0),
        title_stamp: 0,
        title_replica: crate::ids::ReplicaId(0),
        deleted: false,
    };
    let envelope = Envelope {
        origin: crate::ids::ReplicaId(0),
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

/// Sends `message` to every connection on `document` except `skip`; deletes the gone ones.
pub async fn broadcast<S: DocumentStore, C: ConnectionPoster>(
    store: &S,
    poster: &C,
    document: DocumentId,
    message: &ServerMessage,
    skip: Option<&str>,
) {
    let connections = match store.connections(document).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%document, error = %e, "listing connections failed; nothing pushed");
            return;
        }
    };
    let parts = encode_for_socket(message);
    let sends = connections.iter().filter(|c| Some(c.id.as_str()) != skip).map(|c| async {
        for part in &parts {
            match poster.post(&c.id, part).await {
                Ok(()) => {}
                Err(PostError::Gone) => {
                    if let Err(e) = store.remove_connection(&c.id).await {
                        tracing::warn!(connection = %c.id, error = %e, "forgetting a gone connection failed");
                    }
                    return;
                }
                Err(PostError::Other(e)) => {
                    tracing::warn!(connection = %c.id, error = %e, "push failed");
                    return;
                }
            }
        }
    });
    futures_util::future::join_all(sends).await;
}

/// The push hook: new ops go to every connection on their document.
pub fn push_hook<S, C>(store: S, poster: C) -> PushHook
where
    S: DocumentStore + Clone + 'static,
    C: ConnectionPoster + Clone + 'static,
{
    Arc::new(move |doc: DocumentInfo, ops: Vec<Op>| {
        let (store, poster) = (store.clone(), poster.clone());
        Box::pin(async move {
            broadcast(
                &store,
                &poster,
                doc.id,
                &ServerMessage::Ops {
                    document: doc.id,
                    ops,
                },
                None,
            )
            .await;
        })
    })
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
