//! The integrate function. Invoked by SNS with other replicas' messages, it integrates them
//! idempotently through [`collab::Service::integrate`]; invoked by the schedule
//! (`{"task": "sweep"}` or an EventBridge scheduled event), it republishes outbox rows that a
//! failed publish left behind.
//!
//! Only messages from the configured topic are accepted, and this replica's own messages are
//! skipped. A message whose claims do not match its origin (ops or a session whose site id
//! carries another replica in its high bits, a collaborator change stamped by another, a
//! `replica_id` attribute that disagrees with the body) is dropped and counted as forged. A message that can never succeed (unparseable) is logged and dropped; a transient
//! failure (database down) fails the invocation, so Lambda retries the asynchronous event and
//! finally hands it to the dead-letter queue (integration is idempotent, so the records that did
//! succeed are harmless to repeat).

use aws_lambda_events::sns::SnsEvent;
use collab::message::Envelope;
use collab::publisher::EventPublisher;
use collab::store::DocumentStore;
use collab::{AppError, ReplicaId, Service};
use serde::Serialize;
use serde_json::Value;

/// What one invocation did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    /// Messages integrated.
    pub integrated: usize,
    /// Own messages skipped.
    pub own: usize,
    /// Messages dropped: unparseable, from another topic, or invalid for good.
    pub dropped: usize,
    /// Of those, messages whose claims did not match their origin (a session of replica 2
    /// sent as replica 3's, an attribute that disagrees with the body): never applied.
    pub forged: usize,
    /// Outbox rows republished by a sweep.
    pub swept: usize,
}

/// Shared per container.
pub struct Integrator<S, P> {
    /// The use-cases.
    pub service: Service<S, P>,
    /// The only topic accepted.
    pub topic_arn: String,
}

impl<S: DocumentStore, P: EventPublisher> Integrator<S, P> {
    fn replica(&self) -> ReplicaId {
        self.service.settings().replica
    }

    /// Handles one invocation payload.
    pub async fn handle(&self, event: Value) -> Result<Report, AppError> {
        if event.get("Records").is_some() {
            let sns: SnsEvent = serde_json::from_value(event).map_err(|e| {
                tracing::error!(error = %e, "an event with Records that is not an SNS event; dropped");
                AppError::BadRequest("not an SNS event".into())
            })?;
            return self.integrate(sns).await;
        }
        let scheduled = event.get("task").and_then(Value::as_str) == Some("sweep")
            || event.get("source").and_then(Value::as_str) == Some("aws.events");
        if scheduled {
            let swept = self.service.sweep_outbox(30).await?.published;
            return Ok(Report {
                swept,
                ..Report::default()
            });
        }
        tracing::warn!("unknown event shape; ignored");
        Ok(Report {
            dropped: 1,
            ..Report::default()
        })
    }

    async fn integrate(&self, event: SnsEvent) -> Result<Report, AppError> {
        let mut report = Report::default();
        let outcome = self.integrate_records(event, &mut report).await;
        if report.dropped > 0 {
            collab::metrics::emit(&[
                (
                    "DroppedMessages",
                    report.dropped as f64,
                    collab::metrics::Unit::Count,
                ),
                (
                    "ForgedMessages",
                    report.forged as f64,
                    collab::metrics::Unit::Count,
                ),
            ]);
        }
        outcome.map(|()| report)
    }

    async fn integrate_records(
        &self,
        event: SnsEvent,
        report: &mut Report,
    ) -> Result<(), AppError> {
        for record in event.records {
            let sns = record.sns;
            if sns.topic_arn != self.topic_arn {
                tracing::warn!(topic = %sns.topic_arn, "message from an unexpected topic; dropped");
                report.dropped += 1;
                continue;
            }
            let attribute = sns
                .message_attributes
                .get("replica_id")
                .map(|a| a.value.clone());
            let from_self = attribute.as_deref() == Some(self.replica().to_string().as_str());
            let envelope: Envelope = match serde_json::from_str(&sns.message) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(message_id = %sns.message_id, error = %e, "unparseable message; dropped");
                    report.dropped += 1;
                    continue;
                }
            };
            if from_self || envelope.origin == self.replica() {
                report.own += 1;
                continue;
            }
            // The attribute (what the subscription's filter policy routed on) must name the
            // body's origin; the body's own claims are checked by the use-case (Forged below).
            if let Some(a) = attribute.filter(|a| *a != envelope.origin.to_string()) {
                tracing::error!(message_id = %sns.message_id, origin = %envelope.origin, attribute = %a,
                    "forged replication message: the replica_id attribute disagrees with the origin; dropped");
                report.dropped += 1;
                report.forged += 1;
                continue;
            }
            let ops = match &envelope.body {
                collab::message::Broadcast::Ops { ops, .. } => ops.len(),
                _ => 0,
            };
            match self.service.integrate(envelope).await {
                Ok(()) => {
                    report.integrated += 1;
                    // Lag from SNS's publish time (for a row the sweep republished, from then).
                    let lag = (chrono::Utc::now() - sns.timestamp)
                        .num_milliseconds()
                        .max(0);
                    collab::metrics::emit(&[
                        ("OpsApplied", ops as f64, collab::metrics::Unit::Count),
                        (
                            "IntegrateLagMilliseconds",
                            lag as f64,
                            collab::metrics::Unit::Milliseconds,
                        ),
                    ]);
                }
                Err(AppError::Forged(why)) => {
                    tracing::error!(message_id = %sns.message_id, reason = %why, "forged replication message; dropped");
                    report.dropped += 1;
                    report.forged += 1;
                }
                Err(e) if e.is_transient() => {
                    tracing::error!(message_id = %sns.message_id, error = %e, "transient failure; the invocation fails and is retried");
                    return Err(e);
                }
                Err(e) => {
                    tracing::error!(message_id = %sns.message_id, error = %e, "message refused for good; dropped");
                    report.dropped += 1;
                }
            }
        }
        Ok(())
    }
}
