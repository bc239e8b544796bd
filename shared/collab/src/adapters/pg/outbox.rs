//! Queries on `outbox`.

use tokio_postgres::Row;

use super::PgDocumentStore;
use crate::error::AppError;
use crate::ports::{MAX_OUTBOX_ATTEMPTS, Outbox, OutboxHealth, OutboxRow};

fn outbox_row(row: &Row) -> Result<OutboxRow, AppError> {
    let payload: serde_json::Value = row.get("payload");
    Ok(OutboxRow {
        id: row.get("id"),
        envelope: serde_json::from_value(payload)
            .map_err(|e| AppError::Internal(format!("outbox payload: {e}")))?,
        attempts: row.get("attempts"),
    })
}

impl Outbox for PgDocumentStore {
    async fn claim_outbox(
        &self,
        min_age_secs: i64,
        lease_secs: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, AppError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "UPDATE outbox SET claimed_until = now() + make_interval(secs => $2)
                 WHERE id IN (
                     SELECT id FROM outbox
                     WHERE parked_at IS NULL AND created_at <= now() - make_interval(secs => $1)
                       AND (claimed_until IS NULL OR claimed_until < now())
                     ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING id, payload, attempts",
                &[&(min_age_secs as f64), &(lease_secs as f64), &limit],
            )
            .await?;
        let mut out: Vec<OutboxRow> = rows.iter().map(outbox_row).collect::<Result<_, _>>()?;
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    async fn outbox_row(&self, id: i64) -> Result<Option<OutboxRow>, AppError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT id, payload, attempts FROM outbox WHERE id = $1",
                &[&id],
            )
            .await?;
        row.as_ref().map(outbox_row).transpose()
    }

    async fn outbox_done(&self, id: i64) -> Result<(), AppError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached("DELETE FROM outbox WHERE id = $1")
            .await?;
        client.execute(&stmt, &[&id]).await?;
        Ok(())
    }

    async fn outbox_failed(&self, id: i64, error: &str) -> Result<bool, AppError> {
        let client = self.pool.get().await?;
        // Backs off 2, 4, 8 ... seconds (at most five minutes) and parks the row at the limit.
        let row = client
            .query_opt(
                "UPDATE outbox SET last_error = $2, attempts = attempts + 1,
                     claimed_until = now() + make_interval(secs => least(power(2, attempts + 1), 300)),
                     parked_at = CASE WHEN attempts + 1 >= $3 THEN now() END
                 WHERE id = $1 RETURNING parked_at IS NOT NULL",
                &[&id, &error, &MAX_OUTBOX_ATTEMPTS],
            )
            .await?;
        Ok(row.is_some_and(|r| r.get(0)))
    }

    async fn outbox_health(&self) -> Result<OutboxHealth, AppError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE parked_at IS NULL),
                        COALESCE(extract(epoch FROM now() - min(created_at) FILTER (WHERE parked_at IS NULL)), 0)::float8,
                        count(*) FILTER (WHERE parked_at IS NOT NULL)
                 FROM outbox",
                &[],
            )
            .await?;
        Ok(OutboxHealth {
            unsent: row.get(0),
            oldest_unsent_secs: row.get(1),
            parked: row.get(2),
        })
    }

    async fn outbox_len(&self) -> Result<i64, AppError> {
        let client = self.pool.get().await?;
        Ok(client
            .query_one("SELECT count(*) FROM outbox", &[])
            .await?
            .get(0))
    }
}
