//! Queries on `idempotency_keys`.

use super::PgDocumentStore;
use crate::error::AppError;
use crate::ids::DocumentId;
use crate::ports::Keys;

impl Keys for PgDocumentStore {
    async fn key_answer(
        &self,
        id: DocumentId,
        user: &crate::ids::UserId,
        key: &str,
    ) -> Result<Option<(String, serde_json::Value)>, AppError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "WITH gone AS (
                     DELETE FROM idempotency_keys
                     WHERE document_id = $1 AND user_id = $2 AND key = $3 AND expires_at <= now())
                 SELECT request_hash, answer FROM idempotency_keys
                 WHERE document_id = $1 AND user_id = $2 AND key = $3 AND expires_at > now()",
                &[&id.0, &user.0, &key],
            )
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    async fn expire_keys(&self) -> Result<u64, AppError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM idempotency_keys WHERE expires_at <= now()",
                &[],
            )
            .await?)
    }
}
