//! Queries on `connections`.

use tokio_postgres::Row;

use super::PgDocumentStore;
use crate::error::AppError;
use crate::ids::{DocumentId, ReplicaId, UserId};
use crate::model::Connection;

const COLUMNS: &str = "connection_id, document_id, user_id, connected_at";

fn connection(row: &Row) -> Connection {
    Connection {
        id: row.get("connection_id"),
        document_id: DocumentId(row.get("document_id")),
        user_id: UserId(row.get("user_id")),
        connected_at: row.get("connected_at"),
    }
}

impl PgDocumentStore {
    pub(crate) async fn add_connection_impl(
        &self,
        c: &Connection,
        replica: ReplicaId,
    ) -> Result<(), AppError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO connections (connection_id, document_id, user_id, replica, connected_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (connection_id) DO UPDATE SET document_id = EXCLUDED.document_id, user_id = EXCLUDED.user_id",
                &[&c.id, &c.document_id.0, &c.user_id.0, &(replica.0 as i32), &c.connected_at],
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn remove_connection_impl(
        &self,
        id: &str,
    ) -> Result<Option<Connection>, AppError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("DELETE FROM connections WHERE connection_id = $1 RETURNING {COLUMNS}"),
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(connection))
    }

    pub(crate) async fn connection_impl(&self, id: &str) -> Result<Option<Connection>, AppError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM connections WHERE connection_id = $1"
            ))
            .await?;
        let row = client.query_opt(&stmt, &[&id]).await?;
        Ok(row.as_ref().map(connection))
    }

    pub(crate) async fn connections_impl(
        &self,
        document: DocumentId,
    ) -> Result<Vec<Connection>, AppError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {COLUMNS} FROM connections WHERE document_id = $1 ORDER BY connected_at, connection_id"))
            .await?;
        let rows = client.query(&stmt, &[&document.0]).await?;
        Ok(rows.iter().map(connection).collect())
    }
}
