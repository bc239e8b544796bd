//! The operation log: each document's ops in commit order, and the ops waiting for their causes.

use std::future::Future;

use rga::{CharId, Op, SiteId, VersionVector};

use super::keys::KeyRecord;
use super::{Access, Documents};
use crate::error::AppError;
use crate::ids::{DocumentId, ReplicaId, UserId};
use crate::model::{Document, OpsPage, Role};
use crate::wire::Envelope;

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

/// What [`OpLog::append`] shows the caller: everything written since `known_pos`.
#[derive(Debug, Clone)]
pub struct Tail {
    /// Operations appended at or after `known_pos`, in log order.
    pub ops: Vec<Op>,
    /// The log position after them.
    pub next_pos: i64,
    /// All operations waiting for their causes.
    pub waiting: Vec<Op>,
}

/// What the caller of [`OpLog::append`] wants written.
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

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The log position of the first new operation (where the log was when it was written).
    pub start: i64,
    /// The log position after the new operations.
    pub next_pos: i64,
    /// The outbox row to publish, if one was written.
    pub outbox_id: Option<i64>,
    /// Rows inserted.
    pub inserted: u64,
    /// Operations that were already stored with identical content (ignored).
    pub duplicates: u64,
}

/// The log of operations and the waiting buffer.
pub trait OpLog: Documents {
    /// The latest snapshot, the tail after it and the waiting ops, in at most two queries.
    fn load(&self, id: DocumentId)
    -> impl Future<Output = Result<Option<Loaded>, AppError>> + Send;

    /// The operations at or after log position `from`.
    fn tail(
        &self,
        id: DocumentId,
        from: i64,
    ) -> impl Future<Output = Result<Tail, AppError>> + Send;

    /// [`Documents::access`] and [`OpLog::tail`] together (what a read of a cached document
    /// needs), in one round trip where the store can; the tail is only for a caller the access
    /// allows.
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

    /// Appends under the document's lock; see the [module docs](crate::ports). `plan` is called
    /// exactly once; if the append then fails, nothing was written.
    fn append<F>(
        &self,
        id: DocumentId,
        known_pos: i64,
        origin: ReplicaId,
        plan: F,
    ) -> impl Future<Output = Result<Appended, AppError>> + Send
    where
        F: FnOnce(Tail) -> Result<Plan, AppError> + Send;

    /// Writes `plan` in one statement, without a lock held across round trips. With
    /// `Some(pos)`: only if the document's log is still at `pos` (no other writer since the
    /// caller's replica was current); `None` if it moved on, writing nothing. Every write
    /// advances the log length (waiting-only writes too), so the check covers them. With
    /// `known_pos` `None`: at the log's end whatever was written since, for ops made on a state
    /// that may be behind (an op stays valid on any later state: its causes are there); `None`
    /// if one of the ops' ids is stored already (a concurrent request of the same session), so
    /// that the caller decides again under the lock.
    fn try_append(
        &self,
        id: DocumentId,
        known_pos: Option<i64>,
        origin: ReplicaId,
        plan: &Plan,
    ) -> impl Future<Output = Result<Option<Appended>, AppError>> + Send;

    /// [`Documents::access_with_session`] with the document's log length, and, when
    /// `tail_from` is given, [`OpLog::tail`] from there: what an edit reads before it writes,
    /// in one round trip.
    #[allow(clippy::type_complexity)]
    fn access_with_session_and_tail(
        &self,
        id: DocumentId,
        user: &UserId,
        site: SiteId,
        tail_from: Option<i64>,
    ) -> impl Future<Output = Result<(Option<(Access, i64)>, Option<Tail>), AppError>> + Send;

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

    /// Deletes the waiting ops of `replica`'s own sessions (client-submitted: their site ids
    /// carry the replica in the high bits) that have waited longer than `max_age_secs`; returns
    /// the documents they were on. Other replicas' ops are left to wait for their causes.
    fn expire_waiting(
        &self,
        replica: ReplicaId,
        max_age_secs: i64,
    ) -> impl Future<Output = Result<Vec<DocumentId>, AppError>> + Send;
}
