//! Documents: metadata, access (owner and collaborators), rename and deletion.

use std::future::Future;

use rga::{Op, SiteId};

use crate::error::AppError;
use crate::ids::{DocumentId, ReplicaId, UserId};
use crate::model::{Collaborator, CollaboratorChange, Document, DocumentInfo, Role, Session};
use crate::wire::Envelope;

/// A document, the caller's role on it (`None`: no access) and the session asked about.
pub type Access = (Document, Option<Role>, Option<Session>);

/// A new document.
#[derive(Debug, Clone)]
pub struct NewDocument {
    /// Metadata (deleted must be false).
    pub info: DocumentInfo,
    /// Its initial operations (the initial content).
    pub ops: Vec<Op>,
    /// Broadcast after commit.
    pub outbox: Option<Envelope>,
}

/// Documents and who may use them.
pub trait Documents: Send + Sync {
    /// Creates a document with its initial operations.
    fn create_document(
        &self,
        doc: &NewDocument,
        origin: ReplicaId,
    ) -> impl Future<Output = Result<(Document, Option<i64>), AppError>> + Send;

    /// Creates or updates a document from another replica's metadata: a newer title stamp wins,
    /// deletion wins. Returns the stored metadata.
    fn upsert_document(
        &self,
        info: &DocumentInfo,
    ) -> impl Future<Output = Result<Document, AppError>> + Send;

    /// The metadata, deleted documents included.
    fn get_document(
        &self,
        id: DocumentId,
    ) -> impl Future<Output = Result<Option<Document>, AppError>> + Send;

    /// The live documents `user` owns or collaborates on, newest first, with the user's role.
    fn list_documents(
        &self,
        user: &UserId,
    ) -> impl Future<Output = Result<Vec<(Document, Role)>, AppError>> + Send;

    /// The metadata and `user`'s role on it (`None` for no access), deleted documents included.
    fn access(
        &self,
        id: DocumentId,
        user: &UserId,
    ) -> impl Future<Output = Result<Option<(Document, Option<Role>)>, AppError>> + Send;

    /// [`Documents::access`] and the session `site`, in one round trip.
    fn access_with_session(
        &self,
        id: DocumentId,
        user: &UserId,
        site: SiteId,
    ) -> impl Future<Output = Result<Option<Access>, AppError>> + Send;

    /// The owner and the collaborators of a document.
    fn collaborators(
        &self,
        id: DocumentId,
    ) -> impl Future<Output = Result<Vec<Collaborator>, AppError>> + Send;

    /// Applies a collaborator change if its stamp is newer than the stored one; records
    /// `outbox` (a local change) in the same transaction. Returns whether it was applied.
    fn change_collaborator(
        &self,
        change: &CollaboratorChange,
        outbox: Option<&Envelope>,
    ) -> impl Future<Output = Result<(bool, Option<i64>), AppError>> + Send;

    /// Renames a live document (title stamp given by the caller) and records a broadcast.
    fn rename_document(
        &self,
        id: DocumentId,
        title: &str,
        stamp: (i64, ReplicaId),
        outbox: &(dyn Fn(&Document) -> Envelope + Sync),
    ) -> impl Future<Output = Result<Option<(Document, i64)>, AppError>> + Send;

    /// Marks a live document deleted and records a broadcast.
    fn delete_document(
        &self,
        id: DocumentId,
        outbox: &(dyn Fn(&Document) -> Envelope + Sync),
    ) -> impl Future<Output = Result<Option<(Document, i64)>, AppError>> + Send;
}
