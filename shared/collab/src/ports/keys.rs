//! Idempotency keys: the first answer to a request, returned to its retries for a day. A key is
//! recorded by the write it belongs to ([`crate::ports::Plan::key`]), in the same transaction.

use std::future::Future;

use crate::error::AppError;
use crate::ids::{DocumentId, UserId};

/// An idempotency key with the answer to return to its retries.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// Whose request.
    pub user: UserId,
    /// The client's key.
    pub key: String,
    /// A hash of the request (route and body).
    pub hash: String,
    /// The first answer.
    pub answer: serde_json::Value,
}

/// Recorded answers.
pub trait Keys: Send + Sync {
    /// The hash and answer recorded under an idempotency key that has not expired (an expired
    /// one is deleted).
    fn key_answer(
        &self,
        id: DocumentId,
        user: &UserId,
        key: &str,
    ) -> impl Future<Output = Result<Option<(String, serde_json::Value)>, AppError>> + Send;

    /// Deletes expired idempotency keys; returns how many.
    fn expire_keys(&self) -> impl Future<Output = Result<u64, AppError>> + Send;
}
