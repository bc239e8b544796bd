//! The store and the use-cases against a real PostgreSQL (each test on a fresh database created
//! from `DATABASE_URL` with the real migrations, dropped afterwards).

use collab::model::Role;
use collab::ports::{OpLog, Outbox};
use collab::testing::{ChannelPublisher, TestDb};
use collab::wire::{Broadcast, Envelope};
use collab::{AppError, DocumentId, Limits, PgDocumentStore, ReplicaId, Service, Settings, UserId};
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use rga::{Op, Rga, SiteId, Splice, VersionVector};

fn settings(replica: u16) -> Settings {
    Settings {
        replica: ReplicaId(replica),
        ssn: 1,
        limits: Limits::default(),
        compact_after: 50,
        cache_docs: 8,
    }
}

fn service(
    db: &TestDb,
    replica: u16,
    connections: usize,
) -> Service<PgDocumentStore, ChannelPublisher> {
    Service::new(
        db.store(connections).unwrap(),
        ChannelPublisher::new(),
        settings(replica),
    )
}

fn alice() -> UserId {
    UserId("alice".into())
}

/// A one-splice edit batch.
fn splice(index: usize, delete: usize, insert: impl Into<String>) -> Vec<Splice> {
    vec![Splice {
        index,
        delete,
        insert: insert.into(),
    }]
}

/// A document of alice's with `content`, and a session of hers on it.
async fn alice_doc(
    svc: &Service<PgDocumentStore, ChannelPublisher>,
    content: &str,
) -> (DocumentId, SiteId) {
    let doc = svc
        .create_document(&alice(), "d", Some(content))
        .await
        .unwrap()
        .document;
    let session = svc
        .open_session(doc.id, &alice())
        .await
        .unwrap()
        .session
        .site;
    (doc.id, session)
}

/// Edits `doc` once per number of `numbers`, each inserting "<i> " at the start.
async fn prepend_numbers(
    svc: &Service<PgDocumentStore, ChannelPublisher>,
    doc: DocumentId,
    session: SiteId,
    numbers: std::ops::Range<usize>,
) {
    for i in numbers {
        svc.apply_edits(doc, &alice(), session, None, splice(0, 0, format!("{i} ")))
            .await
            .unwrap();
    }
}

async fn op_rows(db: &TestDb) -> i64 {
    let store = db.store(1).unwrap();
    let client = store.pool().get().await.unwrap();
    client
        .query_one("SELECT count(*) FROM operations", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_on_separate_connections_lose_and_double_nothing() {
    let db = TestDb::new().await.unwrap();
    let first = service(&db, 1, 2);
    let doc = first
        .create_document(&alice(), "shared", Some("fn main() {}\n"))
        .await
        .unwrap()
        .document;
    // Read before the tasks start (they run at once on this multi-threaded runtime).
    let mut all: Vec<Op> = first
        .store()
        .ops_since(doc.id, &VersionVector::new(), 0, 10_000)
        .await
        .unwrap()
        .ops;
    let initial = all.len();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        // Each task is a container of its own: its own pool and cache.
        let svc = service(&db, 1, 1);
        tasks.push(tokio::spawn(async move {
            let session = svc
                .open_session(doc.id, &alice())
                .await
                .unwrap()
                .session
                .site;
            let mut rng = ChaCha8Rng::seed_from_u64(t);
            let mut ops = Vec::new();
            for i in 0..25 {
                let len = svc
                    .get_document(doc.id, &alice())
                    .await
                    .unwrap()
                    .text
                    .chars()
                    .count();
                let index = rng.random_range(0..=len);
                let delete = if index < len && i % 3 == 0 { 1 } else { 0 };
                let edit = Splice {
                    index,
                    delete,
                    insert: format!("<{t}:{i}>"),
                };
                // Some edits against a stale base: no base means "the current text".
                let out = svc
                    .apply_edits(doc.id, &alice(), session, None, vec![edit])
                    .await
                    .unwrap();
                ops.extend(out.ops);
            }
            ops
        }));
    }
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    // An in-memory replica that applied the same ops, in a shuffled order.
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut shuffled = all.clone();
    shuffled.shuffle(&mut rng);
    let mut expected = Rga::new();
    for op in shuffled {
        let a = expected.apply(op).unwrap();
        assert!(a.rejected.is_empty(), "{:?}", a.rejected);
    }
    assert_eq!(expected.pending_len(), 0);
    let fresh = service(&db, 1, 1);
    let stored = fresh.get_document(doc.id, &alice()).await.unwrap();
    assert_eq!(stored.text, expected.text());
    assert_eq!(stored.version, expected.version());
    // Exactly one row per op: no op lost, none doubled.
    assert_eq!(op_rows(&db).await as usize, all.len());
    assert_eq!(
        all.len(),
        initial
            + 8 * 25
            + all
                .iter()
                .filter(|op| matches!(op, Op::Delete { .. }))
                .count()
    );
}

#[tokio::test]
async fn a_redelivered_op_is_ignored_and_a_reused_id_with_other_content_is_a_conflict() {
    let db = TestDb::new().await.unwrap();
    let svc = service(&db, 1, 1);
    let doc = svc
        .create_document(&alice(), "d", None)
        .await
        .unwrap()
        .document;
    let mut rga = Rga::new();
    rga.insert(SiteId(77), 0, "hello").unwrap();
    rga.delete(SiteId(77), 0, 1).unwrap();
    let ops = rga.ops_since(&VersionVector::new());
    let store = svc.store();
    let first = store.append_ops(doc.id, &ops, ReplicaId(1)).await.unwrap();
    assert_eq!((first.inserted, first.duplicates), (2, 0));
    let again = store.append_ops(doc.id, &ops, ReplicaId(1)).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 2));
    let Op::Insert { id, after, .. } = ops[0].clone() else {
        panic!()
    };
    let forged = Op::Insert {
        id,
        after,
        text: "jello".into(),
    };
    let err = store
        .append_ops(doc.id, &[forged], ReplicaId(1))
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Conflict(_)), "{err}");
    let overlapping = Op::Insert {
        id: id.offset(2).unwrap(),
        after: id.offset(1),
        text: "llo".into(),
    };
    assert!(matches!(
        store.append_ops(doc.id, &[overlapping], ReplicaId(1)).await,
        Err(AppError::Conflict(_))
    ));
    assert_eq!(
        op_rows(&db).await,
        2,
        "nothing written by the refused appends"
    );
    assert_eq!(
        svc.get_document(doc.id, &alice()).await.unwrap().text,
        "ello"
    );
}

fn remote(doc: &collab::model::Document, ops: Vec<Op>) -> Envelope {
    Envelope {
        origin: ReplicaId(2),
        body: Broadcast::Ops {
            document: doc.info(),
            ops,
        },
    }
}

#[tokio::test]
async fn ops_waiting_for_their_causes_survive_a_restart_and_apply_when_the_causes_come() {
    let db = TestDb::new().await.unwrap();
    let svc = service(&db, 1, 1);
    let doc = svc
        .create_document(&alice(), "d", Some("ab"))
        .await
        .unwrap()
        .document;
    let base_ops = svc
        .store()
        .ops_since(doc.id, &VersionVector::new(), 0, 100)
        .await
        .unwrap()
        .ops;
    // Replica 2 edits: two ops, the second depends on the first.
    let mut r2 = Rga::new();
    r2.apply_all(base_ops).unwrap();
    let v = r2.version();
    let site = collab::ids::site_id(ReplicaId(2), 1);
    r2.insert(site, 1, "X").unwrap();
    // Another session types right after that X: its op refers to it.
    r2.insert(SiteId(site.0 + 1), 2, "Y").unwrap();
    let ops = r2.ops_since(&v);
    assert_eq!(ops.len(), 2);
    svc.integrate(remote(&doc, vec![ops[1].clone()]))
        .await
        .unwrap();
    assert_eq!(svc.get_document(doc.id, &alice()).await.unwrap().text, "ab");
    drop(svc);
    // A new container: new pool, new cache.
    let svc = service(&db, 1, 1);
    assert_eq!(
        svc.get_document(doc.id, &alice()).await.unwrap().text,
        "ab",
        "the waiting op is not applied"
    );
    svc.integrate(remote(&doc, vec![ops[0].clone()]))
        .await
        .unwrap();
    assert_eq!(
        svc.get_document(doc.id, &alice()).await.unwrap().text,
        "aXYb"
    );
    let client = svc.store().pool().get().await.unwrap();
    let waiting: i64 = client
        .query_one("SELECT count(*) FROM waiting_ops", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(waiting, 0);
    drop(client);
    // Delivered again: nothing changes.
    svc.integrate(remote(&doc, ops)).await.unwrap();
    assert_eq!(
        service(&db, 1, 1)
            .get_document(doc.id, &alice())
            .await
            .unwrap()
            .text,
        "aXYb"
    );
}

#[tokio::test]
async fn compaction_keeps_the_text_and_history_and_catch_up_works_across_it() {
    let db = TestDb::new().await.unwrap();
    let svc = service(&db, 1, 2);
    let (doc_id, session) = alice_doc(&svc, "start\n").await;
    let early = svc.get_document(doc_id, &alice()).await.unwrap();
    // Fewer rows than `compact_after` (50): no snapshot until the forced one.
    prepend_numbers(&svc, doc_id, session, 0..40).await;
    let before = svc.get_document(doc_id, &alice()).await.unwrap();
    let snap = svc
        .compact(doc_id, true)
        .await
        .unwrap()
        .expect("a snapshot is written");
    assert_eq!(snap.version, 1);
    assert_eq!(
        svc.compact(doc_id, true).await.unwrap(),
        None,
        "nothing new to fold"
    );
    for i in 0..5 {
        svc.apply_edits(
            doc_id,
            &alice(),
            session,
            None,
            splice(0, 2, format!("#{i}")),
        )
        .await
        .unwrap();
    }
    svc.compact(doc_id, true)
        .await
        .unwrap()
        .expect("second snapshot");
    let after = service(&db, 1, 1)
        .get_document(doc_id, &alice())
        .await
        .unwrap();
    let history = svc.snapshots(doc_id, &alice()).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        svc.snapshot_text(doc_id, &alice(), 1).await.unwrap(),
        before.text
    );
    assert_eq!(
        svc.snapshot_text(doc_id, &alice(), 2).await.unwrap(),
        after.text
    );
    assert_eq!(history[0].version_vector, before.version);
    // A client that saw the document before both compactions catches up page by page.
    let mut client = Rga::new();
    client
        .apply_all(
            svc.store()
                .ops_since(doc_id, &VersionVector::new(), 0, 1000)
                .await
                .unwrap()
                .ops
                .into_iter()
                .filter(|op| early.version.contains(op.id().id())),
        )
        .unwrap();
    assert_eq!(client.text(), early.text);
    let mut cursor = 0;
    loop {
        let page = svc
            .ops_since(doc_id, &alice(), &early.version, cursor, 7)
            .await
            .unwrap();
        client.apply_all(page.ops).unwrap();
        match page.next_cursor {
            Some(c) => cursor = c,
            None => break,
        }
    }
    assert_eq!(client.text(), after.text);
}

#[tokio::test]
async fn over_limit_batches_and_documents_are_refused_and_write_nothing() {
    let db = TestDb::new().await.unwrap();
    let limits = Limits {
        max_body_bytes: 1 << 20,
        max_batch_ops: 3,
        max_document_chars: 20,
        ..Limits::default()
    };
    let svc = Service::new(
        db.store(1).unwrap(),
        ChannelPublisher::new(),
        Settings {
            limits,
            ..settings(1)
        },
    );
    let (doc_id, session) = alice_doc(&svc, "0123456789").await;
    let rows = op_rows(&db).await;
    let four = vec![
        Splice {
            index: 0,
            delete: 0,
            insert: "a".into()
        };
        4
    ];
    assert!(matches!(
        svc.apply_edits(doc_id, &alice(), session, None, four).await,
        Err(AppError::TooLarge(_))
    ));
    let long = splice(0, 0, "x".repeat(11));
    assert!(matches!(
        svc.apply_edits(doc_id, &alice(), session, None, long).await,
        Err(AppError::TooLarge(_))
    ));
    assert!(matches!(
        svc.create_document(&alice(), "big", Some(&"y".repeat(21)))
            .await,
        Err(AppError::TooLarge(_))
    ));
    assert_eq!(op_rows(&db).await, rows);
    assert_eq!(
        svc.get_document(doc_id, &alice()).await.unwrap().text,
        "0123456789"
    );
    assert_eq!(svc.store().outbox_len().await.unwrap(), 0);
}

#[tokio::test]
async fn a_failed_publish_leaves_the_message_in_the_outbox_for_the_sweep() {
    let db = TestDb::new().await.unwrap();
    let publisher = ChannelPublisher::new();
    let svc = Service::new(db.store(1).unwrap(), publisher.clone(), settings(1));
    let doc = svc
        .create_document(&alice(), "d", Some("x"))
        .await
        .unwrap()
        .document;
    assert_eq!(publisher.take().len(), 1, "creation is broadcast");
    assert_eq!(svc.store().outbox_len().await.unwrap(), 0);
    publisher.set_failing(true);
    let session = svc
        .open_session(doc.id, &alice())
        .await
        .unwrap()
        .session
        .site;
    let out = svc
        .apply_edits(doc.id, &alice(), session, None, splice(1, 0, "y"))
        .await
        .unwrap();
    assert_eq!(
        out.text.as_deref(),
        Some("xy"),
        "the edit is acknowledged although SNS failed"
    );
    assert_eq!(svc.store().outbox_len().await.unwrap(), 2);
    publisher.set_failing(false);
    // The failed rows back off before the sweep takes them again.
    assert_eq!(svc.sweep_outbox(0).await.unwrap().published, 0);
    end_backoff(&db).await;
    assert_eq!(svc.sweep_outbox(0).await.unwrap().published, 2);
    assert_eq!(svc.store().outbox_len().await.unwrap(), 0);
    let sent = publisher.take();
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .any(|m| m.body.contains("\"type\":\"ops\"") && m.body.contains("\"y\""))
    );
}

#[tokio::test]
async fn roles_gate_every_use_case_and_strangers_see_nothing() {
    let db = TestDb::new().await.unwrap();
    let svc = service(&db, 1, 1);
    let (bob, carol, dave) = (
        UserId("bob".into()),
        UserId("carol".into()),
        UserId("dave".into()),
    );
    let doc = svc
        .create_document(&alice(), "d", Some("x"))
        .await
        .unwrap()
        .document;
    svc.set_collaborator(doc.id, &alice(), &bob, Some(Role::Editor))
        .await
        .unwrap();
    svc.set_collaborator(doc.id, &alice(), &carol, Some(Role::Viewer))
        .await
        .unwrap();
    assert_eq!(
        svc.get_document(doc.id, &carol).await.unwrap().role,
        Role::Viewer
    );
    assert!(matches!(
        svc.open_session(doc.id, &carol).await,
        Err(AppError::NotFound(_))
    ));
    assert!(matches!(
        svc.get_document(doc.id, &dave).await,
        Err(AppError::NotFound(_))
    ));
    assert!(matches!(
        svc.rename_document(doc.id, &bob, "nope").await,
        Err(AppError::NotFound(_))
    ));
    let bob_session = svc.open_session(doc.id, &bob).await.unwrap().session.site;
    let alice_session = svc
        .open_session(doc.id, &alice())
        .await
        .unwrap()
        .session
        .site;
    assert!(matches!(
        svc.apply_edits(doc.id, &bob, alice_session, None, splice(0, 0, "!"))
            .await,
        Err(AppError::Forbidden(_))
    ));
    svc.apply_edits(doc.id, &bob, bob_session, None, splice(1, 0, "y"))
        .await
        .unwrap();
    assert_eq!(svc.list_documents(&bob).await.unwrap().len(), 1);
    assert_eq!(svc.list_documents(&dave).await.unwrap().len(), 0);
    svc.set_collaborator(doc.id, &alice(), &bob, None)
        .await
        .unwrap();
    assert!(matches!(
        svc.get_document(doc.id, &bob).await,
        Err(AppError::NotFound(_))
    ));
    assert_eq!(svc.collaborators(doc.id, &carol).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_stale_warm_container_falls_back_to_the_locked_path_and_loses_nothing() {
    let db = TestDb::new().await.unwrap();
    let (a, b) = (service(&db, 1, 1), service(&db, 1, 1));
    let doc = a
        .create_document(&alice(), "d", Some("ab"))
        .await
        .unwrap()
        .document;
    let (sa, sb) = (
        a.open_session(doc.id, &alice()).await.unwrap().session.site,
        b.open_session(doc.id, &alice()).await.unwrap().session.site,
    );
    // Both containers are warm; B writes, so A's cached replica is now behind.
    b.apply_edits(doc.id, &alice(), sb, None, splice(2, 0, "B"))
        .await
        .unwrap();
    let out = a
        .apply_edits(doc.id, &alice(), sa, None, splice(0, 0, "A"))
        .await
        .unwrap();
    assert_eq!(
        out.text.as_deref(),
        Some("AabB"),
        "A saw B's edit before writing its own"
    );
    assert_eq!(b.get_document(doc.id, &alice()).await.unwrap().text, "AabB");
    assert_eq!(op_rows(&db).await, 3);
}

#[tokio::test]
async fn local_writes_compact_once_the_tail_passes_the_threshold() {
    let db = TestDb::new().await.unwrap();
    let svc = service(&db, 1, 2);
    let (doc_id, session) = alice_doc(&svc, "start\n").await;
    prepend_numbers(&svc, doc_id, session, 0..40).await;
    assert!(svc.snapshots(doc_id, &alice()).await.unwrap().is_empty());
    // A single replica (no integrate) compacts on its own writes too.
    prepend_numbers(&svc, doc_id, session, 40..60).await;
    let history = svc.snapshots(doc_id, &alice()).await.unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    let text = svc.snapshot_text(doc_id, &alice(), 1).await.unwrap();
    assert!(text.ends_with("0 start\n"), "{text:?}");
    let now = svc.get_document(doc_id, &alice()).await.unwrap();
    assert!(now.text.starts_with("59 "));
}

#[tokio::test]
async fn a_catch_up_page_stops_before_its_bytes_pass_the_cap_and_the_next_page_goes_on() {
    let db = TestDb::new().await.unwrap();
    let svc = service(&db, 1, 1);
    let doc = svc
        .create_document(&alice(), "big", None)
        .await
        .unwrap()
        .document;
    // Five ops of a MiB each: more than one page holds.
    let mut rga = Rga::new();
    for i in 0..5 {
        let chunk: String = std::iter::repeat_n(char::from(b'a' + i as u8), 1 << 20).collect();
        rga.insert(SiteId(77), 0, &chunk).unwrap();
    }
    let ops = rga.ops_since(&VersionVector::new());
    assert_eq!(ops.len(), 5);
    let store = svc.store();
    store.append_ops(doc.id, &ops, ReplicaId(1)).await.unwrap();
    let (mut cursor, mut pages, mut got) = (Some(0), 0, Vec::new());
    while let Some(c) = cursor {
        let page = store
            .ops_since(doc.id, &VersionVector::new(), c, 10_000)
            .await
            .unwrap();
        let bytes = serde_json::to_vec(&page.ops).unwrap().len();
        assert!(
            bytes <= collab::model::MAX_PAGE_BYTES + 2,
            "a page of {bytes} bytes"
        );
        assert!(!page.ops.is_empty());
        got.extend(page.ops);
        cursor = page.next_cursor;
        pages += 1;
    }
    assert!(pages >= 2, "one page held {} MiB", 5);
    assert_eq!(got, ops);
}

/// Ends every outbox row's backoff (as if its time had passed).
async fn end_backoff(db: &TestDb) {
    let (client, conn) = db.config().connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "UPDATE outbox SET claimed_until = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn the_sweep_stops_at_the_first_failure_backs_off_and_parks_a_row_that_keeps_failing() {
    let db = TestDb::new().await.unwrap();
    let publisher = ChannelPublisher::new();
    let svc = Service::new(db.store(1).unwrap(), publisher.clone(), settings(1));
    publisher.set_failing(true);
    let (doc, session) = alice_doc(&svc, "x").await;
    prepend_numbers(&svc, doc, session, 0..3).await;
    let rows = svc.store().outbox_len().await.unwrap();
    assert_eq!(rows, 5, "creation, session, three edits");
    let health = svc.store().outbox_health().await.unwrap();
    assert_eq!((health.unsent, health.parked), (5, 0));
    assert!(health.oldest_unsent_secs >= 0.0);

    // SNS is down: each sweep makes one PublishBatch call for the claimed rows (not one per
    // row) and stops, not looping. (The request already failed each row once.)
    let mut last = 0;
    for round in 1..collab::ports::MAX_OUTBOX_ATTEMPTS - 1 {
        end_backoff(&db).await;
        let before = publisher.calls();
        let sweep = svc.sweep_outbox(0).await.unwrap();
        assert!(sweep.stopped);
        assert_eq!(sweep.published, 0);
        assert_eq!(publisher.calls() - before, 1, "round {round}");
        // Without the backoff ending, the failed row is not taken again at once.
        let before = publisher.calls();
        let again = svc.sweep_outbox(0).await.unwrap();
        assert!(publisher.calls() - before <= 1);
        last = again.health.parked;
    }
    assert_eq!(last, 0, "nothing parked before the limit");
    end_backoff(&db).await;
    let sweep = svc.sweep_outbox(0).await.unwrap();
    assert!(sweep.health.parked >= 1, "{sweep:?}");
    // A parked row is kept and reported, and never claimed again.
    publisher.set_failing(false);
    end_backoff(&db).await;
    let sweep = svc.sweep_outbox(0).await.unwrap();
    assert_eq!(sweep.health.unsent, 0, "{sweep:?}");
    assert_eq!(
        sweep.published as i64 + sweep.health.parked,
        5,
        "every row is either published or parked"
    );
    assert_eq!(svc.store().outbox_len().await.unwrap(), sweep.health.parked);
}

#[tokio::test]
async fn the_sweep_republishes_a_backlog_ten_rows_to_a_call() {
    let db = TestDb::new().await.unwrap();
    let publisher = ChannelPublisher::new();
    let svc = Service::new(db.store(1).unwrap(), publisher.clone(), settings(1));
    publisher.set_failing(true);
    let (doc, session) = alice_doc(&svc, "x").await;
    prepend_numbers(&svc, doc, session, 0..23).await;
    assert_eq!(svc.store().outbox_len().await.unwrap(), 25);
    publisher.set_failing(false);
    end_backoff(&db).await;
    publisher.take();
    let before = publisher.calls();
    let sweep = svc.sweep_outbox(0).await.unwrap();
    assert_eq!((sweep.published, sweep.stopped), (25, false), "{sweep:?}");
    assert_eq!(
        publisher.calls() - before,
        3,
        "25 rows in calls of 10, 10 and 5"
    );
    assert_eq!(publisher.take().len(), 25);
    assert_eq!(svc.store().outbox_len().await.unwrap(), 0);
}

#[tokio::test]
async fn local_renames_and_role_changes_win_over_stamps_from_a_clock_ahead() {
    let db = TestDb::new().await.unwrap();
    let publisher = ChannelPublisher::new();
    let svc = Service::new(db.store(1).unwrap(), publisher.clone(), settings(1));
    let doc = svc
        .create_document(&alice(), "a.rs", None)
        .await
        .unwrap()
        .document;
    let bob = UserId("bob".into());
    // Replica 2, whose clock runs an hour ahead, renamed the document and made bob a viewer.
    let ahead = doc.title_stamp.0 + 3_600_000;
    let mut info = doc.info();
    info.title = "theirs.rs".into();
    info.title_stamp = ahead;
    info.title_replica = ReplicaId(2);
    svc.integrate(Envelope {
        origin: ReplicaId(2),
        body: Broadcast::Document {
            document: info.clone(),
        },
    })
    .await
    .unwrap();
    let change = collab::model::CollaboratorChange {
        document_id: doc.id,
        user_id: bob.clone(),
        role: Some(Role::Viewer),
        stamp: ahead,
        replica: ReplicaId(2),
    };
    svc.integrate(Envelope {
        origin: ReplicaId(2),
        body: Broadcast::Collaborator {
            document: info,
            change,
        },
    })
    .await
    .unwrap();
    assert_eq!(
        svc.get_document(doc.id, &alice())
            .await
            .unwrap()
            .document
            .title,
        "theirs.rs"
    );
    publisher.take();

    // Here, later in real time but earlier by this clock, the owner renames and promotes bob:
    // both apply, and their broadcasts carry stamps above the stored ones, so that replica 2
    // applies them too.
    let renamed = svc
        .rename_document(doc.id, &alice(), "mine.rs")
        .await
        .unwrap();
    assert_eq!(renamed.title, "mine.rs");
    assert!(renamed.title_stamp.0 > ahead);
    let list = svc
        .set_collaborator(doc.id, &alice(), &bob, Some(Role::Editor))
        .await
        .unwrap();
    assert!(
        list.iter()
            .any(|c| c.user_id == bob && c.role == Role::Editor),
        "{list:?}"
    );
    let sent = publisher.take();
    let stamps: Vec<i64> = sent
        .iter()
        .map(|m| {
            let v: serde_json::Value = serde_json::from_str(&m.body).unwrap();
            v["change"]["stamp"]
                .as_i64()
                .or(v["document"]["title_stamp"].as_i64())
                .unwrap()
        })
        .collect();
    assert_eq!(stamps.len(), 2, "{sent:?}");
    assert!(stamps.iter().all(|&s| s > ahead), "{stamps:?} vs {ahead}");
}
