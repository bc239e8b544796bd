//! A fault-injecting wrapper around a real store: when armed, the next write fails before it
//! reaches the database, as an integrate invocation that crashes part-way would. Everything else
//! goes to the wrapped store unchanged.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use collab::AppError;
use collab::ids::{DocumentId, ReplicaId, UserId};
use collab::message::Envelope;
use collab::model::{
    Collaborator, CollaboratorChange, Connection, Document, DocumentInfo, OpsPage, Role, Session,
    SnapshotMeta, Standing,
};
use collab::store::{Access, Appended, DocumentStore, Loaded, NewDocument, OutboxRow, Plan, Tail};
use rga::{Op, SiteId, VersionVector};

/// A store whose next `armed` writes fail.
pub struct FlakyStore<S> {
    inner: S,
    armed: Arc<AtomicUsize>,
}

impl<S> FlakyStore<S> {
    /// Wraps `inner`; `armed` counts the writes still to fail.
    pub fn new(inner: S, armed: Arc<AtomicUsize>) -> Self {
        FlakyStore { inner, armed }
    }

    fn trip(&self) -> Result<(), AppError> {
        let fail = self
            .armed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            Err(AppError::Unavailable(
                "injected failure before commit".into(),
            ))
        } else {
            Ok(())
        }
    }
}

impl<S: DocumentStore> DocumentStore for FlakyStore<S> {
    async fn create_document(
        &self,
        doc: &NewDocument,
        origin: ReplicaId,
    ) -> Result<(Document, Option<i64>), AppError> {
        self.inner.create_document(doc, origin).await
    }
    async fn upsert_document(&self, info: &DocumentInfo) -> Result<Document, AppError> {
        self.trip()?;
        self.inner.upsert_document(info).await
    }
    async fn get_document(&self, id: DocumentId) -> Result<Option<Document>, AppError> {
        self.inner.get_document(id).await
    }
    async fn list_documents(&self, user: &UserId) -> Result<Vec<(Document, Role)>, AppError> {
        self.inner.list_documents(user).await
    }
    async fn access(
        &self,
        id: DocumentId,
        user: &UserId,
    ) -> Result<Option<(Document, Option<Role>)>, AppError> {
        self.inner.access(id, user).await
    }
    async fn access_with_session(
        &self,
        id: DocumentId,
        user: &UserId,
        site: SiteId,
    ) -> Result<Option<Access>, AppError> {
        self.inner.access_with_session(id, user, site).await
    }
    async fn collaborators(&self, id: DocumentId) -> Result<Vec<Collaborator>, AppError> {
        self.inner.collaborators(id).await
    }
    async fn change_collaborator(
        &self,
        change: &CollaboratorChange,
        outbox: Option<&Envelope>,
    ) -> Result<(bool, Option<i64>), AppError> {
        self.trip()?;
        self.inner.change_collaborator(change, outbox).await
    }
    async fn rename_document(
        &self,
        id: DocumentId,
        title: &str,
        stamp: (i64, ReplicaId),
        outbox: &(dyn Fn(&Document) -> Envelope + Sync),
    ) -> Result<Option<(Document, i64)>, AppError> {
        self.inner.rename_document(id, title, stamp, outbox).await
    }
    async fn delete_document(
        &self,
        id: DocumentId,
        outbox: &(dyn Fn(&Document) -> Envelope + Sync),
    ) -> Result<Option<(Document, i64)>, AppError> {
        self.inner.delete_document(id, outbox).await
    }
    async fn load(&self, id: DocumentId) -> Result<Option<Loaded>, AppError> {
        self.inner.load(id).await
    }
    async fn tail(&self, id: DocumentId, from: i64) -> Result<Tail, AppError> {
        self.inner.tail(id, from).await
    }
    async fn append<F>(
        &self,
        id: DocumentId,
        known_pos: i64,
        origin: ReplicaId,
        plan: F,
    ) -> Result<Appended, AppError>
    where
        F: FnOnce(Tail) -> Result<Plan, AppError> + Send,
    {
        self.trip()?;
        self.inner.append(id, known_pos, origin, plan).await
    }
    async fn try_append(
        &self,
        id: DocumentId,
        known_pos: i64,
        origin: ReplicaId,
        plan: &Plan,
    ) -> Result<Option<Appended>, AppError> {
        self.trip()?;
        self.inner.try_append(id, known_pos, origin, plan).await
    }
    async fn append_ops(
        &self,
        id: DocumentId,
        ops: &[Op],
        origin: ReplicaId,
    ) -> Result<Appended, AppError> {
        self.trip()?;
        self.inner.append_ops(id, ops, origin).await
    }
    async fn ops_since(
        &self,
        id: DocumentId,
        since: &VersionVector,
        cursor: i64,
        limit: usize,
    ) -> Result<OpsPage, AppError> {
        self.inner.ops_since(id, since, cursor, limit).await
    }
    async fn write_snapshot(
        &self,
        id: DocumentId,
        state: &[u8],
        text: &str,
        version: &VersionVector,
        log_pos: i64,
    ) -> Result<Option<SnapshotMeta>, AppError> {
        self.inner
            .write_snapshot(id, state, text, version, log_pos)
            .await
    }
    async fn snapshot_pos(&self, id: DocumentId) -> Result<i64, AppError> {
        self.inner.snapshot_pos(id).await
    }
    async fn snapshots(&self, id: DocumentId) -> Result<Vec<SnapshotMeta>, AppError> {
        self.inner.snapshots(id).await
    }
    async fn snapshot_text(
        &self,
        id: DocumentId,
        version: i32,
    ) -> Result<Option<String>, AppError> {
        self.inner.snapshot_text(id, version).await
    }
    async fn create_session(
        &self,
        id: DocumentId,
        user: &UserId,
        replica: ReplicaId,
        outbox: &(dyn Fn(&Session) -> Envelope + Sync),
    ) -> Result<(Session, i64), AppError> {
        self.inner.create_session(id, user, replica, outbox).await
    }
    async fn insert_session(&self, session: &Session) -> Result<(), AppError> {
        self.trip()?;
        self.inner.insert_session(session).await
    }
    async fn session(&self, site: SiteId) -> Result<Option<Session>, AppError> {
        self.inner.session(site).await
    }
    async fn add_connection(
        &self,
        connection: &Connection,
        replica: ReplicaId,
    ) -> Result<(), AppError> {
        self.inner.add_connection(connection, replica).await
    }
    async fn remove_connection(&self, id: &str) -> Result<Option<Connection>, AppError> {
        self.inner.remove_connection(id).await
    }
    async fn connection(&self, id: &str) -> Result<Option<(Connection, Standing)>, AppError> {
        self.inner.connection(id).await
    }
    async fn connections(
        &self,
        document: DocumentId,
    ) -> Result<Vec<(Connection, Standing)>, AppError> {
        self.inner.connections(document).await
    }
    async fn claim_outbox(
        &self,
        min_age_secs: i64,
        lease_secs: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, AppError> {
        self.inner
            .claim_outbox(min_age_secs, lease_secs, limit)
            .await
    }
    async fn outbox_row(&self, id: i64) -> Result<Option<OutboxRow>, AppError> {
        self.inner.outbox_row(id).await
    }
    async fn outbox_done(&self, id: i64) -> Result<(), AppError> {
        self.inner.outbox_done(id).await
    }
    async fn outbox_failed(&self, id: i64, error: &str) -> Result<bool, AppError> {
        self.inner.outbox_failed(id, error).await
    }
    async fn outbox_health(&self) -> Result<collab::store::OutboxHealth, AppError> {
        self.inner.outbox_health().await
    }
    async fn key_answer(
        &self,
        id: DocumentId,
        user: &UserId,
        key: &str,
    ) -> Result<Option<(String, serde_json::Value)>, AppError> {
        self.inner.key_answer(id, user, key).await
    }
    async fn expire_keys(&self) -> Result<u64, AppError> {
        self.inner.expire_keys().await
    }
    async fn expire_waiting(
        &self,
        replica: ReplicaId,
        max_age_secs: i64,
    ) -> Result<Vec<DocumentId>, AppError> {
        self.inner.expire_waiting(replica, max_age_secs).await
    }
    async fn outbox_len(&self) -> Result<i64, AppError> {
        self.inner.outbox_len().await
    }
}
