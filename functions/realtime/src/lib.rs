//! The realtime function: API Gateway WebSocket events.
//!
//! - `$connect`: authenticates (a `token` query parameter, or the token in
//!   `Sec-WebSocket-Protocol`, which is then echoed back; in AWS a REQUEST authorizer's principal
//!   is accepted instead), checks that the caller may read the document named by the `document`
//!   query parameter, and stores the connection. 401 / 404 otherwise.
//! - `$default`: a JSON [`ClientMessage`]: `edits` and `ops` go through the same use-cases as the
//!   HTTP API (same validation, outbox, broadcast and push); `presence` is relayed to the
//!   document's other connections and never stored; `ping` is answered. The sender gets an `ack`
//!   or an `error` message on its connection.
//! - `$disconnect`: forgets the connection and tells the others its presence is gone.
//!
//! Every message reads the connection's standing first: a connection whose user no longer
//! reads the document (removed, document deleted) or whose token has expired is sent an
//! `error` saying why and closed, whatever it sent; a viewer's `edits` and `ops` get a
//! `forbidden` error.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use collab::auth::Verified;
use collab::model::{Connection, Role};
use collab::publisher::EventPublisher;
use collab::realtime::{
    ClientMessage, ConnectionPoster, ServerMessage, broadcast, end_if_not_reading,
};
use collab::store::DocumentStore;
use collab::{AppError, DocumentId, Service, UserId};

/// Shared per container.
pub struct Realtime<S, P, C> {
    /// The use-cases (the same as the HTTP API's).
    pub service: Service<S, P>,
    /// The connections table (the service's store, cloned).
    pub store: S,
    /// Posts to connections.
    pub poster: C,
    /// HS256 secret of local tokens (`AUTH_LOCAL_SECRET`).
    pub local_secret: Option<Vec<u8>>,
    /// Verifier of the identity provider's tokens (`JWT_ISSUER`, `JWT_AUDIENCE`), in AWS.
    pub oidc: Option<collab::auth::OidcVerifier>,
}

fn response(status: u16, body: Option<String>, protocol: Option<&str>) -> ApiGatewayProxyResponse {
    let mut headers = http::HeaderMap::new();
    if let Some(p) = protocol.and_then(|p| http::HeaderValue::from_str(p).ok()) {
        headers.insert("sec-websocket-protocol", p);
    }
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status as i64;
    r.headers = headers;
    r.body = body.map(Body::Text);
    r.is_base64_encoded = false;
    r
}

fn refuse(e: &AppError) -> ApiGatewayProxyResponse {
    response(e.status(), serde_json::to_string(&e.body()).ok(), None)
}

/// The token offered in `Sec-WebSocket-Protocol` (browsers cannot set headers on a WebSocket, so
/// clients pass it as a subprotocol): the listed value that looks like a JWT.
fn protocol_token(req: &ApiGatewayWebsocketProxyRequest) -> Option<String> {
    let value = req.headers.get("sec-websocket-protocol")?.to_str().ok()?;
    value
        .split(',')
        .map(str::trim)
        .find(|p| p.matches('.').count() == 2)
        .map(str::to_owned)
}

impl<S: DocumentStore + Clone, P: EventPublisher, C: ConnectionPoster> Realtime<S, P, C> {
    /// Handles one WebSocket event, inside a span naming the route, connection, document and
    /// user (recorded once known), so every log line of the event carries them.
    pub async fn handle(&self, req: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "websocket",
            route = req.request_context.route_key.as_deref().unwrap_or(""),
            connection = req.request_context.connection_id.as_deref().unwrap_or(""),
            document = tracing::field::Empty,
            user = tracing::field::Empty,
        );
        self.handle_event(req).instrument(span).await
    }

    async fn handle_event(&self, req: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let route = req.request_context.route_key.clone().unwrap_or_default();
        let Some(connection) = req.request_context.connection_id.clone() else {
            return refuse(&AppError::BadRequest("no connection id".into()));
        };
        let result = match route.as_str() {
            "$connect" => self.connect(&req, &connection).await,
            "$disconnect" => self.disconnect(&connection).await,
            _ => {
                self.message(&connection, req.body.as_deref().unwrap_or(""))
                    .await
            }
        };
        result.unwrap_or_else(|e| {
            if e.status() >= 500 {
                tracing::error!(%connection, %route, error = %e, "websocket event failed");
            } else {
                tracing::info!(%connection, %route, error = %e, status = e.status(), "websocket event refused");
            }
            refuse(&e)
        })
    }

    /// [`Realtime::handle`] on a raw JSON event, as an invoke endpoint receives it (for the local
    /// gateway's in-process runs).
    pub async fn handle_json(&self, event: serde_json::Value) -> Result<serde_json::Value, String> {
        let req: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(event).map_err(|e| e.to_string())?;
        serde_json::to_value(self.handle(req).await).map_err(|e| e.to_string())
    }

    /// Who connects, until when, and the subprotocol to echo.
    async fn caller(
        &self,
        req: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<(Verified, Option<String>), AppError> {
        // A REQUEST authorizer (in AWS) passes its principal on.
        if let Some(p) = req
            .request_context
            .authorizer
            .fields
            .get("principalId")
            .and_then(|v| v.as_str())
            .filter(|p| !p.is_empty())
        {
            // The authorizer may pass the token's expiry on as `exp` (seconds).
            let exp = req
                .request_context
                .authorizer
                .fields
                .get("exp")
                .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
            return Ok((
                Verified {
                    user: UserId(p.to_owned()),
                    expires_at: exp.unwrap_or(i64::MAX),
                },
                None,
            ));
        }
        let from_protocol = protocol_token(req);
        let token = req
            .query_string_parameters
            .first("token")
            .map(str::to_owned)
            .or_else(|| from_protocol.clone())
            .ok_or_else(|| {
                AppError::Unauthorized(
                    "no token (query parameter `token` or Sec-WebSocket-Protocol)".into(),
                )
            })?;
        let user = match (&self.oidc, &self.local_secret) {
            (Some(oidc), _) => oidc.verify(&token).await?,
            (None, Some(secret)) => collab::auth::verify_local(secret, &token)?,
            (None, None) => {
                return Err(AppError::Unauthorized(
                    "no way to verify tokens is configured".into(),
                ));
            }
        };
        Ok((user, from_protocol))
    }

    async fn connect(
        &self,
        req: &ApiGatewayWebsocketProxyRequest,
        connection: &str,
    ) -> Result<ApiGatewayProxyResponse, AppError> {
        let (verified, protocol) = self.caller(req).await?;
        let user = verified.user;
        tracing::Span::current().record("user", user.0.as_str());
        let raw = req.query_string_parameters.first("document").unwrap_or("");
        let document: DocumentId = raw
            .parse()
            .map_err(|_| AppError::BadRequest(format!("{raw:?} is not a document id")))?;
        self.service
            .authorize(document, &user, Role::Viewer)
            .await?;
        let c = Connection {
            id: connection.to_owned(),
            document_id: document,
            user_id: user,
            connected_at: chrono::Utc::now(),
            expires_at: chrono::DateTime::from_timestamp(verified.expires_at, 0),
        };
        self.store
            .add_connection(&c, self.service.settings().replica)
            .await?;
        Ok(response(200, None, protocol.as_deref()))
    }

    async fn disconnect(&self, connection: &str) -> Result<ApiGatewayProxyResponse, AppError> {
        if let Some(c) = self.store.remove_connection(connection).await? {
            let gone = ServerMessage::PresenceGone {
                connection: c.id.clone(),
                user: c.user_id,
            };
            broadcast(&self.store, &self.poster, c.document_id, &gone, Some(&c.id)).await;
        }
        Ok(response(200, None, None))
    }

    async fn reply(&self, connection: &str, message: &ServerMessage) {
        for part in collab::realtime::encode_for_socket(message) {
            if let Err(e) = self.poster.post(connection, &part).await {
                tracing::warn!(%connection, error = ?e, "replying failed");
            }
        }
    }

    async fn message(
        &self,
        connection: &str,
        body: &str,
    ) -> Result<ApiGatewayProxyResponse, AppError> {
        let (c, standing) = self
            .store
            .connection(connection)
            .await?
            .ok_or_else(|| AppError::NotFound("unknown connection".into()))?;
        let span = tracing::Span::current();
        span.record("document", c.document_id.to_string().as_str());
        span.record("user", c.user_id.0.as_str());
        // Access ends where it matters: a connection whose user was removed, whose document
        // was deleted or whose token expired is told why and closed, whatever it sent.
        if end_if_not_reading(&self.store, &self.poster, &c, standing).await {
            return Ok(response(200, None, None));
        }
        let viewer = standing.role() == Some(Role::Viewer);
        let message: ClientMessage = match serde_json::from_str(body) {
            Ok(m) => m,
            Err(e) => {
                let err = ServerMessage::Error {
                    request_id: None,
                    error: "malformed".into(),
                    message: format!("malformed message: {e}"),
                };
                self.reply(connection, &err).await;
                return Ok(response(200, None, None));
            }
        };
        let (user, doc) = (&c.user_id, c.document_id);
        if viewer
            && let ClientMessage::Edits { request_id, .. } | ClientMessage::Ops { request_id, .. } =
                &message
        {
            let err = ServerMessage::Error {
                request_id: request_id.clone(),
                error: "forbidden".into(),
                message: "a viewer cannot edit this document".into(),
            };
            self.reply(connection, &err).await;
            return Ok(response(200, None, None));
        }
        let outcome = match message {
            ClientMessage::Ping {} => Ok(ServerMessage::Pong),
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
                if too_long(&name, collab::realtime::MAX_PRESENCE_NAME)
                    || too_long(&color, collab::realtime::MAX_PRESENCE_COLOR)
                {
                    let err = ServerMessage::Error {
                        request_id: None,
                        error: "too_large".into(),
                        message: format!(
                            "a presence name is at most {} chars and a colour at most {}",
                            collab::realtime::MAX_PRESENCE_NAME,
                            collab::realtime::MAX_PRESENCE_COLOR
                        ),
                    };
                    self.reply(connection, &err).await;
                    return Ok(response(200, None, None));
                }
                let p = ServerMessage::Presence {
                    connection: c.id.clone(),
                    user: user.clone(),
                    cursor,
                    selection,
                    name,
                    color,
                    anchors,
                };
                broadcast(&self.store, &self.poster, doc, &p, Some(&c.id)).await;
                return Ok(response(200, None, None));
            }
            ClientMessage::Edits {
                session,
                base,
                edits,
                request_id,
            } => match socket_key(&request_id, "edits", &(session, &base, &edits)) {
                Err(e) => Err(e),
                Ok(key) => {
                    self.service
                        .apply_edits_keyed(doc, user, session, base, edits, key.as_ref(), false)
                        .await
                }
            }
            .map(|o| ServerMessage::Ack {
                request_id: request_id.clone(),
                version: o.version,
                ops: o.ops,
                pending: Vec::new(),
            })
            .map_err(|e| (request_id, e)),
            ClientMessage::Ops {
                session,
                ops,
                request_id,
            } => match socket_key(&request_id, "ops", &(session, &ops)) {
                Err(e) => Err(e),
                Ok(key) => {
                    self.service
                        .apply_ops_keyed(doc, user, session, ops, key.as_ref())
                        .await
                }
            }
            .map(|o| ServerMessage::Ack {
                request_id: request_id.clone(),
                version: o.version,
                ops: Vec::new(),
                pending: o.pending,
            })
            .map_err(|e| (request_id, e)),
        };
        let reply = match outcome {
            Ok(m) => m,
            Err((request_id, e)) => {
                if e.status() >= 500 {
                    tracing::error!(%connection, error = %e, "websocket message failed");
                }
                let body = e.body();
                ServerMessage::Error {
                    request_id,
                    error: body.error.to_owned(),
                    message: body.message,
                }
            }
        };
        self.reply(connection, &reply).await;
        Ok(response(200, None, None))
    }
}

/// A socket message's `request_id` as its idempotency key: a message resent with the same id
/// (after a lost acknowledgement) applies nothing twice and gets the first answer.
fn socket_key(
    request_id: &Option<String>,
    kind: &str,
    body: &impl serde::Serialize,
) -> Result<Option<collab::service::RequestKey>, collab::AppError> {
    request_id
        .as_deref()
        .map(|id| collab::service::RequestKey::new(id, &format!("socket {kind}"), body))
        .transpose()
}
