//! The WebSocket use-cases: a connection opens on a document (`$connect`), sends messages
//! (`$default`) and closes (`$disconnect`). The function that receives API Gateway's events
//! only translates them; everything decided about a connection is decided here.
//!
//! - `edits` and `ops` go through the same use-cases as the HTTP API (same validation,
//!   idempotency keys from `request_id`, outbox, broadcast and push); the sender gets an `ack`
//!   or an `error` on its connection.
//! - `presence` is relayed to the document's other connections and never stored; `ping` is
//!   answered.
//! - Every message reads the connection's standing first: a connection whose user no longer
//!   reads the document (removed, document deleted) or whose token has expired is sent an
//!   `error` saying why and closed, whatever it sent; a viewer's `edits` and `ops` get a
//!   `forbidden` error.

use super::push::{broadcast, end_if_not_reading};
use super::{RequestKey, Service};
use crate::auth::Verified;
use crate::error::AppError;
use crate::ids::DocumentId;
use crate::model::{Connection, Role};
use crate::ports::{ConnectionPoster, DocumentStore, EventPublisher};
use crate::wire::{ClientMessage, MAX_PRESENCE_COLOR, MAX_PRESENCE_NAME, ServerMessage};

/// The use-cases of WebSocket connections on one replica.
pub struct Sockets<S, P, C> {
    service: Service<S, P>,
    poster: C,
}

impl<S: DocumentStore, P: EventPublisher, C: ConnectionPoster> Sockets<S, P, C> {
    /// The connection use-cases over `service`, reaching connections through `poster`.
    pub fn new(service: Service<S, P>, poster: C) -> Self {
        Sockets { service, poster }
    }

    /// The document use-cases.
    pub fn service(&self) -> &Service<S, P> {
        &self.service
    }

    /// Opens connection `id` on `document` for `caller`, who must read it (404 otherwise).
    pub async fn connect(
        &self,
        id: &str,
        document: DocumentId,
        caller: &Verified,
    ) -> Result<(), AppError> {
        self.service
            .authorize(document, &caller.user, Role::Viewer)
            .await?;
        let c = Connection {
            id: id.to_owned(),
            document_id: document,
            user_id: caller.user.clone(),
            connected_at: chrono::Utc::now(),
            expires_at: chrono::DateTime::from_timestamp(caller.expires_at, 0),
        };
        self.service
            .store()
            .add_connection(&c, self.service.settings().replica)
            .await
    }

    /// Forgets connection `id` and tells the others on its document that its presence is gone.
    pub async fn disconnect(&self, id: &str) -> Result<(), AppError> {
        let store = self.service.store();
        if let Some(c) = store.remove_connection(id).await? {
            let gone = ServerMessage::PresenceGone {
                connection: c.id.clone(),
                user: c.user_id,
            };
            broadcast(store, &self.poster, c.document_id, &gone, Some(&c.id)).await;
        }
        Ok(())
    }

    /// Handles one message `body` from connection `id`; the answer goes to the connection.
    /// An error is returned only when the connection is unknown or the store failed before
    /// anything was decided.
    pub async fn message(&self, id: &str, body: &str) -> Result<(), AppError> {
        let store = self.service.store();
        let (c, standing) = store
            .connection(id)
            .await?
            .ok_or_else(|| AppError::NotFound("unknown connection".into()))?;
        let span = tracing::Span::current();
        span.record("document", c.document_id.to_string().as_str());
        span.record("user", c.user_id.0.as_str());
        // Access ends where it matters: a connection whose user was removed, whose document
        // was deleted or whose token expired is told why and closed, whatever it sent.
        if end_if_not_reading(store, &self.poster, &c, standing).await {
            return Ok(());
        }
        let message: ClientMessage = match serde_json::from_str(body) {
            Ok(m) => m,
            Err(e) => {
                let why = format!("malformed message: {e}");
                self.reply(id, &refusal(None, "malformed", why)).await;
                return Ok(());
            }
        };
        let reply = match message {
            ClientMessage::Ping {} => ServerMessage::Pong,
            ClientMessage::Presence {
                cursor,
                selection,
                name,
                color,
                anchors,
            } => {
                let too_long = |s: &Option<String>, max: usize| {
                    s.as_ref().is_some_and(|s| s.chars().count() > max)
                };
                if too_long(&name, MAX_PRESENCE_NAME) || too_long(&color, MAX_PRESENCE_COLOR) {
                    refusal(
                        None,
                        "too_large",
                        format!(
                            "a presence name is at most {MAX_PRESENCE_NAME} chars and a colour at most {MAX_PRESENCE_COLOR}"
                        ),
                    )
                } else {
                    let p = ServerMessage::Presence {
                        connection: c.id.clone(),
                        user: c.user_id.clone(),
                        cursor,
                        selection,
                        name,
                        color,
                        anchors,
                    };
                    broadcast(store, &self.poster, c.document_id, &p, Some(&c.id)).await;
                    return Ok(());
                }
            }
            ClientMessage::Edits { request_id, .. } | ClientMessage::Ops { request_id, .. }
                if standing.role() == Some(Role::Viewer) =>
            {
                refusal(
                    request_id,
                    "forbidden",
                    "a viewer cannot edit this document".into(),
                )
            }
            ClientMessage::Edits {
                session,
                base,
                edits,
                request_id,
            } => {
                let outcome = match socket_key(&request_id, "edits", &(session, &base, &edits)) {
                    Err(e) => Err(e),
                    Ok(key) => {
                        self.service
                            .apply_edits_keyed(
                                c.document_id,
                                &c.user_id,
                                session,
                                base,
                                edits,
                                key.as_ref(),
                                false,
                            )
                            .await
                    }
                };
                match outcome {
                    Ok(o) => ServerMessage::Ack {
                        request_id,
                        version: o.version,
                        ops: o.ops,
                        pending: Vec::new(),
                    },
                    Err(e) => failed(id, request_id, e),
                }
            }
            ClientMessage::Ops {
                session,
                ops,
                request_id,
            } => {
                let outcome = match socket_key(&request_id, "ops", &(session, &ops)) {
                    Err(e) => Err(e),
                    Ok(key) => {
                        self.service
                            .apply_ops_keyed(c.document_id, &c.user_id, session, ops, key.as_ref())
                            .await
                    }
                };
                match outcome {
                    Ok(o) => ServerMessage::Ack {
                        request_id,
                        version: o.version,
                        ops: Vec::new(),
                        pending: o.pending,
                    },
                    Err(e) => failed(id, request_id, e),
                }
            }
        };
        self.reply(id, &reply).await;
        Ok(())
    }

    /// Posts `message` to connection `id` (split under the frame limit); a failure is logged.
    async fn reply(&self, id: &str, message: &ServerMessage) {
        for part in crate::wire::encode_for_socket(message) {
            if let Err(e) = self.poster.post(id, &part).await {
                tracing::warn!(connection = %id, error = ?e, "replying failed");
            }
        }
    }
}

/// An `error` message.
fn refusal(request_id: Option<String>, error: &str, message: String) -> ServerMessage {
    ServerMessage::Error {
        request_id,
        error: error.to_owned(),
        message,
    }
}

/// The `error` message for a use-case's error, with the HTTP API's code and explanation (a
/// 5xx is logged here and explained generically).
fn failed(connection: &str, request_id: Option<String>, e: AppError) -> ServerMessage {
    if e.status() >= 500 {
        tracing::error!(%connection, error = %e, "websocket message failed");
    }
    let body = e.body();
    refusal(request_id, body.error, body.message)
}

/// A socket message's `request_id` as its idempotency key: a message resent with the same id
/// (after a lost acknowledgement) applies nothing twice and gets the first answer.
fn socket_key(
    request_id: &Option<String>,
    kind: &str,
    body: &impl serde::Serialize,
) -> Result<Option<RequestKey>, AppError> {
    request_id
        .as_deref()
        .map(|id| RequestKey::new(id, &format!("socket {kind}"), body))
        .transpose()
}
