//! Other replicas' messages, and compaction. Integration is idempotent: a message delivered
//! twice, re-chunked or out of order changes nothing more than once; an invalid remote op is
//! logged and dropped (it can never succeed), a storage failure is returned so the delivery is
//! retried.

use super::Service;
use super::write::Announce;
use crate::error::AppError;
use crate::ids::DocumentId;
use crate::model::SnapshotMeta;
use crate::ports::{DocumentStore, EventPublisher};
use crate::wire::{Broadcast, Envelope};

impl<S: DocumentStore, P: EventPublisher> Service<S, P> {
    /// Integrates a message from another replica. Idempotent; invalid ops are logged and
    /// dropped (they can never succeed); a storage failure is returned so that the delivery is retried.
    pub async fn integrate(&self, envelope: Envelope) -> Result<(), AppError> {
        if envelope.origin == self.settings.replica {
            return Ok(());
        }
        if let Some(why) = envelope.forged() {
            return Err(AppError::Forged(why));
        }
        let doc = self.store.upsert_document(envelope.document()).await?;
        if doc.deleted_at.is_some() {
            self.cache.forget(doc.id);
            if matches!(envelope.body, Broadcast::Document { .. }) {
                self.access_changed(doc.id).await;
            }
            return Ok(());
        }
        match envelope.body {
            Broadcast::Document { .. } => Ok(()),
            Broadcast::Session { session, .. } => self.store.insert_session(&session).await,
            Broadcast::Collaborator { change, .. } => {
                let (applied, _) = self.store.change_collaborator(&change, None).await?;
                if applied && change.role.is_none() {
                    self.access_changed(doc.id).await;
                }
                if !applied {
                    // Not an error: a newer change of the same collaborator is stored already.
                    tracing::info!(document = %doc.id, user = %change.user_id.0, stamp = change.stamp,
                        "a remote collaborator change older than the stored one was not applied");
                }
                Ok(())
            }
            Broadcast::Ops { ops, .. } => {
                let document = doc.id;
                self.commit(&doc, Announce::Nothing, None, move |rga| {
                    for op in ops.iter().cloned() {
                        let id = op.id().id();
                        if let Err(e) = rga.apply(op) {
                            tracing::warn!(%document, op = %id, error = %e, "dropping an invalid remote op");
                        }
                    }
                    Ok(((), Vec::new()))
                })
                .await?;
                self.maybe_compact(doc.id).await;
                Ok(())
            }
        }
    }

    /// After a local write: compacts when the cached tail has grown past the threshold. The
    /// check reads the cache only, so a write below the threshold costs no query.
    pub(super) async fn compact_if_due(&self, id: DocumentId) {
        let due = {
            let slot = self.cache.slot(id);
            let guard = slot.lock().await;
            guard
                .as_ref()
                .is_some_and(|c| c.next_pos - c.snapshot_pos >= self.settings.compact_after)
        };
        if due {
            self.maybe_compact(id).await;
        }
    }

    /// Writes a snapshot if the tail after the last one is longer than the threshold.
    pub async fn maybe_compact(&self, id: DocumentId) {
        if let Err(e) = self.compact(id, false).await {
            tracing::warn!(document = %id, error = %e, "compaction failed");
        }
    }

    /// Writes a snapshot of the document as cached (refreshed first) when the tail is long, or
    /// always with `force`. Returns the snapshot written, if any.
    pub async fn compact(
        &self,
        id: DocumentId,
        force: bool,
    ) -> Result<Option<SnapshotMeta>, AppError> {
        let slot = self.cache.slot(id);
        let mut guard = slot.lock().await;
        self.refresh(id, &mut guard).await?;
        let Some(c) = guard.as_mut() else {
            return Ok(None);
        };
        if c.next_pos <= c.snapshot_pos
            || (!force && c.next_pos - c.snapshot_pos < self.settings.compact_after)
        {
            return Ok(None);
        }
        let encoded = c.rga.encode();
        // Exact again (the bound grows by more than each op adds).
        c.encoded = encoded.len();
        let meta = self
            .store
            .write_snapshot(id, &encoded, &c.rga.text(), &c.rga.version(), c.next_pos)
            .await?;
        if meta.is_some() {
            c.snapshot_pos = c.next_pos;
        }
        Ok(meta)
    }
}
