//! The integrate function. Fed by this replica's SQS queue (the queue subscribed to the shared
//! SNS topic with a filter that leaves out this replica's own messages), it integrates other
//! replicas' messages idempotently through [`collab::Service::integrate`], one record at a time;
//! invoked by the schedule (`{"task": "sweep"}` or an EventBridge scheduled event), it
//! republishes outbox rows that a failed publish left behind. A direct SNS event (a Lambda
//! subscription, or `cargo lambda invoke` with `events/sns/*.json`) is accepted too.
//!
//! Only messages from the configured topic are accepted, and this replica's own messages are
//! skipped. A message whose claims do not match its origin (ops or a session whose site id
//! carries another replica in its high bits, a collaborator change stamped by another, a
//! `replica_id` attribute that disagrees with the body) is dropped and counted as forged. A
//! message that can never succeed (unparseable, refused for good) is logged and dropped: its
//! record counts as processed, so SQS deletes it. A transient failure (database down) is reported
//! in `batchItemFailures` (the event source mapping's `ReportBatchItemFailures`) for that record
//! and, without trying them, for the records after it: SQS makes only those visible again, and
//! after `maxReceiveCount` receives moves them to the dead-letter queue. The records that
//! succeeded are deleted, and repeating one would be harmless anyway (integration is
//! idempotent). For a direct SNS event a transient failure fails the invocation.

use aws_lambda_events::sns::SnsEvent;
use aws_lambda_events::sqs::SqsEvent;
use collab::ports::DocumentStore;
use collab::ports::EventPublisher;
use collab::wire::Envelope;
use collab::{AppError, ReplicaId, Service};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A record SQS should deliver again (the SQS message id).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ItemFailure {
    /// The record's `messageId`.
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

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
    /// For an SQS batch: the records that failed for a transient reason, to be delivered again
    /// (`ReportBatchItemFailures`); absent for other events.
    #[serde(rename = "batchItemFailures", skip_serializing_if = "Option::is_none")]
    pub batch_item_failures: Option<Vec<ItemFailure>>,
}

/// The SNS notification an SQS message carries when the subscription does not use raw message
/// delivery (the queue's message body).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Notification {
    message_id: String,
    topic_arn: String,
    message: String,
    timestamp: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    message_attributes: std::collections::HashMap<String, NotificationAttribute>,
}

#[derive(Debug, Deserialize)]
struct NotificationAttribute {
    #[serde(rename = "Value")]
    value: String,
}

/// What became of one message.
enum Outcome {
    Done,
    Transient(AppError),
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
        if let Some(records) = event.get("Records").and_then(Value::as_array) {
            let source = records
                .first()
                .and_then(|r| r.get("eventSource").or_else(|| r.get("EventSource")))
                .and_then(Value::as_str);
            if source == Some("aws:sqs") {
                let sqs: SqsEvent = serde_json::from_value(event).map_err(|e| {
                    tracing::error!(error = %e, "an event from aws:sqs that is not an SQS event; dropped");
                    AppError::BadRequest("not an SQS event".into())
                })?;
                return Ok(self.queue_batch(sqs).await);
            }
            let sns: SnsEvent = serde_json::from_value(event).map_err(|e| {
                tracing::error!(error = %e, "an event with Records that is not an SNS event; dropped");
                AppError::BadRequest("not an SNS event".into())
            })?;
            return self.sns_event(sns).await;
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

    /// A batch from this replica's queue: every record is tried (until a transient failure),
    /// and the ones to deliver again are listed.
    async fn queue_batch(&self, event: SqsEvent) -> Report {
        let mut report = Report::default();
        let mut failures = Vec::new();
        let mut failing = false;
        for record in event.records {
            let id = record.message_id.clone().unwrap_or_default();
            if failing {
                failures.push(ItemFailure {
                    item_identifier: id,
                });
                continue;
            }
            let body = record.body.as_deref().unwrap_or("");
            let n: Notification = match serde_json::from_str(body) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(message_id = %id, error = %e,
                        "a queue message that is not an SNS notification; dropped");
                    report.dropped += 1;
                    continue;
                }
            };
            if let Outcome::Transient(e) = self.one(n, &mut report).await {
                tracing::error!(message_id = %id, error = %e,
                    "transient failure: this record and the rest of the batch go back to the queue");
                failing = true;
                failures.push(ItemFailure {
                    item_identifier: id,
                });
            }
        }
        report.batch_item_failures = Some(failures);
        emit_drops(&report);
        report
    }

    /// A direct SNS event: a transient failure fails the invocation (Lambda retries it).
    async fn sns_event(&self, event: SnsEvent) -> Result<Report, AppError> {
        let mut report = Report::default();
        let mut outcome = Ok(());
        for record in event.records {
            let sns = record.sns;
            let n = Notification {
                message_id: sns.message_id,
                topic_arn: sns.topic_arn,
                message: sns.message,
                timestamp: sns.timestamp,
                message_attributes: sns
                    .message_attributes
                    .into_iter()
                    .map(|(k, a)| (k, NotificationAttribute { value: a.value }))
                    .collect(),
            };
            if let Outcome::Transient(e) = self.one(n, &mut report).await {
                tracing::error!(error = %e, "transient failure; the invocation fails and is retried");
                outcome = Err(e);
                break;
            }
        }
        emit_drops(&report);
        outcome.map(|()| report)
    }

    /// One message: integrated, skipped, dropped for good (counted in `report`), or a transient
    /// failure to retry.
    async fn one(&self, n: Notification, report: &mut Report) -> Outcome {
        if n.topic_arn != self.topic_arn {
            tracing::warn!(topic = %n.topic_arn, "message from an unexpected topic; dropped");
            report.dropped += 1;
            return Outcome::Done;
        }
        let attribute = n
            .message_attributes
            .get("replica_id")
            .map(|a| a.value.clone());
        let from_self = attribute.as_deref() == Some(self.replica().to_string().as_str());
        let envelope: Envelope = match serde_json::from_str(&n.message) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(message_id = %n.message_id, error = %e, "unparseable message; dropped");
                report.dropped += 1;
                return Outcome::Done;
            }
        };
        if from_self || envelope.origin == self.replica() {
            report.own += 1;
            return Outcome::Done;
        }
        // The attribute (what the subscription's filter policy routed on) must name the body's
        // origin; the body's own claims are checked by the use-case (Forged below).
        if let Some(a) = attribute.filter(|a| *a != envelope.origin.to_string()) {
            tracing::error!(message_id = %n.message_id, origin = %envelope.origin, attribute = %a,
                "forged replication message: the replica_id attribute disagrees with the origin; dropped");
            report.dropped += 1;
            report.forged += 1;
            return Outcome::Done;
        }
        let ops = match &envelope.body {
            collab::wire::Broadcast::Ops { ops, .. } => ops.len(),
            _ => 0,
        };
        match self.service.integrate(envelope).await {
            Ok(()) => {
                report.integrated += 1;
                // Lag from SNS's publish time (for a row the sweep republished, from then).
                let lag = (chrono::Utc::now() - n.timestamp).num_milliseconds().max(0);
                collab::metrics::emit(&[
                    ("OpsApplied", ops as f64, collab::metrics::Unit::Count),
                    (
                        "IntegrateLagMilliseconds",
                        lag as f64,
                        collab::metrics::Unit::Milliseconds,
                    ),
                ]);
                Outcome::Done
            }
            Err(AppError::Forged(why)) => {
                tracing::error!(message_id = %n.message_id, reason = %why, "forged replication message; dropped");
                report.dropped += 1;
                report.forged += 1;
                Outcome::Done
            }
            Err(e) if e.is_transient() => Outcome::Transient(e),
            Err(e) => {
                tracing::error!(message_id = %n.message_id, error = %e, "message refused for good; dropped");
                report.dropped += 1;
                Outcome::Done
            }
        }
    }
}

fn emit_drops(report: &Report) {
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
}
