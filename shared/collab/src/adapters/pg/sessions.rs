//! Queries on `sessions`.

use rga::SiteId;
use tokio_postgres::Row;

use super::{PgDocumentStore, to_i64};
use crate::error::AppError;
use crate::ids::{DocumentId, ReplicaId, SITE_COUNTER_BITS, UserId};
use crate::model::Session;
use crate::ports::Sessions;
use crate::wire::Envelope;

fn session(row: &Row) -> Session {
    Session {
        site: SiteId(row.get::<_, i64>("site_id") as u64),
        document_id: DocumentId(row.get("document_id")),
        user_id: UserId(row.get("user_id")),
        replica: ReplicaId(row.get::<_, i32>("replica") as u16),
    }
}

impl Sessions for PgDocumentStore {
    async fn create_session(
        &self,
        id: DocumentId,
        user: &UserId,
        replica: ReplicaId,
        outbox: &(dyn Fn(&Session) -> Envelope + Sync),
    ) -> Result<(Session, i64), AppError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_one(
                "INSERT INTO sessions (site_id, document_id, user_id, replica)
                 VALUES (($1::int8 << $4) | nextval('session_counter'), $2, $3, $1::int4)
                 RETURNING site_id, document_id, user_id, replica",
                &[
                    &(replica.0 as i64),
                    &id.0,
                    &user.0,
                    &(SITE_COUNTER_BITS as i32),
                ],
            )
            .await?;
        let s = session(&row);
        let payload =
            serde_json::to_value(outbox(&s)).map_err(|e| AppError::Internal(e.to_string()))?;
        let out: i64 = tx
            .query_one(
                "INSERT INTO outbox (document_id, payload) VALUES ($1, $2) RETURNING id",
                &[&id.0, &payload],
            )
            .await?
            .get(0);
        tx.commit().await?;
        Ok((s, out))
    }

    async fn insert_session(&self, s: &Session) -> Result<(), AppError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO sessions (site_id, document_id, user_id, replica) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&to_i64(s.site.0, "site id")?, &s.document_id.0, &s.user_id.0, &(s.replica.0 as i32)],
            )
            .await?;
        Ok(())
    }

    async fn session(&self, site: SiteId) -> Result<Option<Session>, AppError> {
        let Ok(site) = i64::try_from(site.0) else {
            return Ok(None);
        };
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT site_id, document_id, user_id, replica FROM sessions WHERE site_id = $1",
            )
            .await?;
        let row = client.query_opt(&stmt, &[&site]).await?;
        Ok(row.as_ref().map(session))
    }
}
