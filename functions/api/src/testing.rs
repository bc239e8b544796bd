//! Test support: API Gateway HTTP API (payload v2) events as the JWT authorizer passes them on,
//! sent through the real router in process. Used by the harness, the WebSocket tests and the
//! benchmarks.

use std::sync::Arc;

use collab::ports::EventPublisher;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{App, router};

/// An event for `method path?query` with `body`, authorized as `user`.
pub fn apigw_event(
    method: &str,
    path: &str,
    query: &str,
    body: Option<&Value>,
    user: &str,
) -> String {
    let mut e = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "authorizer": {"jwt": {"claims": {"sub": user}, "scopes": null}},
            "domainName": "local.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "local"},
            "requestId": "local",
            "routeKey": "$default",
            "stage": "$default",
            "time": "26/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1795694400000u64
        },
        "isBase64Encoded": false
    });
    if let Some(b) = body {
        e["body"] = json!(b.to_string());
    }
    e.to_string()
}

/// Sends `event` through the router of `app`; returns the status and the JSON body (`null` when
/// empty or not JSON).
pub async fn send<P: EventPublisher + 'static>(app: &Arc<App<P>>, event: &str) -> (u16, Value) {
    let req = lambda_http::request::from_str(event).expect("a valid API Gateway event");
    let req = req.map(|b| axum::body::Body::from(b.to_vec()));
    let resp = router(app.clone())
        .oneshot(req)
        .await
        .expect("the router answers");
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("a body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
