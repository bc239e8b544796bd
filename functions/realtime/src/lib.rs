//! The realtime function: API Gateway WebSocket events, translated for the connection
//! use-cases ([`collab::service::Sockets`]).
//!
//! - `$connect`: authenticates (a `token` query parameter, or the token in
//!   `Sec-WebSocket-Protocol`, which is then echoed back; in AWS a REQUEST authorizer's principal
//!   is accepted instead) and opens the connection on the document named by the `document`
//!   query parameter. 401 / 404 otherwise.
//! - `$default`: the message body goes to [`Sockets::message`], which answers on the connection.
//! - `$disconnect`: [`Sockets::disconnect`].

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use collab::auth::Verified;
use collab::ports::{ConnectionPoster, DocumentStore, EventPublisher};
use collab::service::Sockets;
use collab::{AppError, DocumentId, UserId};

/// Shared per container.
pub struct Realtime<S, P, C> {
    /// The connection use-cases (over the same document use-cases as the HTTP API's).
    pub sockets: Sockets<S, P, C>,
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

impl<S: DocumentStore, P: EventPublisher, C: ConnectionPoster> Realtime<S, P, C> {
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
        tracing::Span::current().record("user", verified.user.0.as_str());
        let raw = req.query_string_parameters.first("document").unwrap_or("");
        let document: DocumentId = raw
            .parse()
            .map_err(|_| AppError::BadRequest(format!("{raw:?} is not a document id")))?;
        self.sockets
            .connect(connection, document, &verified)
            .await?;
        Ok(response(200, None, protocol.as_deref()))
    }

    async fn disconnect(&self, connection: &str) -> Result<ApiGatewayProxyResponse, AppError> {
        self.sockets.disconnect(connection).await?;
        Ok(response(200, None, None))
    }

    async fn message(
        &self,
        connection: &str,
        body: &str,
    ) -> Result<ApiGatewayProxyResponse, AppError> {
        self.sockets.message(connection, body).await?;
        Ok(response(200, None, None))
    }
}
