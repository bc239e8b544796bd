//! [`Documents`] on PostgreSQL: `documents` and `collaborators`.

use chrono::Utc;
use tokio_postgres::Row;

use super::PgDocumentStore;
use crate::error::AppError;
use crate::ids::{DocumentId, ReplicaId, UserId};
use crate::model::{Collaborator, CollaboratorChange, Document, DocumentInfo, Role};
use crate::ports::{Documents, NewDocument, Plan};
use crate::wire::{Broadcast, Envelope};

pub(super) const COLUMNS: &str = "d.id, d.title, d.owner_id, d.created_at, d.updated_at, d.deleted_at, d.origin_replica, d.title_stamp, d.title_replica";

pub(super) fn document(row: &Row) -> Document {
    Document {
        id: DocumentId(row.get("id")),
        title: row.get("title"),
        owner_id: UserId(row.get("owner_id")),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        deleted_at: row.get("deleted_at"),
        origin_replica: ReplicaId(row.get::<_, i32>("origin_replica") as u16),
        title_stamp: (
            row.get("title_stamp"),
            ReplicaId(row.get::<_, i32>("title_replica") as u16),
        ),
    }
}

fn envelope_json(e: &Envelope) -> Result<serde_json::Value, AppError> {
    serde_json::to_value(e).map_err(|e| AppError::Internal(e.to_string()))
}

impl PgDocumentStore {
    /// Runs `update` (which returns the document row) and records the broadcast, in one
    /// transaction.
    async fn update_with_outbox(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        outbox: &(dyn Fn(&Document) -> Envelope + Sync),
    ) -> Result<Option<(Document, i64)>, AppError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx.query_opt(sql, params).await? else {
            return Ok(None);
        };
        let doc = document(&row);
        let payload = envelope_json(&outbox(&doc))?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO outbox (document_id, payload) VALUES ($1, $2) RETURNING id",
                &[&doc.id.0, &payload],
            )
            .await?
            .get(0);
        tx.commit().await?;
        Ok(Some((doc, id)))
    }
}

impl Documents for PgDocumentStore {
    async fn create_document(
        &self,
        doc: &NewDocument,
        origin: ReplicaId,
    ) -> Result<(Document, Option<i64>), AppError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let i = &doc.info;
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO documents AS d (id, title, owner_id, created_at, origin_replica, title_stamp, title_replica)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
                ),
                &[&i.id.0, &i.title, &i.owner_id.0, &i.created_at, &(i.origin_replica.0 as i32), &i.title_stamp, &(i.title_replica.0 as i32)],
            )
            .await?;
        let plan = Plan {
            ops: doc.ops.clone(),
            outbox: doc.outbox.clone(),
            ..Plan::default()
        };
        let appended = self.append_in_tx(&tx, i.id, origin, &plan).await?;
        tx.commit().await?;
        Ok((document(&row), appended.outbox_id))
    }

    async fn upsert_document(&self, info: &DocumentInfo) -> Result<Document, AppError> {
        let client = self.pool.get().await?;
        let deleted_at = info.deleted.then(Utc::now);
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO documents AS d (id, title, owner_id, created_at, origin_replica, title_stamp, title_replica, deleted_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (id) DO UPDATE SET
                       title = CASE WHEN (EXCLUDED.title_stamp, EXCLUDED.title_replica) > (d.title_stamp, d.title_replica)
                                    THEN EXCLUDED.title ELSE d.title END,
                       title_replica = CASE WHEN (EXCLUDED.title_stamp, EXCLUDED.title_replica) > (d.title_stamp, d.title_replica)
                                    THEN EXCLUDED.title_replica ELSE d.title_replica END,
                       title_stamp = GREATEST(d.title_stamp, EXCLUDED.title_stamp),
                       deleted_at = COALESCE(d.deleted_at, EXCLUDED.deleted_at),
                       updated_at = now()
                     RETURNING {COLUMNS}"
                ),
                &[
                    &info.id.0,
                    &info.title,
                    &info.owner_id.0,
                    &info.created_at,
                    &(info.origin_replica.0 as i32),
                    &info.title_stamp,
                    &(info.title_replica.0 as i32),
                    &deleted_at,
                ],
            )
            .await?;
        Ok(document(&row))
    }

    async fn get_document(&self, id: DocumentId) -> Result<Option<Document>, AppError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM documents d WHERE d.id = $1"),
                &[&id.0],
            )
            .await?;
        Ok(row.as_ref().map(document))
    }

    async fn list_documents(&self, user: &UserId) -> Result<Vec<(Document, Role)>, AppError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS}, CASE WHEN owner_id = $1 THEN 'owner' ELSE c.role END AS role
                     FROM documents d LEFT JOIN collaborators c ON c.document_id = d.id AND c.user_id = $1
                     WHERE d.deleted_at IS NULL AND (d.owner_id = $1 OR c.role IS NOT NULL)
                     ORDER BY d.created_at DESC, d.id"
                ),
                &[&user.0],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((document(r), Role::parse(r.get("role"))?)))
            .collect())
    }

    async fn access(
        &self,
        id: DocumentId,
        user: &UserId,
    ) -> Result<Option<(Document, Option<Role>)>, AppError> {
        let client = self.pool.get().await?;
        access_on(&client, id, user).await
    }

    async fn access_with_session(
        &self,
        id: DocumentId,
        user: &UserId,
        site: rga::SiteId,
    ) -> Result<Option<crate::ports::Access>, AppError> {
        let client = self.pool.get().await?;
        Ok(access_with_session_on(&client, id, user, site)
            .await?
            .map(|(access, _)| access))
    }

    async fn rename_document(
        &self,
        id: DocumentId,
        title: &str,
        stamp: (i64, ReplicaId),
        outbox: &(dyn Fn(&Document) -> Envelope + Sync),
    ) -> Result<Option<(Document, i64)>, AppError> {
        let sql = format!(
            // The stamp only moves forward: a clock behind another replica's (whose rename this
            // one applied) still makes this rename the newest, everywhere it is broadcast.
            "UPDATE documents AS d SET title = $2, title_stamp = GREATEST($3, d.title_stamp + 1),
                 title_replica = $4, updated_at = now()
             WHERE id = $1 AND deleted_at IS NULL RETURNING {COLUMNS}"
        );
        self.update_with_outbox(
            &sql,
            &[&id.0, &title, &stamp.0, &(stamp.1.0 as i32)],
            outbox,
        )
        .await
    }

    async fn delete_document(
        &self,
        id: DocumentId,
        outbox: &(dyn Fn(&Document) -> Envelope + Sync),
    ) -> Result<Option<(Document, i64)>, AppError> {
        let sql = format!(
            "UPDATE documents AS d SET deleted_at = now(), updated_at = now() WHERE id = $1 AND deleted_at IS NULL RETURNING {COLUMNS}"
        );
        self.update_with_outbox(&sql, &[&id.0], outbox).await
    }

    async fn collaborators(&self, id: DocumentId) -> Result<Vec<Collaborator>, AppError> {
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

    async fn change_collaborator(
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

/// The metadata and `user`'s role on document `id`, on `client`.
pub(super) async fn access_on(
    client: &deadpool_postgres::Client,
    id: DocumentId,
    user: &UserId,
) -> Result<Option<(Document, Option<Role>)>, AppError> {
    let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS}, CASE WHEN owner_id = $2 THEN 'owner' ELSE c.role END AS role
                 FROM documents d LEFT JOIN collaborators c ON c.document_id = d.id AND c.user_id = $2
                 WHERE d.id = $1"
            ))
            .await?;
    let row = client.query_opt(&stmt, &[&id.0, &user.0]).await?;
    Ok(row.map(|r| {
        (
            document(&r),
            r.get::<_, Option<&str>>("role").and_then(Role::parse),
        )
    }))
}

/// [`Documents::access_with_session`] on `client`, with the document's log length.
pub(super) async fn access_with_session_on(
    client: &deadpool_postgres::Client,
    id: DocumentId,
    user: &UserId,
    site: rga::SiteId,
) -> Result<Option<(crate::ports::Access, i64)>, AppError> {
    let site = i64::try_from(site.0).unwrap_or(-1);
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS}, d.log_len, CASE WHEN owner_id = $2 THEN 'owner' ELSE c.role END AS role,
                    s.site_id, s.document_id AS session_document, s.user_id AS session_user, s.replica
             FROM documents d LEFT JOIN collaborators c ON c.document_id = d.id AND c.user_id = $2
             LEFT JOIN sessions s ON s.site_id = $3
             WHERE d.id = $1"
        ))
        .await?;
    let row = client.query_opt(&stmt, &[&id.0, &user.0, &site]).await?;
    Ok(row.map(|r| {
        let session = r
            .get::<_, Option<i64>>("site_id")
            .map(|site| crate::model::Session {
                site: rga::SiteId(site as u64),
                document_id: DocumentId(r.get("session_document")),
                user_id: UserId(r.get("session_user")),
                replica: crate::ids::ReplicaId(r.get::<_, i32>("replica") as u16),
            });
        let access = (
            document(&r),
            r.get::<_, Option<&str>>("role").and_then(Role::parse),
            session,
        );
        (access, r.get("log_len"))
    }))
}
