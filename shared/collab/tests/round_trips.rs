//! What a request costs in PostgreSQL round trips, counted by a proxy between the store and
//! the server, on a warm container (its cache and connections already up). The README states
//! these numbers; the test fails above them.

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
    let svc = Service::new(store, ChannelPublisher::new(), settings);
    (db, proxy, svc)
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
    let (_db, proxy, svc) = warm().await;
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
    assert!(edit <= EDIT, "an index edit took {edit} round trips");
    assert!(read <= READ, "a read took {read} round trips");
}

/// The numbers in the README ("Round trips"): an edit is the authorization and session check
/// (one statement), the append with its outbox row (one statement), and the outbox row's delete
/// once SNS took it; a read is the authorization, then the cache's tail check (two statements
/// pipelined).
const EDIT: u64 = 3;
const READ: u64 = 2;
