//! Queries on `document_snapshots`.

use rga::VersionVector;
use tokio_postgres::Row;

use super::PgDocumentStore;
use crate::error::AppError;
use crate::ids::DocumentId;
use crate::model::SnapshotMeta;
use crate::ports::Snapshots;

fn meta(row: &Row) -> Result<SnapshotMeta, AppError> {
    let vv: serde_json::Value = row.get("version_vector");
    Ok(SnapshotMeta {
        version: row.get("version"),
        created_at: row.get("created_at"),
        version_vector: serde_json::from_value(vv)
            .map_err(|e| AppError::Internal(e.to_string()))?,
        log_pos: row.get("log_pos"),
    })
}

impl Snapshots for PgDocumentStore {
    async fn write_snapshot(
        &self,
        id: DocumentId,
        state: &[u8],
        text: &str,
        version: &VersionVector,
        log_pos: i64,
    ) -> Result<Option<SnapshotMeta>, AppError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // One compaction per document at a time; a second one gives up instead of waiting.
        let locked: bool = tx
            .query_one(
                "SELECT pg_try_advisory_xact_lock(hashtextextended($1::text, 1))",
                &[&id.0.to_string()],
            )
            .await?
            .get(0);
        if !locked {
            return Ok(None);
        }
        let vv = serde_json::to_value(version).map_err(|e| AppError::Internal(e.to_string()))?;
        let row = tx
            .query_opt(
                "INSERT INTO document_snapshots (document_id, version, state, text, version_vector, log_pos)
                 SELECT $1, COALESCE(max(version), 0) + 1, $2, $3, $4, $5 FROM document_snapshots WHERE document_id = $1
                 HAVING COALESCE(max(log_pos), -1) < $5
                 RETURNING version, created_at, version_vector, log_pos",
                &[&id.0, &state, &text, &vv, &log_pos],
            )
            .await?;
        tx.commit().await?;
        row.as_ref().map(meta).transpose()
    }

    async fn snapshot_pos(&self, id: DocumentId) -> Result<i64, AppError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT COALESCE(max(log_pos), 0) FROM document_snapshots WHERE document_id = $1",
                &[&id.0],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn snapshots(&self, id: DocumentId) -> Result<Vec<SnapshotMeta>, AppError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT version, created_at, version_vector, log_pos FROM document_snapshots WHERE document_id = $1 ORDER BY version",
                &[&id.0],
            )
            .await?;
        rows.iter().map(meta).collect()
    }

    async fn snapshot_text(
        &self,
        id: DocumentId,
        version: i32,
    ) -> Result<Option<String>, AppError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT text FROM document_snapshots WHERE document_id = $1 AND version = $2",
                &[&id.0, &version],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }
}
