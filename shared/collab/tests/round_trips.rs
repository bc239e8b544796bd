//! What a request costs in PostgreSQL round trips, counted by a proxy between the store and
//! the server, on a warm container (its cache and connections already up). The README states
//! these numbers; the test fails above them.

use collab::ports::Outbox;
use collab::testing::{ChannelPublisher, RoundTrips, TestDb};
use collab::{Limits, PgDocumentStore, ReplicaId, Service, Settings, UserId};
use rga::Splice;

fn alice() -> UserId {
    UserId("alice".into())
}

async fn warm() -> (
    TestDb,
    RoundTrips,
    Service<PgDocumentStore, ChannelPublisher>,
    ChannelPublisher,
) {
    let db = TestDb::new().await.unwrap();
    let proxy = RoundTrips::start(&db).await;
    let settings = Settings {
        replica: ReplicaId(1),
        ssn: 1,
        limits: Limits::default(),
        compact_after: 100_000,
        cache_docs: 8,
    };
    let store = PgDocumentStore::connect(proxy.config(), 1).unwrap();
    let publisher = ChannelPublisher::new();
    let svc = Service::new(store, publisher.clone(), settings);
    (db, proxy, svc, publisher)
}

fn splice(index: usize, insert: &str) -> Vec<Splice> {
    vec![Splice {
        index,
        delete: 0,
        insert: insert.into(),
    }]
}

/// Round trips of the median of `n` runs of `f`.
async fn median<F: AsyncFnMut()>(proxy: &RoundTrips, n: usize, mut f: F) -> u64 {
    let mut counts = Vec::new();
    for _ in 0..n {
        let before = proxy.count();
        f().await;
        counts.push(proxy.count() - before);
    }
    counts.sort();
    counts[n / 2]
}

#[tokio::test]
async fn a_warm_edit_and_a_read_cost_what_the_readme_says() {
    let (_db, proxy, svc, publisher) = warm().await;
    let doc = svc
        .create_document(&alice(), "d", Some("fn main() {}\n"))
        .await
        .unwrap()
        .document
        .id;
    let site = svc.open_session(doc, &alice()).await.unwrap().session.site;
    // Warm: the document cached, the statements prepared on the connection.
    for i in 0..3 {
        svc.apply_edits(doc, &alice(), site, None, splice(i, "x"))
            .await
            .unwrap();
    }
    let mut i = 3;
    let edit = median(&proxy, 9, async || {
        svc.apply_edits_keyed(doc, &alice(), site, None, splice(i, "y"), None, false)
            .await
            .unwrap();
        i += 1;
    })
    .await;
    let read = median(&proxy, 9, async || {
        svc.get_document(doc, &alice()).await.unwrap();
    })
    .await;
    println!("round trips: index edit {edit}, read {read}");
    // Refused requests leave the cache alone: a stranger's read and a bad edit, then alice's
    // read still costs one round trip.
    let stranger = svc.get_document(doc, &UserId("mallory".into())).await;
    assert!(
        matches!(stranger, Err(collab::AppError::NotFound(_))),
        "{stranger:?}"
    );
    let before = proxy.count();
    let bad = svc
        .apply_edits_keyed(
            doc,
            &alice(),
            site,
            None,
            splice(1_000_000, "z"),
            None,
            false,
        )
        .await;
    let refused = proxy.count() - before;
    assert!(bad.is_err(), "an edit past the end is refused");
    // The authorization, then the locked retry (begin, lock and tail, rollback) on the kept
    // cache: never the whole document again.
    assert!(refused <= 4, "a refused edit took {refused} round trips");
    // The very next requests, one each (a median would hide one reload): the cache was kept
    // by both paths, the optimistic one and the locked one that decided the refusal again.
    let before = proxy.count();
    svc.get_document(doc, &alice()).await.unwrap();
    let after = proxy.count() - before;
    assert!(
        after <= READ,
        "after refusals a read took {after} round trips"
    );
    let before = proxy.count();
    svc.apply_edits_keyed(doc, &alice(), site, None, splice(0, "w"), None, false)
        .await
        .unwrap();
    let next_edit = proxy.count() - before;
    assert!(
        next_edit <= EDIT,
        "after a refusal an edit took {next_edit} round trips"
    );
    // Each edit's statement deleted the rows published before it: only the last edit's row is
    // left, published and waiting for the next write (or the sweep) to delete it.
    let left = svc.store().outbox_health().await.unwrap().unsent;
    assert_eq!(
        left, 1,
        "published outbox rows were not deleted by the next write"
    );
    let published = publisher.take().len();
    assert_eq!(
        published,
        2 + 13,
        "the document, the session and every edit were published"
    );
    assert!(edit <= EDIT, "an index edit took {edit} round trips");
    assert!(read <= READ, "a read took {read} round trips");
}

/// The numbers in the README ("Round trips"): an edit is the authorization and session check
/// (one statement) and the append with its outbox row, which also deletes the rows the
/// container published before (one statement); a read is the authorization and the cache's tail
/// check (three statements pipelined on one connection).
const EDIT: u64 = 2;
const READ: u64 = 1;

#[tokio::test]
async fn containers_taking_turns_on_one_document_still_pay_two_round_trips_an_edit() {
    // Two warm containers of one replica write the same document in turns: each finds the log
    // moved by the other at every edit. The edit reads the tail with its session check and
    // writes after whatever came since, so it neither reloads the document nor takes the lock.
    let (db, proxy, a, _) = warm().await;
    let b = Service::new(
        PgDocumentStore::connect(proxy.config(), 1).unwrap(),
        ChannelPublisher::new(),
        a.settings().clone(),
    );
    let doc = a
        .create_document(&alice(), "d", Some("\n"))
        .await
        .unwrap()
        .document
        .id;
    let sa = a.open_session(doc, &alice()).await.unwrap().session.site;
    let sb = b.open_session(doc, &alice()).await.unwrap().session.site;
    // Warm: each container's statements prepared (with and without published rows to delete).
    for _ in 0..2 {
        for (svc, site) in [(&a, sa), (&b, sb)] {
            svc.apply_edits(doc, &alice(), site, None, splice(0, "w"))
                .await
                .unwrap();
        }
    }
    let mut worst = 0;
    for i in 0..20 {
        let (svc, site, c) = if i % 2 == 0 {
            (&a, sa, "a")
        } else {
            (&b, sb, "b")
        };
        let before = proxy.count();
        svc.apply_edits_keyed(doc, &alice(), site, None, splice(0, c), None, false)
            .await
            .unwrap();
        worst = worst.max(proxy.count() - before);
    }
    assert!(
        worst <= EDIT,
        "an edit after the other container's took {worst} round trips"
    );
    // Nothing was lost or doubled: a fresh container reads every edit once.
    let fresh = Service::new(
        db.store(1).unwrap(),
        ChannelPublisher::new(),
        a.settings().clone(),
    );
    let text = fresh.get_document(doc, &alice()).await.unwrap().text;
    assert_eq!(text.len(), 1 + 4 + 20, "{text:?}");
    assert_eq!(text.matches('a').count(), 10);
    assert_eq!(text.matches('b').count(), 10);
    for svc in [&a, &b] {
        assert_eq!(svc.get_document(doc, &alice()).await.unwrap().text, text);
    }
}
