//! Queries on `collaborators`.

use super::PgDocumentStore;
use crate::error::AppError;
use crate::ids::{DocumentId, UserId};
use crate::message::{Broadcast, Envelope};
use crate::model::{Collaborator, CollaboratorChange, Role};

impl PgDocumentStore {
    pub(crate) async fn collaborators_impl(
        &self,
        id: DocumentId,
    ) -> Result<Vec<Collaborator>, AppError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT owner_id AS user_id, 'owner' AS role, 0 AS rank FROM documents WHERE id = $1
                 UNION ALL
                 SELECT user_id, role, 1 FROM collaborators WHERE document_id = $1 AND role IS NOT NULL
                 ORDER BY rank, user_id",
                &[&id.0],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(Collaborator {
                    user_id: UserId(r.get("user_id")),
                    role: Role::parse(r.get("role"))?,
                })
            })
            .collect())
    }

    pub(crate) async fn change_collaborator_impl(
        &self,
        c: &CollaboratorChange,
        outbox: Option<&Envelope>,
    ) -> Result<(bool, Option<i64>), AppError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut c = c.clone();
        let mut outbox = outbox.cloned();
        if let Some(envelope) = &mut outbox {
            // A local change: its stamp only moves forward (GREATEST(now, stored + 1)), so that a
            // clock behind the replica that wrote the stored one does not make it silently lose.
            let stored = tx
                .query_opt(
                    "SELECT stamp FROM collaborators WHERE document_id = $1 AND user_id = $2 FOR UPDATE",
                    &[&c.document_id.0, &c.user_id.0],
                )
                .await?;
            if let Some(row) = stored {
                c.stamp = c.stamp.max(row.get::<_, i64>(0).saturating_add(1));
            }
            if let Broadcast::Collaborator { change, .. } = &mut envelope.body {
                change.stamp = c.stamp;
            }
        }
        let c = &c;
        let outbox = outbox.as_ref();
        let role = c.role.map(Role::as_str);
        let applied = tx
            .execute(
                "INSERT INTO collaborators AS c (document_id, user_id, role, stamp, stamp_replica) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (document_id, user_id) DO UPDATE SET role = EXCLUDED.role, stamp = EXCLUDED.stamp,
                     stamp_replica = EXCLUDED.stamp_replica, updated_at = now()
                 WHERE (EXCLUDED.stamp, EXCLUDED.stamp_replica) > (c.stamp, c.stamp_replica)",
                &[&c.document_id.0, &c.user_id.0, &role, &c.stamp, &(c.replica.0 as i32)],
            )
            .await?
            > 0;
        let mut out = None;
        if let (true, Some(e)) = (applied, outbox) {
            let payload = serde_json::to_value(e).map_err(|e| AppError::Internal(e.to_string()))?;
            out = Some(
                tx.query_one(
                    "INSERT INTO outbox (document_id, payload) VALUES ($1, $2) RETURNING id",
                    &[&c.document_id.0, &payload],
                )
                .await?
                .get(0),
            );
        }
        tx.commit().await?;
        Ok((applied, out))
    }
}
