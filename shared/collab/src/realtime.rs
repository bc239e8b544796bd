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
//!
//! Access ends where it matters (issue 16): every push reads each connection's standing (its
//! user's role now, the document's deletion, the token's expiry) in the same query that lists
//! the connections, and a connection that no longer reads is sent an `error` saying why
//! (`access_revoked`, `document_deleted`, `token_expired`) and closed (`DeleteConnection`),
//! never pushed to. A change of access closes such connections at once through
//! [`PushHook::access_changed`], on the replica that made it and on every replica that
//! integrates it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rga::{CharId, Op, SiteId, Splice, VersionVector};
use serde::{Deserialize, Serialize};

use crate::ids::{DocumentId, UserId};
use crate::message::{Broadcast, Envelope, split};
use crate::model::{Connection, DocumentInfo, Standing};
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

/// Sends data to a WebSocket connection, and closes it (API Gateway's management API).
pub trait ConnectionPoster: Send + Sync {
    /// Posts one message (at most 128 KB).
    fn post(
        &self,
        connection: &str,
        data: &str,
    ) -> impl Future<Output = Result<(), PostError>> + Send;

    /// Closes the connection (`DeleteConnection`); the gateway then sends `$disconnect`.
    fn close(&self, connection: &str) -> impl Future<Output = Result<(), PostError>> + Send;
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

    async fn close(&self, connection: &str) -> Result<(), PostError> {
        use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
        match self
            .client
            .delete_connection()
            .connection_id(connection)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(DeleteConnectionError::GoneException(_)) => Err(PostError::Gone),
                _ => Err(PostError::Other(
                    aws_sdk_apigatewaymanagement::error::DisplayErrorContext(e).to_string(),
                )),
            },
        }
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the service calls after a commit: new ops go to the document's connections, and a
/// change of access (a collaborator removed or lowered, the document deleted) closes the
/// connections that no longer read.
#[derive(Clone)]
pub struct PushHook {
    ops: Arc<dyn Fn(DocumentInfo, Vec<Op>) -> BoxFuture + Send + Sync>,
    access: Arc<dyn Fn(DocumentId) -> BoxFuture + Send + Sync>,
}

impl PushHook {
    /// Pushes `ops` of `doc` to its connections.
    pub async fn ops(&self, doc: DocumentInfo, ops: Vec<Op>) {
        (self.ops)(doc, ops).await
    }

    /// Access to `document` changed: closes its connections that no longer read.
    pub async fn access_changed(&self, document: DocumentId) {
        (self.access)(document).await
    }
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

/// Tells a connection why it ends (an `error` message), closes it and forgets it.
async fn end<S: DocumentStore, C: ConnectionPoster>(
    store: &S,
    poster: &C,
    c: &Connection,
    (error, message): (&str, &str),
) {
    tracing::info!(connection = %c.id, document = %c.document_id, user = %c.user_id.0, reason = error, "closing a connection");
    let notice = ServerMessage::Error {
        request_id: None,
        error: error.to_owned(),
        message: message.to_owned(),
    };
    for part in encode_for_socket(&notice) {
        if poster.post(&c.id, &part).await.is_err() {
            break;
        }
    }
    if let Err(PostError::Other(e)) = poster.close(&c.id).await {
        tracing::warn!(connection = %c.id, error = %e, "closing a connection failed");
    }
    if let Err(e) = store.remove_connection(&c.id).await {
        tracing::warn!(connection = %c.id, error = %e, "forgetting a closed connection failed");
    }
}

/// Ends `c` when `standing` says it no longer reads: it is told why (an `error` message), closed
/// and forgotten. `true` then.
pub async fn end_if_not_reading<S: DocumentStore, C: ConnectionPoster>(
    store: &S,
    poster: &C,
    c: &Connection,
    standing: Standing,
) -> bool {
    match standing.reason() {
        Some(reason) => {
            end(store, poster, c, reason).await;
            true
        }
        None => false,
    }
}

/// Splits a document's connections into those that still read and those that no longer do,
/// ends the latter (each told why, closed and forgotten) and tells the readers their presence
/// is gone. Returns the readers.
async fn keep_readers<S: DocumentStore, C: ConnectionPoster>(
    store: &S,
    poster: &C,
    connections: Vec<(Connection, Standing)>,
) -> Vec<Connection> {
    let mut readers = Vec::with_capacity(connections.len());
    let mut ended = Vec::new();
    for (c, standing) in connections {
        match standing.reason() {
            None => readers.push(c),
            Some(reason) => ended.push((c, reason)),
        }
    }
    if ended.is_empty() {
        return readers;
    }
    futures_util::future::join_all(
        ended
            .iter()
            .map(|(c, reason)| end(store, poster, c, *reason)),
    )
    .await;
    let gone: Vec<String> = ended
        .iter()
        .filter_map(|(c, _)| {
            serde_json::to_string(&ServerMessage::PresenceGone {
                connection: c.id.clone(),
                user: c.user_id.clone(),
            })
            .ok()
        })
        .collect();
    futures_util::future::join_all(readers.iter().map(|r| async {
        for g in &gone {
            if poster.post(&r.id, g).await.is_err() {
                return;
            }
        }
    }))
    .await;
    readers
}

/// Sends `message` to every connection on `document` except `skip`. A connection whose user no
/// longer reads the document, or whose token expired, gets nothing: it is told why and closed.
/// Gone connections are forgotten.
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
    let readers = keep_readers(store, poster, connections).await;
    let parts = encode_for_socket(message);
    let sends = readers
        .iter()
        .filter(|c| Some(c.id.as_str()) != skip)
        .map(|c| async {
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
                        crate::metrics::count("PushFailures", 1);
                        return;
                    }
                }
            }
        });
    futures_util::future::join_all(sends).await;
}

/// Closes every connection on `document` that no longer reads it (after a collaborator was
/// removed or lowered, or the document deleted, here or on another replica).
pub async fn close_revoked<S: DocumentStore, C: ConnectionPoster>(
    store: &S,
    poster: &C,
    document: DocumentId,
) {
    match store.connections(document).await {
        Ok(c) => {
            keep_readers(store, poster, c).await;
        }
        Err(e) => tracing::warn!(%document, error = %e, "listing connections failed; none closed"),
    }
}

/// The push hook: new ops go to every connection on their document; a change of access closes
/// the connections that lost it.
pub fn push_hook<S, C>(store: S, poster: C) -> PushHook
where
    S: DocumentStore + Clone + 'static,
    C: ConnectionPoster + Clone + 'static,
{
    let (store2, poster2) = (store.clone(), poster.clone());
    PushHook {
        ops: Arc::new(move |doc: DocumentInfo, ops: Vec<Op>| {
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
        }),
        access: Arc::new(move |document: DocumentId| {
            let (store, poster) = (store2.clone(), poster2.clone());
            Box::pin(async move { close_revoked(&store, &poster, document).await })
        }),
    }
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
