//! Publishing broadcasts: at once after a commit (from memory), and by the sweep for rows whose
//! publish failed (in `PublishBatch` calls, stopping at the first failure, failed rows backing
//! off and parked after [`crate::ports::MAX_OUTBOX_ATTEMPTS`]).

use super::Service;
use crate::error::AppError;
use crate::metrics::Unit;
use crate::ports::OutboxHealth;
use crate::ports::{DocumentStore, EventPublisher};
use crate::wire::{Envelope, SNS_MAX_BYTES, split};

/// What an outbox sweep did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sweep {
    /// Rows published.
    pub published: usize,
    /// Whether it stopped at a failed publish.
    pub stopped: bool,
    /// What the outbox holds afterwards (its oldest unsent age is the replication backlog).
    pub health: OutboxHealth,
    /// Documents whose expired client ops waiting for their causes were dropped.
    pub expired_waiting: usize,
}

/// The most published rows a container keeps for its next write to delete; past this, the
/// publish deletes its row itself.
const MAX_SENT_DEFERRED: usize = 64;

impl<S: DocumentStore, P: EventPublisher> Service<S, P> {
    /// Republishes outbox rows older than `min_age_secs` (left by failed publishes or crashes),
    /// oldest first. Stops at the first failure (SNS is down: the rest would fail too, and the
    /// failed row backs off instead of being claimed again at once). Returns what it published
    /// and what the outbox still holds.
    pub async fn sweep_outbox(&self, min_age_secs: i64) -> Result<Sweep, AppError> {
        let mut published = 0;
        let mut stopped = false;
        'claims: loop {
            let rows = self.store.claim_outbox(min_age_secs, 60, 50).await?;
            if rows.is_empty() {
                break;
            }
            // Every claimed row's messages, in PublishBatch calls (ten to a call, 256 KiB)
            // instead of one publish each, oldest first; after a call with a failure the rest
            // wait for the next sweep. A row is done when all its messages went out.
            let mut messages = Vec::new();
            let mut owner = Vec::new();
            for (r, row) in rows.iter().enumerate() {
                for m in split(&row.envelope, SNS_MAX_BYTES) {
                    messages.push(m);
                    owner.push(r);
                }
            }
            // Per row: Some(None) all attempted and sent so far, Some(Some(e)) a message failed,
            // None not (fully) attempted.
            let mut outcome: Vec<Option<Option<String>>> = vec![Some(None); rows.len()];
            let mut attempted = 0;
            for range in crate::ports::batches(&messages) {
                let results = self.publisher.publish_batch(&messages[range.clone()]).await;
                let mut any_failed = false;
                for (i, result) in range.clone().zip(results) {
                    if let (Err(e), Some(o)) = (result, outcome[owner[i]].as_mut()) {
                        o.get_or_insert(e.to_string());
                        any_failed = true;
                    }
                }
                attempted = range.end;
                if any_failed {
                    break;
                }
            }
            for r in owner.iter().skip(attempted) {
                outcome[*r] = None;
            }
            for (row, o) in rows.iter().zip(outcome) {
                match o {
                    Some(None) => {
                        published += 1;
                        self.published(row.id).await;
                    }
                    Some(Some(e)) => {
                        stopped = true;
                        self.publish_failed(row.id, &e).await;
                    }
                    // Not attempted: its lease expires on its own.
                    None => {}
                }
            }
            if stopped {
                // SNS is failing: the next sweep tries again (the failed rows back off).
                break 'claims;
            }
        }
        match self.store.expire_keys().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "idempotency keys expired"),
            Err(e) => tracing::warn!(error = %e, "expiring idempotency keys failed"),
        }
        let limits = &self.settings.limits;
        let expired_waiting = match self
            .store
            .expire_waiting(self.settings.replica, limits.max_waiting_age_secs)
            .await
        {
            Ok(docs) => {
                for d in &docs {
                    // The cached replica still holds them as waiting: reload it.
                    self.cache.forget(*d);
                }
                if !docs.is_empty() {
                    tracing::info!(
                        documents = docs.len(),
                        "expired client ops waiting for their causes"
                    );
                }
                docs.len()
            }
            Err(e) => {
                tracing::warn!(error = %e, "expiring waiting ops failed");
                0
            }
        };
        let health = self.store.outbox_health().await?;
        crate::metrics::emit(&[
            ("OutboxBacklog", health.unsent as f64, Unit::Count),
            (
                "OutboxOldestAgeSeconds",
                health.oldest_unsent_secs as f64,
                Unit::Seconds,
            ),
            ("OutboxParked", health.parked as f64, Unit::Count),
        ]);
        if health.parked > 0 || stopped {
            tracing::warn!(
                published,
                unsent = health.unsent,
                parked = health.parked,
                oldest_unsent_secs = health.oldest_unsent_secs,
                "outbox not empty after the sweep"
            );
        }
        Ok(Sweep {
            published,
            stopped,
            health,
            expired_waiting,
        })
    }

    /// Publishes outbox row `id` (written by this request) and deletes it on success.
    pub(super) async fn publish_row(&self, id: i64) {
        match self.store.outbox_row(id).await {
            Ok(Some(row)) => {
                self.publish_envelope(row.id, &row.envelope, false).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(outbox = id, error = %e, "reading the outbox failed; the sweep will publish")
            }
        }
    }

    /// The published rows the next write deletes.
    pub(super) fn sent_rows(&self) -> Vec<i64> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Forgets rows a committed write deleted.
    pub(super) fn forget_sent(&self, done: &[i64]) {
        if done.is_empty() {
            return;
        }
        if let Ok(mut s) = self.sent.lock() {
            s.retain(|id| !done.contains(id));
        }
    }

    /// Publishes outbox row `id`; on success deletes it, or with `defer` leaves that to this
    /// container's next write (at most [`MAX_SENT_DEFERRED`] rows wait so).
    pub(super) async fn publish_envelope(&self, id: i64, envelope: &Envelope, defer: bool) -> bool {
        for message in split(envelope, SNS_MAX_BYTES) {
            if let Err(e) = self.publisher.publish(&message).await {
                self.publish_failed(id, &e.to_string()).await;
                return false;
            }
        }
        if defer
            && let Ok(mut sent) = self.sent.lock()
            && sent.len() < MAX_SENT_DEFERRED
        {
            sent.push(id);
            return true;
        }
        self.published(id).await;
        true
    }

    /// Deletes a published outbox row.
    pub(super) async fn published(&self, id: i64) {
        if let Err(e) = self.store.outbox_done(id).await {
            tracing::warn!(outbox = id, error = %e, "deleting a published outbox row failed; it may be sent twice");
        }
    }

    /// Records a failed publish of outbox row `id`: it backs off, and parks at the limit.
    pub(super) async fn publish_failed(&self, id: i64, error: &str) {
        tracing::warn!(outbox = id, error, "publish failed; the sweep will retry");
        crate::metrics::count("PublishFailures", 1);
        match self.store.outbox_failed(id, error).await {
            Ok(true) => tracing::error!(
                outbox = id,
                "an outbox row failed too often and is parked; it will not be retried"
            ),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(outbox = id, error = %e, "recording the failed publish failed")
            }
        }
    }
}
