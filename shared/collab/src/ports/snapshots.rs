//! Snapshots: a document's encoded replica at a log position, so that a load reads the tail
//! after it instead of the whole log. Earlier snapshots stay (the history).

use std::future::Future;

use rga::VersionVector;

use crate::error::AppError;
use crate::ids::DocumentId;
use crate::model::SnapshotMeta;

/// Written by compaction, read by loads and the history.
pub trait Snapshots: Send + Sync {
    /// Writes a snapshot covering the log before `log_pos`, unless another compaction holds the
    /// document's advisory lock or a snapshot at least as recent exists. Earlier ones stay.
    fn write_snapshot(
        &self,
        id: DocumentId,
        state: &[u8],
        text: &str,
        version: &VersionVector,
        log_pos: i64,
    ) -> impl Future<Output = Result<Option<SnapshotMeta>, AppError>> + Send;

    /// Log position where the tail after the latest snapshot starts (0 without snapshots).
    fn snapshot_pos(&self, id: DocumentId) -> impl Future<Output = Result<i64, AppError>> + Send;

    /// The snapshot history, oldest first.
    fn snapshots(
        &self,
        id: DocumentId,
    ) -> impl Future<Output = Result<Vec<SnapshotMeta>, AppError>> + Send;

    /// The text of snapshot `version`.
    fn snapshot_text(
        &self,
        id: DocumentId,
        version: i32,
    ) -> impl Future<Output = Result<Option<String>, AppError>> + Send;
}
