//! The broadcast port: messages to the other replicas, one at a time or in batches.

use std::future::Future;

use crate::wire::{Outbound, SNS_MAX_BYTES};

/// The most messages one SNS `PublishBatch` call carries.
pub const SNS_BATCH_MESSAGES: usize = 10;

/// Why a publish failed (the message stays in the outbox).
#[derive(Debug, thiserror::Error)]
#[error("publish failed: {0}")]
pub struct PublishError(pub String);

/// Sends messages to the other replicas.
pub trait EventPublisher: Send + Sync {
    /// Publishes one message (at most 256 KiB as SNS counts it).
    fn publish(&self, message: &Outbound) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// Publishes several messages, in as few calls as the publisher can; one result per
    /// message, in order. By default one [`EventPublisher::publish`] each.
    fn publish_batch(
        &self,
        messages: &[Outbound],
    ) -> impl Future<Output = Vec<Result<(), PublishError>>> + Send {
        async move {
            let mut out = Vec::with_capacity(messages.len());
            for m in messages {
                out.push(self.publish(m).await);
            }
            out
        }
    }
}

/// Splits `messages` into the runs one `PublishBatch` call may carry: at most
/// [`SNS_BATCH_MESSAGES`] messages and [`SNS_MAX_BYTES`] in all. Returns index ranges.
pub fn batches(messages: &[Outbound]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, m) in messages.iter().enumerate() {
        let size = m.sns_size();
        if i > start && (i - start == SNS_BATCH_MESSAGES || bytes + size > SNS_MAX_BYTES) {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < messages.len() {
        out.push(start..messages.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DocumentId, ReplicaId};

    fn message(bytes: usize) -> Outbound {
        Outbound {
            document_id: DocumentId(uuid::Uuid::nil()),
            origin: ReplicaId(1),
            body: "x".repeat(bytes),
        }
    }

    #[test]
    fn batches_hold_ten_messages_and_256_kib_at_most() {
        let small: Vec<Outbound> = (0..23).map(|_| message(100)).collect();
        assert_eq!(batches(&small), vec![0..10, 10..20, 20..23]);
        let big: Vec<Outbound> = (0..5).map(|_| message(100 * 1024)).collect();
        assert_eq!(batches(&big), vec![0..2, 2..4, 4..5]);
        assert!(batches(&[]).is_empty());
        let mixed = vec![message(200 * 1024), message(10), message(100 * 1024)];
        assert_eq!(batches(&mixed), vec![0..2, 2..3]);
    }
}
