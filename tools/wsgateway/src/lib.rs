//! A development-only stand-in for an API Gateway WebSocket API, for running and testing the
//! realtime function on one machine without AWS (no existing local tool does this for a
//! `provided.al2023` Lambda without Docker).
//!
//! - WebSockets on `ws://127.0.0.1:<port>/?document=...&token=...`: before upgrading, the
//!   gateway invokes the function's `$connect` route; a non-2xx answer refuses the handshake with
//!   that status. Each message becomes a `$default` event, the close a `$disconnect` event: real
//!   `ApiGatewayWebsocketProxyRequest` payloads, sent through an [`Invoker`] (cargo lambda's invoke
//!   endpoint, or in-process in tests).
//! - The management API on the same port: `POST`/`GET`/`DELETE /{stage}/@connections/{id}`;
//!   an unknown id gets 410 with `x-amzn-ErrorType: GoneException`, a post over 128 KB 413.
//! - AWS's limits: 32 KB frames and 128 KB messages; a client exceeding them is closed with
//!   code 1009.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// API Gateway's WebSocket frame limit.
pub const MAX_FRAME: usize = 32 * 1024;
/// API Gateway's WebSocket message limit.
pub const MAX_MESSAGE: usize = 128 * 1024;
/// Close code for a message or frame over the limits.
pub const TOO_BIG: u16 = 1009;

/// Invokes the function with one event; returns its JSON answer.
pub trait Invoker: Send + Sync + 'static {
    /// One invocation.
    fn invoke(&self, event: Value) -> Pin<Box<dyn Future<Output = Result<Value, String>> + Send>>;
}

/// A function called in this process (tests and benchmarks call the handler directly).
impl<F, Fut> Invoker for F
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, String>> + Send + 'static,
{
    fn invoke(&self, event: Value) -> Pin<Box<dyn Future<Output = Result<Value, String>> + Send>> {
        Box::pin(self(event))
    }
}

/// Invokes through the Lambda invoke API of `cargo lambda watch`
/// (`http://127.0.0.1:<port>/2015-03-31/functions/<name>/invocations`).
pub struct HttpInvoker {
    url: String,
    client: reqwest::Client,
}

impl HttpInvoker {
    /// An invoker for `url`. As API Gateway's integration timeout, an invocation that has not
    /// answered in 29 s fails (its message is dropped), so a hung function cannot hold a
    /// connection's messages forever.
    pub fn new(url: impl Into<String>) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(2))
            .timeout(std::time::Duration::from_secs(29))
            .build()
            .unwrap_or_default();
        HttpInvoker {
            url: url.into(),
            client,
        }
    }
}

impl Invoker for HttpInvoker {
    fn invoke(&self, event: Value) -> Pin<Box<dyn Future<Output = Result<Value, String>> + Send>> {
        let req = self.client.post(&self.url).json(&event);
        Box::pin(async move {
            let resp = req.send().await.map_err(|e| e.to_string())?;
            resp.json::<Value>().await.map_err(|e| e.to_string())
        })
    }
}

struct Conn {
    tx: mpsc::UnboundedSender<Message>,
    connected_at: chrono::DateTime<chrono::Utc>,
    last_active: chrono::DateTime<chrono::Utc>,
}

/// The gateway's state.
pub struct Gateway {
    invoker: Arc<dyn Invoker>,
    stage: String,
    domain: String,
    conns: Mutex<HashMap<String, Conn>>,
}

impl Gateway {
    /// A gateway for `stage`, invoking through `invoker`; `domain` goes into the events.
    pub fn new(invoker: Arc<dyn Invoker>, stage: &str, domain: &str) -> Arc<Self> {
        Arc::new(Gateway {
            invoker,
            stage: stage.to_owned(),
            domain: domain.to_owned(),
            conns: Mutex::new(HashMap::new()),
        })
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<String, Conn>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.conns().len()
    }

    fn event(
        &self,
        route: &str,
        kind: &str,
        connection: &str,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
        body: Option<&str>,
    ) -> Value {
        let now = chrono::Utc::now();
        let headers: serde_json::Map<String, Value> = headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), json!(v.to_str().ok()?))))
            .collect();
        let multi_headers: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.clone(), json!([v])))
            .collect();
        let multi_query: serde_json::Map<String, Value> =
            query.iter().map(|(k, v)| (k.clone(), json!([v]))).collect();
        let mut e = json!({
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": query,
            "multiValueQueryStringParameters": multi_query,
            "requestContext": {
                "routeKey": route,
                "eventType": kind,
                "extendedRequestId": format!("{:x}", rand::rng().random::<u64>()),
                "requestTime": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
                "messageDirection": "IN",
                "stage": self.stage,
                "connectedAt": now.timestamp_millis(),
                "requestTimeEpoch": now.timestamp_millis(),
                "identity": {"sourceIp": "127.0.0.1"},
                "requestId": format!("{:x}", rand::rng().random::<u64>()),
                "domainName": self.domain,
                "connectionId": connection,
                "apiId": "local"
            },
            "isBase64Encoded": false
        });
        if let Some(b) = body {
            e["body"] = json!(b);
        }
        e
    }
}

fn status_of(answer: &Value) -> u16 {
    answer
        .get("statusCode")
        .and_then(Value::as_u64)
        .map_or(502, |s| s as u16)
}

/// The gateway's routes: the WebSocket endpoint and the management API.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/", get(upgrade))
        .route("/{stage}/@connections/{id}", any(manage))
        .with_state(gateway)
}

async fn upgrade(
    State(gw): State<Arc<Gateway>>,
    ws: WebSocketUpgrade,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let id = format!("{}=", rand::rng().random::<u64>());
    let answer = match gw
        .invoker
        .invoke(gw.event("$connect", "CONNECT", &id, &headers, &query, None))
        .await
    {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "invoking $connect failed");
            return StatusCode::BAD_GATEWAY.into_response();
        }
    };
    let status = status_of(&answer);
    if !(200..300).contains(&status) {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
        let body = answer
            .get("body")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        return (code, body).into_response();
    }
    // Echo the subprotocol the function accepted.
    let protocol = answer
        .get("headers")
        .and_then(|h| {
            h.get("sec-websocket-protocol")
                .or_else(|| h.get("Sec-WebSocket-Protocol"))
        })
        .and_then(Value::as_str)
        .map(str::to_owned);
    let ws = ws.max_frame_size(MAX_FRAME).max_message_size(MAX_MESSAGE);
    let ws = match protocol {
        Some(p) => ws.protocols([p]),
        None => ws,
    };
    ws.on_upgrade(move |socket| run(gw, socket, id, headers, query))
}

async fn run(
    gw: Arc<Gateway>,
    socket: WebSocket,
    id: String,
    headers: HeaderMap,
    query: HashMap<String, String>,
) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let now = chrono::Utc::now();
    gw.conns().insert(
        id.clone(),
        Conn {
            tx: tx.clone(),
            connected_at: now,
            last_active: now,
        },
    );
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let closing = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || closing {
                break;
            }
        }
        let _ = sink.close().await;
    });
    while let Some(next) = stream.next().await {
        let body = match next {
            Ok(Message::Text(t)) => t.to_string(),
            Ok(Message::Binary(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            Err(e) => {
                // A frame or message over AWS's limits (or a broken stream): close with 1009.
                tracing::info!(connection = %id, error = %e, "closing: message too big or stream broken");
                let _ = tx.send(Message::Close(Some(CloseFrame {
                    code: TOO_BIG,
                    reason: Utf8Bytes::from_static("message too big"),
                })));
                break;
            }
        };
        if let Some(c) = gw.conns().get_mut(&id) {
            c.last_active = chrono::Utc::now();
        }
        let event = gw.event("$default", "MESSAGE", &id, &headers, &query, Some(&body));
        if let Err(e) = gw.invoker.invoke(event).await {
            tracing::error!(connection = %id, error = %e, "invoking $default failed");
        }
    }
    gw.conns().remove(&id);
    drop(tx);
    let _ = writer.await;
    let event = gw.event("$disconnect", "DISCONNECT", &id, &headers, &query, None);
    if let Err(e) = gw.invoker.invoke(event).await {
        tracing::error!(connection = %id, error = %e, "invoking $disconnect failed");
    }
}

fn gone(id: &str) -> Response {
    let mut resp = (
        StatusCode::GONE,
        axum::Json(json!({"message": format!("connection {id} is gone")})),
    )
        .into_response();
    resp.headers_mut().insert(
        "x-amzn-ErrorType",
        "GoneException".parse().expect("a valid header value"),
    );
    resp
}

async fn manage(
    State(gw): State<Arc<Gateway>>,
    Path((stage, id)): Path<(String, String)>,
    method: axum::http::Method,
    body: Bytes,
) -> Response {
    if stage != gw.stage {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": format!("no stage {stage}")})),
        )
            .into_response();
    }
    let id = id.replace("%3D", "=");
    match method.as_str() {
        "POST" => {
            if body.len() > MAX_MESSAGE {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    axum::Json(json!({"message": "the data exceeds 128 KB"})),
                )
                    .into_response();
            }
            let conns = gw.conns();
            let Some(c) = conns.get(&id) else {
                return gone(&id);
            };
            let message = match String::from_utf8(body.to_vec()) {
                Ok(text) => Message::Text(text.into()),
                Err(e) => Message::Binary(e.into_bytes().into()),
            };
            if c.tx.send(message).is_err() {
                return gone(&id);
            }
            StatusCode::OK.into_response()
        }
        "GET" => match gw.conns().get(&id) {
            Some(c) => axum::Json(json!({
                "ConnectedAt": c.connected_at.to_rfc3339(),
                "Identity": {"SourceIp": "127.0.0.1"},
                "LastActiveAt": c.last_active.to_rfc3339()
            }))
            .into_response(),
            None => gone(&id),
        },
        "DELETE" => match gw.conns().remove(&id) {
            Some(c) => {
                let _ = c.tx.send(Message::Close(None));
                StatusCode::NO_CONTENT.into_response()
            }
            None => gone(&id),
        },
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}
