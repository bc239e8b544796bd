//! Sessions: the site ids editors write with, unique across replicas.

use std::future::Future;

use rga::SiteId;

use crate::error::AppError;
use crate::ids::{DocumentId, ReplicaId, UserId};
use crate::model::Session;
use crate::wire::Envelope;

/// Allocated on the replica a client talks to, copied to the others.
pub trait Sessions: Send + Sync {
    /// Allocates a session whose site id is unique across replicas (replica id in the high bits).
    fn create_session(
        &self,
        id: DocumentId,
        user: &UserId,
        replica: ReplicaId,
        outbox: &(dyn Fn(&Session) -> Envelope + Sync),
    ) -> impl Future<Output = Result<(Session, i64), AppError>> + Send;

    /// Records another replica's session (idempotent).
    fn insert_session(
        &self,
        session: &Session,
    ) -> impl Future<Output = Result<(), AppError>> + Send;

    /// A session.
    fn session(
        &self,
        site: SiteId,
    ) -> impl Future<Output = Result<Option<Session>, AppError>> + Send;
}
