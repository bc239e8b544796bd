//! The one place where domain errors become HTTP responses.

use axum::response::{IntoResponse, Response};
use collab::AppError;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        if status >= 500 {
            // The detail goes to the log; the body stays generic.
            tracing::error!(error = %self.0, status, "request failed");
        } else {
            tracing::info!(error = %self.0, status, "request refused");
        }
        let body = serde_json::to_vec(&self.0.body()).unwrap_or_default();
        let mut res = Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json");
        if status == 503 {
            // A dependency (the database) is down or saturated: say when to come back.
            res = res.header(http::header::RETRY_AFTER, "2");
        }
        res.body(axum::body::Body::from(body)).unwrap_or_default()
    }
}
