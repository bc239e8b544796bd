//! The integrate handler on the fixtures of `events/sns` (direct SNS events) and `events/sqs`
//! (the replica's queue, as the event source mapping delivers it), against a fresh PostgreSQL
//! database per test.

use collab::ports::Sessions;
use collab::testing::{ChannelPublisher, TestDb};
use collab::{AppError, DocumentId, Limits, PgDocumentStore, ReplicaId, Service, Settings, UserId};
use integrate::{Integrator, ItemFailure, Report};
use serde_json::Value;

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:collab-ops";
const DOC: &str = "00000000-0000-4000-8000-000000000001";

fn settings() -> Settings {
    Settings {
        replica: ReplicaId(1),
        ssn: 1,
        limits: Limits::default(),
        compact_after: 1000,
        cache_docs: 8,
    }
}

fn integrator(store: PgDocumentStore) -> Integrator<PgDocumentStore, ChannelPublisher> {
    Integrator {
        service: Service::new(store, ChannelPublisher::new(), settings()),
        topic_arn: TOPIC.into(),
    }
}

fn event(name: &str) -> Value {
    let path = format!("{}/../../events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .unwrap()
}

/// A store whose database does not answer.
fn unreachable_store() -> PgDocumentStore {
    let mut config = collab::testing::admin_config();
    config
        .host("127.0.0.1")
        .port(1)
        .connect_timeout(std::time::Duration::from_millis(200));
    PgDocumentStore::connect(&config, 1).unwrap()
}

async fn text(i: &Integrator<PgDocumentStore, ChannelPublisher>) -> Result<String, AppError> {
    Ok(i.service
        .get_document(DOC.parse::<DocumentId>().unwrap(), &UserId("alice".into()))
        .await?
        .text)
}

#[tokio::test]
async fn a_notification_creates_the_document_and_applies_its_ops_idempotently() {
    let db = TestDb::new().await.unwrap();
    let i = integrator(db.store(1).unwrap());
    let report = i.handle(event("sns/ops")).await.unwrap();
    assert_eq!(
        report,
        Report {
            integrated: 1,
            ..Report::default()
        }
    );
    assert_eq!(text(&i).await.unwrap(), "fn main() {}\n");
    // Redelivered (SNS is at least once): nothing changes.
    i.handle(event("sns/ops")).await.unwrap();
    assert_eq!(text(&i).await.unwrap(), "fn main() {}\n");
}

#[tokio::test]
async fn a_batch_out_of_causal_order_waits_and_converges() {
    let db = TestDb::new().await.unwrap();
    let i = integrator(db.store(1).unwrap());
    let report = i.handle(event("sns/batch")).await.unwrap();
    assert_eq!(report.integrated, 3);
    assert_eq!(text(&i).await.unwrap(), "fn main() { println!(\"hi\"); }\n");
}

#[tokio::test]
async fn own_foreign_topic_and_malformed_messages_are_skipped_or_dropped() {
    let db = TestDb::new().await.unwrap();
    let i = integrator(db.store(1).unwrap());
    assert_eq!(
        i.handle(event("sns/own_replica")).await.unwrap(),
        Report {
            own: 1,
            ..Report::default()
        }
    );
    assert_eq!(
        i.handle(event("sns/wrong_topic")).await.unwrap(),
        Report {
            dropped: 1,
            ..Report::default()
        }
    );
    assert_eq!(
        i.handle(event("sns/malformed")).await.unwrap(),
        Report {
            dropped: 2,
            ..Report::default()
        }
    );
    assert!(
        matches!(text(&i).await, Err(AppError::NotFound(_))),
        "nothing was created"
    );
}

#[tokio::test]
async fn the_schedule_sweeps_the_outbox() {
    let db = TestDb::new().await.unwrap();
    let i = integrator(db.store(1).unwrap());
    assert_eq!(
        i.handle(event("schedule/sweep")).await.unwrap(),
        Report::default()
    );
}

#[tokio::test]
async fn a_database_outage_fails_the_invocation_so_that_it_is_retried() {
    let i = integrator(unreachable_store());
    let err = i.handle(event("sns/ops")).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn forged_messages_are_dropped_and_counted_and_nothing_of_them_is_applied() {
    let db = TestDb::new().await.unwrap();
    let store = db.store(1).unwrap();
    let i = integrator(store.clone());
    // Replica 3 sends replica 2's session's ops; a body of replica 2 arrives with replica 3's
    // attribute; replica 3 announces a session with replica 2's site; replica 3 sends a
    // collaborator change stamped by replica 2.
    let report = i.handle(event("sns/forged")).await.unwrap();
    assert_eq!(
        report,
        Report {
            dropped: 4,
            forged: 4,
            ..Report::default()
        }
    );
    // Nothing was created: the document is unknown, mallory has no session.
    assert!(matches!(text(&i).await, Err(AppError::NotFound(_))));
    let forged_site = rga::SiteId((2 << 40) + 7);
    assert!(store.session(forged_site).await.unwrap().is_none());
    // The genuine message still integrates.
    assert_eq!(i.handle(event("sns/ops")).await.unwrap().integrated, 1);
    assert_eq!(text(&i).await.unwrap(), "fn main() {}\n");
}

#[tokio::test]
async fn the_use_case_refuses_a_forged_envelope_too() {
    let db = TestDb::new().await.unwrap();
    let i = integrator(db.store(1).unwrap());
    let record = &event("sns/forged")["Records"][0]["Sns"]["Message"];
    let envelope: collab::wire::Envelope = serde_json::from_str(record.as_str().unwrap()).unwrap();
    let err = i.service.integrate(envelope).await.unwrap_err();
    assert!(matches!(err, AppError::Forged(_)), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_queue_batch_integrates_and_reports_no_failures() {
    let db = TestDb::new().await.unwrap();
    let i = integrator(db.store(1).unwrap());
    let report = i.handle(event("sqs/ops")).await.unwrap();
    assert_eq!(
        report,
        Report {
            integrated: 1,
            batch_item_failures: Some(vec![]),
            ..Report::default()
        }
    );
    assert_eq!(text(&i).await.unwrap(), "fn main() {}\n");
    // The answer names the field the event source mapping reads.
    let answer = serde_json::to_value(&report).unwrap();
    assert_eq!(answer["batchItemFailures"], serde_json::json!([]));
    // Delivered again (SQS is at least once): nothing changes.
    i.handle(event("sqs/ops")).await.unwrap();
    assert_eq!(text(&i).await.unwrap(), "fn main() {}\n");
}

#[tokio::test]
async fn in_a_queue_batch_the_bad_records_are_dropped_one_by_one_and_the_good_one_applies() {
    let db = TestDb::new().await.unwrap();
    let i = integrator(db.store(1).unwrap());
    // Good ops, a body that is not a notification, another topic, a forged message, an own one.
    let report = i.handle(event("sqs/mixed")).await.unwrap();
    assert_eq!(
        report,
        Report {
            integrated: 1,
            own: 1,
            dropped: 3,
            forged: 1,
            batch_item_failures: Some(vec![]),
            ..Report::default()
        }
    );
    assert_eq!(text(&i).await.unwrap(), "fn main() {}\n");
}

#[tokio::test]
async fn a_database_outage_sends_the_record_and_the_rest_of_the_batch_back_to_the_queue() {
    let i = integrator(unreachable_store());
    let report = i.handle(event("sqs/mixed")).await.unwrap();
    let ids: Vec<String> = event("sqs/mixed")["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["messageId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        report.batch_item_failures,
        Some(
            ids.into_iter()
                .map(|item_identifier| ItemFailure { item_identifier })
                .collect()
        ),
        "the first record failed for a transient reason: it and every later one are retried"
    );
    assert_eq!(report.integrated, 0);
}
