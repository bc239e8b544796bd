//! The realtime function through the local gateway, against a fresh PostgreSQL: two editors see
//! each other's edits and presence; an HTTP edit reaches both sockets; bad tokens and strangers
//! are refused; a vanished connection is forgotten on the next push; an oversized message is
//! closed with 1009; a socket on replica 2 receives an edit made on replica 1.

use std::sync::Arc;
use std::time::Duration;

use api::{App, AuthConfig};
use collab::message::Outbound;
use collab::model::Connection;
use collab::realtime::{ApiGatewayPoster, push_hook};
use collab::store::DocumentStore;
use collab::testing::{ChannelPublisher, TestDb};
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
        service: Service::new(store.clone(), published.clone(), settings.clone())
            .with_push(hook.clone()),
        store: store.clone(),
        poster,
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
        .map(|c| c.id)
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
}
