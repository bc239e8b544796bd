//! The waiting buffer under a flood (issue 16): a client's ops that wait for their causes are
//! capped per session, and one replica's sessions together hold at most their group's share of
//! the buffer, so ops from another replica still wait and apply. Against a fresh PostgreSQL.

use collab::ids::site_id;
use collab::model::Role;
use collab::testing::{ChannelPublisher, TestDb};
use collab::wire::{Broadcast, Envelope};
use collab::{AppError, Limits, PgDocumentStore, ReplicaId, Service, Settings, UserId};
use rga::{Op, S4Vector, SiteId};

fn small_limits() -> Limits {
    let mut crdt = Limits::crdt_default();
    crdt.max_pending = 40;
    crdt.max_pending_per_site = 10;
    crdt.max_pending_per_group = 20;
    Limits {
        max_waiting_per_session: 5,
        crdt,
        ..Limits::default()
    }
}

fn service(store: PgDocumentStore) -> Service<PgDocumentStore, ChannelPublisher> {
    Service::new(
        store,
        ChannelPublisher::new(),
        Settings {
            replica: ReplicaId(1),
            ssn: 1,
            limits: small_limits(),
            compact_after: 1000,
            cache_docs: 8,
        },
    )
}

/// An insert of `site` at `seq` at the head of the text; waits until `seq - 1` arrives.
fn insert(site: SiteId, seq: u64, text: &str) -> Op {
    Op::Insert {
        id: S4Vector {
            ssn: 1,
            sum: 1000 + seq,
            sid: site,
            seq,
        },
        after: None,
        text: text.into(),
    }
}

#[tokio::test]
async fn a_client_flooding_its_waiting_ops_cannot_block_a_remote_op() {
    let db = TestDb::new().await.unwrap();
    let svc = service(db.store(2).unwrap());
    let alice = UserId("alice".into());
    let doc = svc
        .create_document(&alice, "flood.rs", Some("x"))
        .await
        .unwrap();
    let id = doc.document.id;

    // One session may leave at most 5 ops waiting: a sixth is refused, nothing written.
    let s = svc.open_session(id, &alice).await.unwrap().session.site;
    let six: Vec<Op> = (2..8).map(|seq| insert(s, seq, "w")).collect();
    let err = svc.apply_ops(id, &alice, s, six).await.unwrap_err();
    assert!(matches!(err, AppError::TooLarge(_)), "{err}");

    // Sessions of replica 1 flood with 5 waiting ops each, until the group's share (20) is
    // used up; the buffer (40) is not full.
    let mut accepted = 0;
    let mut refused = None;
    for _ in 0..8 {
        let s = svc.open_session(id, &alice).await.unwrap().session.site;
        let five: Vec<Op> = (2..7).map(|seq| insert(s, seq, "w")).collect();
        match svc.apply_ops(id, &alice, s, five).await {
            Ok(o) => {
                assert_eq!(o.pending.len(), 5);
                accepted += 5;
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert_eq!(accepted, 20);
    let refused = refused.expect("the group's share was used up").to_string();
    assert!(refused.contains("site group"), "{refused}");

    // Replica 2's ops arrive out of order: the later one waits (in the other half of the
    // buffer), and both apply when its cause arrives.
    let (document, _) = svc.authorize(id, &alice, Role::Viewer).await.unwrap();
    let remote = site_id(ReplicaId(2), 1);
    // "early " holds seqs 1 to 6: the op after it is seq 7.
    for op in [insert(remote, 7, "late "), insert(remote, 1, "early ")] {
        svc.integrate(Envelope {
            origin: ReplicaId(2),
            body: Broadcast::Ops {
                document: document.info(),
                ops: vec![op],
            },
        })
        .await
        .unwrap();
    }
    let text = svc.get_document(id, &alice).await.unwrap().text;
    assert!(
        text.contains("late ") && text.contains("early "),
        "the remote ops applied: {text:?}"
    );
}

#[tokio::test]
async fn a_clients_ops_that_wait_too_long_expire_in_the_sweep_and_free_their_share() {
    let db = TestDb::new().await.unwrap();
    let svc = service(db.store(2).unwrap());
    let alice = UserId("alice".into());
    let id = svc
        .create_document(&alice, "expiry.rs", Some("x"))
        .await
        .unwrap()
        .document
        .id;
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let s = svc.open_session(id, &alice).await.unwrap().session.site;
        let five: Vec<Op> = (2..7).map(|seq| insert(s, seq, "w")).collect();
        svc.apply_ops(id, &alice, s, five).await.unwrap();
        sessions.push(s);
    }
    // A remote op of replica 2 waits too.
    let (document, _) = svc.authorize(id, &alice, Role::Viewer).await.unwrap();
    let remote = site_id(ReplicaId(2), 1);
    svc.integrate(Envelope {
        origin: ReplicaId(2),
        body: Broadcast::Ops {
            document: document.info(),
            ops: vec![insert(remote, 7, "late ")],
        },
    })
    .await
    .unwrap();
    // The group's share is used up.
    let s = svc.open_session(id, &alice).await.unwrap().session.site;
    let five: Vec<Op> = (2..7).map(|seq| insert(s, seq, "w")).collect();
    assert!(svc.apply_ops(id, &alice, s, five.clone()).await.is_err());
    // Two hours pass for everything that waits.
    let (client, conn) = db.config().connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "UPDATE waiting_ops SET received_at = now() - interval '2 hours'",
            &[],
        )
        .await
        .unwrap();
    let sweep = svc.sweep_outbox(0).await.unwrap();
    assert_eq!(sweep.expired_waiting, 1, "one document had expired ops");
    let left: Vec<i64> = client
        .query("SELECT sid FROM waiting_ops", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        left,
        vec![remote.0 as i64],
        "only the remote op still waits"
    );
    // The share is free again, and the remote op still applies when its cause comes.
    assert_eq!(
        svc.apply_ops(id, &alice, s, five)
            .await
            .unwrap()
            .pending
            .len(),
        5
    );
    svc.integrate(Envelope {
        origin: ReplicaId(2),
        body: Broadcast::Ops {
            document: document.info(),
            ops: vec![insert(remote, 1, "early ")],
        },
    })
    .await
    .unwrap();
    let text = svc.get_document(id, &alice).await.unwrap().text;
    assert!(
        text.contains("late ") && text.contains("early "),
        "{text:?}"
    );
}
