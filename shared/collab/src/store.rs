//! The storage port. `PgDocumentStore` (in `pg/`) implements it on PostgreSQL; the use-cases in
//! `service.rs` only see this trait.
//!
//! Appending is the one subtle method: [`DocumentStore::append`] locks the document, reads the
//! log tail the caller has not seen and the waiting operations, lets the caller decide what to
//! write (bringing its in-memory replica up to date first), and writes it in the same
//! transaction. Writers of one document are thereby serialized, so log positions follow commit
//! order and every append is validated against the latest state.

use std::future::Future;

use rga::{CharId, Op, SiteId, VersionVector};

use crate::error::AppError;
use crate::ids::{DocumentId, ReplicaId, UserId};
use crate::message::Envelope;
use crate::model::{
    Collaborator, CollaboratorChange, Connection, Document, DocumentInfo, OpsPage, Role, Session,
    SnapshotMeta, Standing,
};

/// A document as loaded: its latest snapshot, the log after it and the waiting operations.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The metadata.
    pub document: Document,
    /// The latest snapshot (`rga::Rga::encode`), if any.
    pub snapshot: Option<Vec<u8>>,
    /// The log position the snapshot covers (where the tail starts).
    pub snapshot_pos: i64,
    /// The operations after the snapshot, in log order.
    pub tail: Vec<Op>,
    /// The log position after the tail.
    pub next_pos: i64,
    /// Operations waiting for their causes.
    pub waiting: Vec<Op>,
}

/// What [`DocumentStore::append`] shows the caller: everything written since `known_pos`.
#[derive(Debug, Clone)]
pub struct Tail {
    /// Operations appended at or after `known_pos`, in log order.
    pub ops: Vec<Op>,
    /// The log position after them.
    pub next_pos: i64,
    /// All operations waiting for their causes.
    pub waiting: Vec<Op>,
}

/// What the caller of [`DocumentStore::append`] wants written.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// New operations, in application order.
    pub ops: Vec<Op>,
    /// Operations that now wait for their causes.
    pub waiting_add: Vec<Op>,
    /// Waiting operations that were applied (or dropped).
    pub waiting_remove: Vec<CharId>,
    /// A message to broadcast after commit.
    pub outbox: Option<Envelope>,
    /// The request's idempotency key and answer, recorded in the same transaction.
    pub key: Option<KeyRecord>,
    /// Outbox rows this container published since its last write: deleted by this write (so
    /// that marking a row sent costs no round trip of its own). Not a reason to write.
    pub sent_outbox: Vec<i64>,
}

impl Plan {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
            && self.waiting_add.is_empty()
            && self.waiting_remove.is_empty()
            && self.outbox.is_none()
            && self.key.is_none()
    }
}

/// An idempotency key with the answer to return to its retries.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// Whose request.
    pub user: UserId,
    /// The client's key.
    pub key: String,
    /// A hash of the request (route and body).
    pub hash: String,
    /// The first answer.
    pub answer: serde_json::Value,
}

/// A document, the caller's role on it (`None`: no access) and the session asked about.
pub type Access = (Document, Option<Role>, Option<Session>);

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The log position after the new operations.
    pub next_pos: i64,
    /// The outbox row to publish, if one was written.
    pub outbox_id: Option<i64>,
    /// Rows inserted.
    pub inserted: u64,
    /// Operations that were already stored with identical content (ignored).
    pub duplicates: u64,
}

/// A message waiting in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// The message.
    pub envelope: Envelope,
    /// Publish attempts so far.
    pub attempts: i32,
}

/// Failed publishes after which an outbox row is parked (kept and reported, not retried):
/// with the backoff, about a quarter of an hour of SNS refusing it.
pub const MAX_OUTBOX_ATTEMPTS: i32 = 10;

/// What the outbox holds, for the sweep's report and health checks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutboxHealth {
    /// Rows not published yet (parked ones aside).
    pub unsent: i64,
    /// Age of the oldest of them, in seconds (0 when there is none).
    pub oldest_unsent_secs: f64,
    /// Rows parked after [`MAX_OUTBOX_ATTEMPTS`] failures.
    pub parked: i64,
}

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

/// The storage port.
pub trait DocumentStore: Send + Sync {
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

    /// [`DocumentStore::access`] and the session `site`, in one round trip.
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

    /// The latest snapshot, the tail after it and the waiting ops, in at most two queries.
    fn load(&self, id: DocumentId)
    -> impl Future<Output = Result<Option<Loaded>, AppError>> + Send;

    /// The operations at or after log position `from`.
    fn tail(
        &self,
        id: DocumentId,
        from: i64,
    ) -> impl Future<Output = Result<Tail, AppError>> + Send;

    /// [`DocumentStore::access`] and [`DocumentStore::tail`] together (what a read of a cached
    /// document needs), in one round trip where the store can; the tail is only for a caller
    /// the access allows.
    #[allow(clippy::type_complexity)]
    fn access_and_tail(
        &self,
        id: DocumentId,
        user: &UserId,
        from: i64,
    ) -> impl Future<Output = Result<(Option<(Document, Option<Role>)>, Tail), AppError>> + Send
    {
        async move { Ok((self.access(id, user).await?, self.tail(id, from).await?)) }
    }

    /// Appends under the document's lock; see the module docs. `plan` is called exactly once;
    /// if the append then fails, nothing was written.
    fn append<F>(
        &self,
        id: DocumentId,
        known_pos: i64,
        origin: ReplicaId,
        plan: F,
    ) -> impl Future<Output = Result<Appended, AppError>> + Send
    where
        F: FnOnce(Tail) -> Result<Plan, AppError> + Send;

    /// Writes `plan` in one statement if the document's log is still at `known_pos` (no other
    /// writer since the caller's replica was current); `None` if it moved on, writing nothing.
    /// Every write advances the log length (waiting-only writes too), so the check covers them.
    fn try_append(
        &self,
        id: DocumentId,
        known_pos: i64,
        origin: ReplicaId,
        plan: &Plan,
    ) -> impl Future<Output = Result<Option<Appended>, AppError>> + Send;

    /// Appends operations idempotently in one statement (under the document's lock): a stored
    /// op with the same content is ignored, the same id with other content is a conflict.
    fn append_ops(
        &self,
        id: DocumentId,
        ops: &[Op],
        origin: ReplicaId,
    ) -> impl Future<Output = Result<Appended, AppError>> + Send;

    /// The operations `since` lacks, from log position `cursor` on, at most `limit`.
    fn ops_since(
        &self,
        id: DocumentId,
        since: &VersionVector,
        cursor: i64,
        limit: usize,
    ) -> impl Future<Output = Result<OpsPage, AppError>> + Send;

    /// Writes a snapshot covering the log before `log_pos`, unless another compaction holds the
    /// document's advisory lock or a snapshot at least as recent exists. Earlier ones stay.
    fn write_snapshot(
        &self,
        id: DocumentId,
        state: &[u8],
        text: &str,
        version: &VersionVector,
        log_pos: i64,
    ) -> impl Future<Output = Result<Option<SnapshotMeta>, AppError>> + Send;

    /// Log position where the tail after the latest snapshot starts (0 without snapshots).
    fn snapshot_pos(&self, id: DocumentId) -> impl Future<Output = Result<i64, AppError>> + Send;

    /// The snapshot history, oldest first.
    fn snapshots(
        &self,
        id: DocumentId,
    ) -> impl Future<Output = Result<Vec<SnapshotMeta>, AppError>> + Send;

    /// The text of snapshot `version`.
    fn snapshot_text(
        &self,
        id: DocumentId,
        version: i32,
    ) -> impl Future<Output = Result<Option<String>, AppError>> + Send;

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

    /// Claims up to `limit` outbox rows older than `min_age_secs` for `lease_secs`.
    fn claim_outbox(
        &self,
        min_age_secs: i64,
        lease_secs: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<OutboxRow>, AppError>> + Send;

    /// Reads one outbox row.
    fn outbox_row(
        &self,
        id: i64,
    ) -> impl Future<Output = Result<Option<OutboxRow>, AppError>> + Send;

    /// Deletes a published outbox row.
    fn outbox_done(&self, id: i64) -> impl Future<Output = Result<(), AppError>> + Send;

    /// Records a failed publish: the row backs off, and is parked after
    /// [`MAX_OUTBOX_ATTEMPTS`]. Returns whether it was parked.
    fn outbox_failed(
        &self,
        id: i64,
        error: &str,
    ) -> impl Future<Output = Result<bool, AppError>> + Send;

    /// Unsent and parked rows, and the oldest unsent one's age.
    fn outbox_health(&self) -> impl Future<Output = Result<OutboxHealth, AppError>> + Send;

    /// The hash and answer recorded under an idempotency key that has not expired (an expired
    /// one is deleted).
    fn key_answer(
        &self,
        id: DocumentId,
        user: &UserId,
        key: &str,
    ) -> impl Future<Output = Result<Option<(String, serde_json::Value)>, AppError>> + Send;

    /// Deletes expired idempotency keys; returns how many.
    fn expire_keys(&self) -> impl Future<Output = Result<u64, AppError>> + Send;

    /// Deletes the waiting ops of `replica`'s own sessions (client-submitted: their site ids
    /// carry the replica in the high bits) that have waited longer than `max_age_secs`; returns
    /// the documents they were on. Other replicas' ops are left to wait for their causes.
    fn expire_waiting(
        &self,
        replica: ReplicaId,
        max_age_secs: i64,
    ) -> impl Future<Output = Result<Vec<DocumentId>, AppError>> + Send;

    /// Rows in the outbox (for tests and health checks).
    fn outbox_len(&self) -> impl Future<Output = Result<i64, AppError>> + Send;
}
