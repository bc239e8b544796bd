//! Request bodies and query strings: parsed with a size limit, and every failure becomes a
//! JSON error (413 above the limit, 400 otherwise), never axum's plain-text rejection.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use http::request::Parts;
use serde::de::DeserializeOwned;

use collab::AppError;

use crate::App;
use crate::error::ApiError;

/// A JSON body of at most `MAX_BODY_BYTES`.
pub struct Json<T>(pub T);

impl<P: Send + Sync + 'static, T: DeserializeOwned> FromRequest<Arc<App<P>>> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Arc<App<P>>) -> Result<Self, Self::Rejection> {
        let limit = app.limits.max_body_bytes;
        if let Some(len) = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            && len > limit
        {
            return Err(AppError::TooLarge(format!("the body is limited to {limit} bytes")).into());
        }
        let bytes = Bytes::from_request(req, app)
            .await
            .map_err(|e| ApiError(AppError::BadRequest(format!("unreadable body: {e}"))))?;
        if bytes.len() > limit {
            return Err(AppError::TooLarge(format!("the body is limited to {limit} bytes")).into());
        }
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| ApiError(AppError::BadRequest(format!("malformed JSON body: {e}"))))
    }
}

/// A query string.
pub struct Query<T>(pub T);

impl<P: Send + Sync + 'static, T: DeserializeOwned> FromRequestParts<Arc<App<P>>> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &Arc<App<P>>,
    ) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded_like(q).map(Query)
    }
}

fn serde_urlencoded_like<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{q}")
            .parse()
            .map_err(|_| ApiError(AppError::BadRequest("malformed query string".into())))?,
    )
    .map(|axum::extract::Query(t)| t)
    .map_err(|e| {
        ApiError(AppError::BadRequest(format!(
            "malformed query string: {}",
            e.body_text()
        )))
    })
}
