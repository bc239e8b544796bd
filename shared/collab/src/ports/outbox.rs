//! The outbox: broadcasts written with the change they announce, published after commit, and
//! republished by the sweep when publishing failed.

use std::future::Future;

use crate::error::AppError;
use crate::wire::Envelope;

/// A message waiting in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// The message.
    pub envelope: Envelope,
    /// Publish attempts so far.
    pub attempts: i32,
}

/// Failed publishes after which an outbox row is parked (kept and reported, not retried):
/// with the backoff, about a quarter of an hour of SNS refusing it.
pub const MAX_OUTBOX_ATTEMPTS: i32 = 10;

/// What the outbox holds, for the sweep's report and health checks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutboxHealth {
    /// Rows not published yet (parked ones aside).
    pub unsent: i64,
    /// Age of the oldest of them, in seconds (0 when there is none).
    pub oldest_unsent_secs: f64,
    /// Rows parked after [`MAX_OUTBOX_ATTEMPTS`] failures.
    pub parked: i64,
}

/// Rows to publish (the rows themselves are written by the writes they announce).
pub trait Outbox: Send + Sync {
    /// Claims up to `limit` outbox rows older than `min_age_secs` for `lease_secs`.
    fn claim_outbox(
        &self,
        min_age_secs: i64,
        lease_secs: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<OutboxRow>, AppError>> + Send;

    /// Reads one outbox row.
    fn outbox_row(
        &self,
        id: i64,
    ) -> impl Future<Output = Result<Option<OutboxRow>, AppError>> + Send;

    /// Deletes a published outbox row.
    fn outbox_done(&self, id: i64) -> impl Future<Output = Result<(), AppError>> + Send;

    /// Records a failed publish: the row backs off, and is parked after
    /// [`MAX_OUTBOX_ATTEMPTS`]. Returns whether it was parked.
    fn outbox_failed(
        &self,
        id: i64,
        error: &str,
    ) -> impl Future<Output = Result<bool, AppError>> + Send;

    /// Unsent and parked rows, and the oldest unsent one's age.
    fn outbox_health(&self) -> impl Future<Output = Result<OutboxHealth, AppError>> + Send;

    /// Rows in the outbox (for tests and health checks).
    fn outbox_len(&self) -> impl Future<Output = Result<i64, AppError>> + Send;
}
