//! The connection gateway port: posting to and closing editors' WebSocket connections.

use std::future::Future;

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
