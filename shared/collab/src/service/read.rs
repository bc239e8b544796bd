//! Reads: a document's text, the ops a client lacks (catch-up), the snapshot history.
//! A read of a cached document costs one round trip (access and tail together).

use super::write::apply_tail;
use super::{DocumentView, Service};
use crate::error::AppError;
use crate::ids::{DocumentId, UserId};
use crate::model::{OpsPage, Role, SnapshotMeta};
use crate::ports::{DocumentStore, EventPublisher};
use rga::VersionVector;

impl<S: DocumentStore, P: EventPublisher> Service<S, P> {
    /// A document with its current text and version.
    pub async fn get_document(
        &self,
        id: DocumentId,
        user: &UserId,
    ) -> Result<DocumentView, AppError> {
        // A cached document: its access and tail in one round trip.
        {
            let slot = self.cache.slot(id);
            let mut guard = slot.lock().await;
            if let Some(c) = guard.as_mut() {
                let (access, tail) = self.store.access_and_tail(id, user, c.next_pos).await?;
                let (document, role) = match access {
                    Some((doc, Some(role))) if doc.deleted_at.is_none() => (doc, role),
                    _ => return Err(AppError::not_found(format!("document {id}"))),
                };
                if let Err(e) = apply_tail(id, c, tail) {
                    *guard = None;
                    return Err(e);
                }
                return Ok(DocumentView {
                    document,
                    role,
                    text: c.rga.text(),
                    version: c.rga.version(),
                });
            }
        }
        let (document, role) = self.authorize(id, user, Role::Viewer).await?;
        let (text, version) = self.read(id, |r| (r.text(), r.version())).await?;
        Ok(DocumentView {
            document,
            role,
            text,
            version,
        })
    }

    /// Ops that `since` lacks, paged by log position.
    pub async fn ops_since(
        &self,
        id: DocumentId,
        user: &UserId,
        since: &VersionVector,
        cursor: i64,
        limit: usize,
    ) -> Result<OpsPage, AppError> {
        self.authorize(id, user, Role::Viewer).await?;
        self.store.ops_since(id, since, cursor.max(0), limit).await
    }

    /// The snapshot history.
    pub async fn snapshots(
        &self,
        id: DocumentId,
        user: &UserId,
    ) -> Result<Vec<SnapshotMeta>, AppError> {
        self.authorize(id, user, Role::Viewer).await?;
        self.store.snapshots(id).await
    }

    /// The text of snapshot `version`.
    pub async fn snapshot_text(
        &self,
        id: DocumentId,
        user: &UserId,
        version: i32,
    ) -> Result<String, AppError> {
        self.authorize(id, user, Role::Viewer).await?;
        self.store
            .snapshot_text(id, version)
            .await?
            .ok_or_else(|| AppError::not_found(format!("snapshot {version}")))
    }
}
