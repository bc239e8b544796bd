//! Real-time push over WebSocket connections, after every commit.
//!
//! After a commit adds ops to a document (from the HTTP API, a WebSocket message, or another
//! replica through integrate), [`Service`](crate::Service) calls its push hook, which posts them
//! to every connection on that document on this replica through the [`ConnectionPoster`]
//! (`PostToConnection` in AWS). A message over 128 KB is split; a connection the gateway reports
//! gone is deleted; a slow or broken connection never fails the write that triggered the push
//! (errors are logged). A client that missed pushes catches up with
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

use rga::Op;

use crate::ids::DocumentId;
use crate::model::{Connection, DocumentInfo, Standing};
use crate::ports::{ConnectionPoster, Connections, PostError};
use crate::wire::{ServerMessage, encode_for_socket};

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

/// Tells a connection why it ends (an `error` message), closes it and forgets it.
async fn end<S: Connections, C: ConnectionPoster>(
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
pub async fn end_if_not_reading<S: Connections, C: ConnectionPoster>(
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
async fn keep_readers<S: Connections, C: ConnectionPoster>(
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
pub async fn broadcast<S: Connections, C: ConnectionPoster>(
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
pub async fn close_revoked<S: Connections, C: ConnectionPoster>(
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
    S: Connections + Clone + 'static,
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
