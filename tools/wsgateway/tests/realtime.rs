//! The realtime function through the local gateway, against a fresh PostgreSQL: two editors see
//! each other's edits and presence; an HTTP edit reaches both sockets; bad tokens and strangers
//! are refused; a vanished connection is forgotten on the next push; an oversized message is
//! closed with 1009; a socket on replica 2 receives an edit made on replica 1.

use std::sync::Arc;
use std::time::Duration;

use api::{App, AuthConfig};
use collab::adapters::ApiGatewayPoster;
use collab::model::Connection;
use collab::ports::{Connections, Documents};
use collab::service::{Sockets, push_hook};
use collab::testing::{ChannelPublisher, TestDb};
use collab::wire::Outbound;
use collab::{DocumentId, Limits, PgDocumentStore, ReplicaId, Service, Settings, UserId};
use futures_util::{SinkExt, StreamExt};
use realtime::Realtime;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wsgateway::{Gateway, router as gateway_router};

const SECRET: &[u8] = b"realtime-test-secret";
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One replica with its realtime function behind a local gateway and an api container.
struct Node {
    _db: TestDb,
    store: PgDocumentStore,
    api: Arc<App<ChannelPublisher>>,
    published: ChannelPublisher,
    /// The integrate container's use-cases, with their push hook.
    integrate: Service<PgDocumentStore, ChannelPublisher>,
    ws_url: String,
}

/// Delivers what `from` published to `to`'s integrate use-case, as SNS would.
async fn deliver(from: &Node, to: &Node) {
    let messages: Vec<Outbound> = from.published.take();
    for m in messages {
        to.integrate
            .integrate(serde_json::from_str(&m.body).unwrap())
            .await
            .unwrap();
    }
}

fn sdk() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("test", "test", None, None, "tests"),
            ),
        )
        .behavior_version(aws_config::BehaviorVersion::latest())
        .http_client(collab::config::https_client())
        .build()
}

async fn node(replica: u16) -> Node {
    let db = TestDb::new().await.expect("PostgreSQL for tests");
    let store = db.store(4).unwrap();
    let settings = Settings {
        replica: ReplicaId(replica),
        ssn: 1,
        limits: Limits::default(),
        compact_after: 1000,
        cache_docs: 8,
    };
    let published = ChannelPublisher::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let poster = ApiGatewayPoster::from_sdk(&sdk(), &format!("http://{addr}/dev"));
    let hook = push_hook(store.clone(), poster.clone());
    let realtime = Arc::new(Realtime {
        sockets: Sockets::new(
            Service::new(store.clone(), published.clone(), settings.clone())
                .with_push(hook.clone()),
            poster,
        ),
        local_secret: Some(SECRET.to_vec()),
        oidc: None,
    });
    let gateway = Gateway::new(
        Arc::new(move |event| {
            let realtime = realtime.clone();
            async move { realtime.handle_json(event).await }
        }),
        "dev",
        &addr.to_string(),
    );
    tokio::spawn(async move { axum::serve(listener, gateway_router(gateway)).await });
    let api = App::new(
        Service::new(store.clone(), published.clone(), settings.clone()).with_push(hook.clone()),
        AuthConfig::default(),
    );
    let integrate = Service::new(store.clone(), published.clone(), settings).with_push(hook);
    Node {
        _db: db,
        store,
        api,
        published,
        integrate,
        ws_url: format!("ws://{addr}/"),
    }
}

async fn http(
    node: &Node,
    user: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    api::testing::send(
        &node.api,
        &api::testing::apigw_event(method, path, "", body.as_ref(), user),
    )
    .await
}

async fn connect(
    node: &Node,
    doc: &str,
    user: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let token = collab::auth::issue_local_token(SECRET, user, 600);
    let (ws, _) =
        tokio_tungstenite::connect_async(format!("{}?document={doc}&token={token}", node.ws_url))
            .await?;
    Ok(ws)
}

/// The next JSON message of `type`, skipping others; fails after a few seconds.
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} message within 10 s"))
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == kind {
                return v;
            }
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn document(node: &Node) -> (String, u64, u64) {
    let (s, d) = http(
        node,
        "alice",
        "POST",
        "/documents",
        Some(json!({"title": "live.rs", "content": "fn main() {}\n"})),
    )
    .await;
    assert_eq!(s, 201, "{d}");
    let id = d["id"].as_str().unwrap().to_owned();
    http(
        node,
        "alice",
        "PUT",
        &format!("/documents/{id}/collaborators/bob"),
        Some(json!({"role": "editor"})),
    )
    .await;
    let (_, a) = http(
        node,
        "alice",
        "POST",
        &format!("/documents/{id}/sessions"),
        None,
    )
    .await;
    let (_, b) = http(
        node,
        "bob",
        "POST",
        &format!("/documents/{id}/sessions"),
        None,
    )
    .await;
    (
        id,
        a["session"].as_u64().unwrap(),
        b["session"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_editors_see_each_others_edits_presence_and_http_edits() {
    let node = node(1).await;
    let (id, sa, _) = document(&node).await;
    let mut a = connect(&node, &id, "alice").await.unwrap();
    let mut b = connect(&node, &id, "bob").await.unwrap();
    send(&mut a, json!({"type": "edits", "session": sa, "edits": [{"index": 0, "insert": "// hi\n"}], "request_id": "r1"})).await;
    let ack = next_of(&mut a, "ack").await;
    assert_eq!(ack["request_id"], "r1");
    let pushed = next_of(&mut b, "ops").await;
    assert_eq!(pushed["ops"][0]["text"], "// hi\n");
    send(
        &mut b,
        json!({"type": "presence", "cursor": 3, "selection": [1, 4], "name": "Bob"}),
    )
    .await;
    let p = next_of(&mut a, "presence").await;
    assert_eq!(
        (p["user"].as_str(), p["cursor"].as_u64(), p["name"].as_str()),
        (Some("bob"), Some(3), Some("Bob"))
    );
    send(&mut a, json!({"type": "ping"})).await;
    next_of(&mut a, "pong").await;
    send(&mut a, json!({"type": "edits", "session": 42, "edits": []})).await;
    assert_eq!(next_of(&mut a, "error").await["error"], "conflict");
    send(&mut a, json!({"type": "shout"})).await;
    assert_eq!(next_of(&mut a, "error").await["error"], "malformed");
    // An edit over HTTP reaches both sockets.
    let (s, _) = http(
        &node,
        "alice",
        "POST",
        &format!("/documents/{id}/edits"),
        Some(json!({"session": sa, "edits": [{"index": 0, "insert": "#"}]})),
    )
    .await;
    assert_eq!(s, 200);
    for ws in [&mut a, &mut b] {
        assert_eq!(next_of(ws, "ops").await["ops"][0]["text"], "#");
    }
    b.close(None).await.unwrap();
    let gone = next_of(&mut a, "presence_gone").await;
    assert_eq!(gone["user"], "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_strangers_are_refused_and_a_protocol_token_is_echoed() {
    let node = node(1).await;
    let (id, _, _) = document(&node).await;
    let status = |r: Result<Ws, tokio_tungstenite::tungstenite::Error>| match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => 101,
    };
    let forged = collab::auth::issue_local_token(b"wrong", "alice", 600);
    let url = format!("{}?document={id}&token={forged}", node.ws_url);
    assert_eq!(
        status(tokio_tungstenite::connect_async(url).await.map(|x| x.0)),
        401
    );
    let url = format!("{}?document={id}", node.ws_url);
    assert_eq!(
        status(tokio_tungstenite::connect_async(url).await.map(|x| x.0)),
        401
    );
    assert_eq!(status(connect(&node, &id, "mallory").await), 404);
    // A token in Sec-WebSocket-Protocol (what browsers can send) is accepted and echoed.
    let token = collab::auth::issue_local_token(SECRET, "bob", 600);
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("{}?document={id}", node.ws_url),
    )
    .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", token.parse().unwrap());
    let (_, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], token.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_connection_is_forgotten_on_the_next_push_and_oversized_messages_get_1009() {
    let node = node(1).await;
    let (id, sa, _) = document(&node).await;
    let doc: DocumentId = id.parse().unwrap();
    let ghost = Connection {
        id: "ghost=".into(),
        document_id: doc,
        user_id: UserId("alice".into()),
        connected_at: chrono::Utc::now(),
        expires_at: None,
    };
    node.store
        .add_connection(&ghost, ReplicaId(1))
        .await
        .unwrap();
    let mut a = connect(&node, &id, "alice").await.unwrap();
    send(
        &mut a,
        json!({"type": "edits", "session": sa, "edits": [{"index": 0, "insert": "x"}]}),
    )
    .await;
    next_of(&mut a, "ack").await;
    let left: Vec<String> = node
        .store
        .connections(doc)
        .await
        .unwrap()
        .into_iter()
        .map(|(c, _)| c.id)
        .collect();
    assert_eq!(left.len(), 1, "the gone connection was deleted: {left:?}");
    assert!(!left.contains(&"ghost=".to_owned()));
    a.send(Message::Text("x".repeat(200 * 1024).into()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, a.next())
            .await
            .expect("closed within 10 s")
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1009);
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame with 1009, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_on_replica_2_receives_an_edit_made_on_replica_1() {
    let (one, two) = (node(1).await, node(2).await);
    let (id, sa, _) = document(&one).await;
    // Bring replica 2 up to date through the broadcasts, as SNS would.
    deliver(&one, &two).await;
    let mut s = connect(&two, &id, "bob").await.unwrap();
    let (st, _) = http(
        &one,
        "alice",
        "POST",
        &format!("/documents/{id}/edits"),
        Some(json!({"session": sa, "edits": [{"index": 0, "insert": "from one "}]})),
    )
    .await;
    assert_eq!(st, 200);
    deliver(&one, &two).await;
    assert_eq!(next_of(&mut s, "ops").await["ops"][0]["text"], "from one ");
    // A session opened on replica 1 is refused on replica 2: other replicas accept a
    // replica's ops only for its own sites.
    let (st, body) = http(
        &two,
        "alice",
        "POST",
        &format!("/documents/{id}/edits"),
        Some(json!({"session": sa, "edits": [{"index": 0, "insert": "moved "}]})),
    )
    .await;
    assert_eq!(st, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("replica 1"),
        "{body}"
    );
}

/// Reads `ws` until the gateway closes it (within 10 s); returns the JSON messages received.
async fn until_closed(ws: &mut Ws) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the socket was not closed within 10 s")
        {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return seen,
            Some(Ok(Message::Text(t))) => seen.push(serde_json::from_str(&t).unwrap()),
            Some(Ok(_)) => {}
        }
    }
}

fn errors(seen: &[Value]) -> Vec<&str> {
    seen.iter()
        .filter(|m| m["type"] == "error")
        .filter_map(|m| m["error"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_collaborator_is_closed_on_this_replica_and_on_the_one_that_integrates_it() {
    let (one, two) = (node(1).await, node(2).await);
    let (id, sa, _) = document(&one).await;
    deliver(&one, &two).await;
    let mut alice = connect(&one, &id, "alice").await.unwrap();
    let mut bob_one = connect(&one, &id, "bob").await.unwrap();
    let mut bob_two = connect(&two, &id, "bob").await.unwrap();
    let (st, _) = http(
        &one,
        "alice",
        "DELETE",
        &format!("/documents/{id}/collaborators/bob"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    // On replica 1 at once: told why, then closed; alice sees bob's presence go.
    let seen = until_closed(&mut bob_one).await;
    assert_eq!(errors(&seen), ["access_revoked"], "{seen:?}");
    assert_eq!(next_of(&mut alice, "presence_gone").await["user"], "bob");
    // An edit made after the removal reaches alice and not bob's socket on replica 2, which
    // integrate closes when the removal arrives (delivered before the edit, as published).
    let (st, _) = http(
        &one,
        "alice",
        "POST",
        &format!("/documents/{id}/edits"),
        Some(json!({"session": sa, "edits": [{"index": 0, "insert": "secret "}]})),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        next_of(&mut alice, "ops").await["ops"][0]["text"],
        "secret "
    );
    deliver(&one, &two).await;
    let seen = until_closed(&mut bob_two).await;
    assert_eq!(errors(&seen), ["access_revoked"], "{seen:?}");
    assert!(
        !seen.iter().any(|m| m["type"] == "ops"),
        "no ops after the removal: {seen:?}"
    );
    for node in [&one, &two] {
        let left = node.store.connections(id.parse().unwrap()).await.unwrap();
        assert!(
            left.iter().all(|(c, _)| c.user_id.0 != "bob"),
            "bob's connections are forgotten: {left:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_check_the_role_now_and_a_deleted_document_closes_its_sockets() {
    let node = node(1).await;
    let (id, sa, _) = document(&node).await;
    let doc: DocumentId = id.parse().unwrap();
    let mut alice = connect(&node, &id, "alice").await.unwrap();
    let mut bob = connect(&node, &id, "bob").await.unwrap();
    // Bob's access ends behind the realtime side's back (no hook runs): the next push notices.
    let change = collab::model::CollaboratorChange {
        document_id: doc,
        user_id: UserId("bob".into()),
        role: None,
        stamp: i64::MAX / 2,
        replica: ReplicaId(9),
    };
    node.store.change_collaborator(&change, None).await.unwrap();
    let (st, _) = http(
        &node,
        "alice",
        "POST",
        &format!("/documents/{id}/edits"),
        Some(json!({"session": sa, "edits": [{"index": 0, "insert": "x"}]})),
    )
    .await;
    assert_eq!(st, 200);
    let seen = until_closed(&mut bob).await;
    assert_eq!(errors(&seen), ["access_revoked"], "{seen:?}");
    assert!(!seen.iter().any(|m| m["type"] == "ops"), "{seen:?}");
    assert_eq!(next_of(&mut alice, "ops").await["ops"][0]["text"], "x");
    // Deleting the document closes the owner's socket too.
    let (st, _) = http(&node, "alice", "DELETE", &format!("/documents/{id}"), None).await;
    assert_eq!(st, 204);
    let seen = until_closed(&mut alice).await;
    assert!(errors(&seen).contains(&"document_deleted"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_whose_token_expired_is_closed_on_its_next_message_or_push() {
    let node = node(1).await;
    let (id, sa, _) = document(&node).await;
    let short = |user: &str| collab::auth::issue_local_token(SECRET, user, 2);
    let open = |token: String| {
        let url = format!("{}?document={id}&token={token}", node.ws_url);
        async move { tokio_tungstenite::connect_async(url).await.unwrap().0 }
    };
    let mut pushed_to = open(short("bob")).await;
    let mut sender = open(short("bob")).await;
    let mut alice = connect(&node, &id, "alice").await.unwrap();
    // Both work before the expiry.
    send(&mut sender, json!({"type": "ping"})).await;
    next_of(&mut sender, "pong").await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    send(&mut sender, json!({"type": "ping"})).await;
    let seen = until_closed(&mut sender).await;
    assert_eq!(errors(&seen), ["token_expired"], "{seen:?}");
    assert!(!seen.iter().any(|m| m["type"] == "pong"), "{seen:?}");
    let (st, _) = http(
        &node,
        "alice",
        "POST",
        &format!("/documents/{id}/edits"),
        Some(json!({"session": sa, "edits": [{"index": 0, "insert": "y"}]})),
    )
    .await;
    assert_eq!(st, 200);
    let seen = until_closed(&mut pushed_to).await;
    assert_eq!(errors(&seen), ["token_expired"], "{seen:?}");
    assert!(!seen.iter().any(|m| m["type"] == "ops"), "{seen:?}");
    assert_eq!(next_of(&mut alice, "ops").await["ops"][0]["text"], "y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_socket_cannot_edit_and_gets_a_json_error() {
    let node = node(1).await;
    let (id, sa, _) = document(&node).await;
    http(
        &node,
        "alice",
        "PUT",
        &format!("/documents/{id}/collaborators/carol"),
        Some(json!({"role": "viewer"})),
    )
    .await;
    let mut carol = connect(&node, &id, "carol").await.unwrap();
    let mut alice = connect(&node, &id, "alice").await.unwrap();
    // Carol has no session of her own (viewers cannot open one); she tries alice's.
    send(&mut carol, json!({"type": "edits", "session": sa, "edits": [{"index": 0, "insert": "!"}], "request_id": "c1"})).await;
    let e = next_of(&mut carol, "error").await;
    assert_eq!(
        (e["error"].as_str(), e["request_id"].as_str()),
        (Some("forbidden"), Some("c1"))
    );
    let op = json!({"type": "insert", "id": {"ssn": 1, "sum": 99, "sid": sa, "seq": 1}, "after": null, "text": "!"});
    send(
        &mut carol,
        json!({"type": "ops", "session": sa, "ops": [op]}),
    )
    .await;
    assert_eq!(next_of(&mut carol, "error").await["error"], "forbidden");
    // Her presence (a read-only cursor) still reaches alice; nothing was written.
    send(&mut carol, json!({"type": "presence", "cursor": 2})).await;
    assert_eq!(next_of(&mut alice, "presence").await["user"], "carol");
    let (_, d) = http(&node, "alice", "GET", &format!("/documents/{id}"), None).await;
    assert_eq!(d["text"], "fn main() {}\n");
}
