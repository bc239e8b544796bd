//! Queries on `connections`. Reads return each connection with its standing, computed in the
//! same statement from the document and its collaborators (see [`Standing`]), so checking that
//! a connection may still read costs no extra round trip.

use tokio_postgres::Row;

use super::PgDocumentStore;
use crate::error::AppError;
use crate::ids::{DocumentId, ReplicaId, UserId};
use crate::model::{Connection, Standing};
use crate::ports::Connections;

const COLUMNS: &str = "k.connection_id, k.document_id, k.user_id, k.connected_at, k.expires_at,
    CASE WHEN d.deleted_at IS NOT NULL THEN 'deleted'
         WHEN k.expires_at IS NOT NULL AND k.expires_at <= now() THEN 'expired'
         WHEN d.owner_id = k.user_id THEN 'owner'
         ELSE COALESCE(c.role, 'revoked') END AS standing";
const FROM: &str = "connections k JOIN documents d ON d.id = k.document_id
    LEFT JOIN collaborators c ON c.document_id = k.document_id AND c.user_id = k.user_id";

fn connection(row: &Row) -> Connection {
    Connection {
        id: row.get("connection_id"),
        document_id: DocumentId(row.get("document_id")),
        user_id: UserId(row.get("user_id")),
        connected_at: row.get("connected_at"),
        expires_at: row.get("expires_at"),
    }
}

fn with_standing(row: &Row) -> (Connection, Standing) {
    (connection(row), Standing::parse(row.get("standing")))
}

impl Connections for PgDocumentStore {
    async fn add_connection(&self, c: &Connection, replica: ReplicaId) -> Result<(), AppError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO connections (connection_id, document_id, user_id, replica, connected_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (connection_id) DO UPDATE SET document_id = EXCLUDED.document_id, user_id = EXCLUDED.user_id, expires_at = EXCLUDED.expires_at",
                &[&c.id, &c.document_id.0, &c.user_id.0, &(replica.0 as i32), &c.connected_at, &c.expires_at],
            )
            .await?;
        Ok(())
    }

    async fn remove_connection(&self, id: &str) -> Result<Option<Connection>, AppError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "DELETE FROM connections WHERE connection_id = $1
                 RETURNING connection_id, document_id, user_id, connected_at, expires_at",
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(connection))
    }

    async fn connection(&self, id: &str) -> Result<Option<(Connection, Standing)>, AppError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE k.connection_id = $1"
            ))
            .await?;
        let row = client.query_opt(&stmt, &[&id]).await?;
        Ok(row.as_ref().map(with_standing))
    }

    async fn connections(
        &self,
        document: DocumentId,
    ) -> Result<Vec<(Connection, Standing)>, AppError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {COLUMNS} FROM {FROM} WHERE k.document_id = $1 ORDER BY k.connected_at, k.connection_id"))
            .await?;
        let rows = client.query(&stmt, &[&document.0]).await?;
        Ok(rows.iter().map(with_standing).collect())
    }
}
