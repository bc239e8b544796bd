//! WebSocket connections on this replica, each with its standing read fresh at every use.

use std::future::Future;

use crate::error::AppError;
use crate::ids::{DocumentId, ReplicaId};
use crate::model::{Connection, Standing};

/// The connections table.
pub trait Connections: Send + Sync {
    /// Records a WebSocket connection on a document.
    fn add_connection(
        &self,
        connection: &Connection,
        replica: ReplicaId,
    ) -> impl Future<Output = Result<(), AppError>> + Send;

    /// Forgets a connection; returns it if it existed.
    fn remove_connection(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Connection>, AppError>> + Send;

    /// A connection, with its standing now (its user's role, or why it no longer reads).
    fn connection(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<(Connection, Standing)>, AppError>> + Send;

    /// The connections on a document, each with its standing now.
    fn connections(
        &self,
        document: DocumentId,
    ) -> impl Future<Output = Result<Vec<(Connection, Standing)>, AppError>> + Send;
}
