//! Every wait is bounded: a stalled SNS does not hold an edit (it is committed, answered, and its
//! broadcast stays in the outbox), and a stalled PostgreSQL makes a request fail as unavailable
//! instead of hanging. The `timeout` around each call only keeps a regression from hanging the
//! test run; the assertions are about the outcome.

use std::time::Duration;

use collab::ports::Outbox;
use collab::testing::{ChannelPublisher, RoundTrips, TestDb, stalled_server};
use collab::{
    AppError, Limits, PgDocumentStore, ReplicaId, Service, Settings, SnsPublisher, UserId, Waits,
};
use rga::Splice;

const GUARD: Duration = Duration::from_secs(20);

fn settings() -> Settings {
    Settings {
        replica: ReplicaId(1),
        ssn: 1,
        limits: Limits::default(),
        compact_after: 1000,
        cache_docs: 8,
    }
}

fn alice() -> UserId {
    UserId("alice".into())
}

#[tokio::test]
async fn an_edit_answers_while_sns_stalls_and_its_broadcast_waits_in_the_outbox() {
    let db = TestDb::new().await.unwrap();
    let sns = stalled_server().await;
    let creds = aws_sdk_sns::config::Credentials::new("test", "test", None, None, "tests");
    let conf = collab::config::aws_loader("us-east-1", Some(&format!("http://{sns}")))
        .credentials_provider(creds)
        .load()
        .await;
    let publisher = SnsPublisher::new(
        aws_sdk_sns::Client::new(&conf),
        "arn:aws:sns:us-east-1:123456789012:collab-ops",
    );
    let svc = Service::new(db.store(2).unwrap(), publisher, settings());
    let created = tokio::time::timeout(GUARD, svc.create_document(&alice(), "d", Some("x")))
        .await
        .expect("creating a document hung on SNS")
        .unwrap();
    let doc = created.document.id;
    let session = svc.open_session(doc, &alice()).await.unwrap().session.site;
    let edit = Splice {
        index: 1,
        delete: 0,
        insert: "y".into(),
    };
    let out = tokio::time::timeout(
        GUARD,
        svc.apply_edits(doc, &alice(), session, None, vec![edit]),
    )
    .await
    .expect("an edit hung on SNS")
    .unwrap();
    assert_eq!(out.ops.len(), 1);
    assert_eq!(
        svc.get_document(doc, &alice()).await.unwrap().text,
        "xy",
        "the edit is committed"
    );
    // Every broadcast (the creation, the session, the edit) waits for the sweep.
    assert_eq!(svc.store().outbox_len().await.unwrap(), 3);
}

#[tokio::test]
async fn a_stalled_database_makes_requests_fail_as_unavailable_not_hang() {
    let pg = stalled_server().await;
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(pg.port())
        .user("collab")
        .dbname("collab");
    let waits = Waits {
        connect: Duration::from_millis(300),
        pool_wait: Duration::from_millis(300),
        statement: Duration::from_secs(1),
        idle_check: Duration::from_secs(10),
    };
    let store = PgDocumentStore::connect_with(&config, 1, waits).unwrap();
    let svc = Service::new(store, ChannelPublisher::new(), settings());
    for _ in 0..3 {
        let err = tokio::time::timeout(GUARD, svc.list_documents(&alice()))
            .await
            .expect("a request hung on a stalled database")
            .unwrap_err();
        assert!(matches!(err, AppError::Unavailable(_)), "{err:?}");
        assert_eq!(err.status(), 503);
    }
}

#[tokio::test]
async fn a_statement_that_runs_too_long_is_cancelled_by_the_server() {
    let db = TestDb::new().await.unwrap();
    let waits = Waits {
        statement: Duration::from_millis(200),
        ..Waits::default()
    };
    let store = PgDocumentStore::connect_with(db.config(), 1, waits).unwrap();
    let client = store.pool().get().await.unwrap();
    let err = tokio::time::timeout(GUARD, client.execute("SELECT pg_sleep(30)", &[]))
        .await
        .expect("the statement was not cancelled")
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{err}"
    );
}

#[tokio::test]
async fn a_pooled_connection_that_died_silently_is_replaced_not_waited_on() {
    let db = TestDb::new().await.unwrap();
    let proxy = RoundTrips::start(&db).await;
    let waits = Waits {
        connect: Duration::from_millis(500),
        idle_check: Duration::from_millis(100),
        ..Waits::default()
    };
    let store = PgDocumentStore::connect_with(proxy.config(), 1, waits).unwrap();
    let svc = Service::new(store, ChannelPublisher::new(), settings());
    svc.create_document(&alice(), "d", Some("x")).await.unwrap();
    // The container freezes; meanwhile its connection's flow is dropped without a FIN.
    proxy.silence_open_connections();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let docs = tokio::time::timeout(GUARD, svc.list_documents(&alice()))
        .await
        .expect("a request waited on a dead connection")
        .unwrap();
    assert_eq!(docs.len(), 1);
}

#[tokio::test]
async fn a_server_going_away_is_unavailable_not_an_internal_error() {
    // What every session gets when PostgreSQL restarts (`admin_shutdown`), raised by the real
    // server: the request answers 503 with Retry-After and a delivery is retried.
    let db = TestDb::new().await.unwrap();
    let store = PgDocumentStore::connect(db.config(), 1).unwrap();
    let client = store.pool().get().await.unwrap();
    for code in [
        "admin_shutdown",
        "serialization_failure",
        "too_many_connections",
    ] {
        let err = client
            .batch_execute(&format!(
                "DO $$ BEGIN RAISE EXCEPTION 'going away' USING ERRCODE = '{code}'; END $$"
            ))
            .await
            .unwrap_err();
        let err = AppError::from(err);
        assert!(matches!(err, AppError::Unavailable(_)), "{code}: {err:?}");
        assert_eq!(err.status(), 503);
    }
    let err = client
        .batch_execute(
            "DO $$ BEGIN RAISE EXCEPTION 'bug' USING ERRCODE = 'undefined_column'; END $$",
        )
        .await
        .unwrap_err();
    assert!(matches!(AppError::from(err), AppError::Internal(_)));
}
