//! Handler tests: the real API Gateway v2 fixtures from `events/api`, through the real router,
//! against a fresh PostgreSQL database per test.

use std::sync::Arc;

use api::{App, AuthConfig, router};
use collab::ports::Outbox;
use collab::testing::{ChannelPublisher, TestDb};
use collab::{Limits, PgDocumentStore, ReplicaId, Service, Settings};
use serde_json::{Value, json};
use tower::ServiceExt;

const DOC: &str = "00000000-0000-4000-8000-000000000001";
const SESSION: &str = "1099511627777";

struct Api {
    _db: TestDb,
    app: Arc<App<ChannelPublisher>>,
    publisher: ChannelPublisher,
}

fn settings(limits: Limits) -> Settings {
    Settings {
        replica: ReplicaId(1),
        ssn: 1,
        limits,
        compact_after: 1000,
        cache_docs: 8,
    }
}

async fn api_with(limits: Limits, auth: AuthConfig) -> Api {
    let db = TestDb::new().await.expect("PostgreSQL for tests");
    let publisher = ChannelPublisher::new();
    let settings = settings(limits);
    let service = Service::new(db.store(2).unwrap(), publisher.clone(), settings);
    Api {
        _db: db,
        app: App::new(service, auth),
        publisher,
    }
}

async fn api() -> Api {
    api_with(Limits::default(), AuthConfig::default()).await
}

/// A fixture with the placeholder document id, session, user and body replaced.
struct Call {
    event: Value,
}

fn fixture(name: &str) -> Call {
    let path = format!(
        "{}/../../events/api/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Call {
        event: serde_json::from_str(&text).unwrap(),
    }
}

impl Call {
    fn doc(mut self, id: &str) -> Self {
        let text = serde_json::to_string(&self.event).unwrap().replace(DOC, id);
        self.event = serde_json::from_str(&text).unwrap();
        self
    }
    fn session(mut self, site: &str) -> Self {
        let text = serde_json::to_string(&self.event)
            .unwrap()
            .replace(SESSION, site);
        self.event = serde_json::from_str(&text).unwrap();
        self
    }
    fn user(mut self, user: &str) -> Self {
        self.event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = json!(user);
        self
    }
    fn anonymous(mut self) -> Self {
        self.event["requestContext"]
            .as_object_mut()
            .unwrap()
            .remove("authorizer");
        self
    }
    fn header(mut self, name: &str, value: &str) -> Self {
        self.event["headers"][name] = json!(value);
        self
    }
    fn body(mut self, body: Value) -> Self {
        self.event["body"] = json!(body.to_string());
        self
    }
    fn raw_body(mut self, body: &str) -> Self {
        self.event["body"] = json!(body);
        self
    }
    fn query(mut self, q: &str) -> Self {
        self.event["rawQueryString"] = json!(q);
        self.event
            .as_object_mut()
            .unwrap()
            .remove("queryStringParameters");
        self
    }
    async fn send(self, api: &Api) -> (u16, Value) {
        let req = lambda_http::request::from_str(&self.event.to_string())
            .expect("a valid API Gateway v2 event");
        let req = req.map(|b| axum::body::Body::from(b.to_vec()));
        let resp = router(api.app.clone()).oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
        };
        (status, body)
    }
}

impl Call {
    /// Sends and returns the status, headers and body bytes as they are.
    async fn send_raw(self, api: &Api) -> (u16, http::HeaderMap, Vec<u8>) {
        let req = lambda_http::request::from_str(&self.event.to_string())
            .expect("a valid API Gateway v2 event");
        let req = req.map(|b| axum::body::Body::from(b.to_vec()));
        let resp = router(api.app.clone()).oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (parts.status.as_u16(), parts.headers, bytes.to_vec())
    }
}

async fn create(api: &Api, user: &str, content: &str) -> String {
    let (s, b) = fixture("create_document")
        .user(user)
        .body(json!({"title": "main.rs", "content": content}))
        .send(api)
        .await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

async fn session(api: &Api, doc: &str, user: &str) -> String {
    let (s, b) = fixture("open_session").doc(doc).user(user).send(api).await;
    assert_eq!(s, 201, "{b}");
    b["session"].to_string()
}

#[tokio::test]
async fn every_route_works_from_its_fixture() {
    let api = api().await;
    let (s, b) = fixture("create_document").send(&api).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["text"], "fn main() {}\n");
    assert_eq!(b["role"], "owner");
    let id = b["id"].as_str().unwrap().to_owned();
    let (s, b) = fixture("list_documents").send(&api).await;
    assert_eq!((s, b["documents"].as_array().unwrap().len()), (200, 1));
    let (s, b) = fixture("get_document").doc(&id).send(&api).await;
    assert_eq!((s, b["text"].as_str()), (200, Some("fn main() {}\n")));
    let (s, b) = fixture("open_session").doc(&id).send(&api).await;
    assert_eq!(s, 201, "{b}");
    let site = b["session"].to_string();
    assert!(!b["snapshot"].as_str().unwrap().is_empty());
    let (s, b) = fixture("post_edits")
        .doc(&id)
        .session(&site)
        .send(&api)
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(b.get("text").is_none(), "no text unless asked: {b}");
    let version = b["version"].clone();
    // A CRDT-native op from the same session, continuing its clock.
    let seq = b["ops"][0]["id"]["seq"].as_u64().unwrap() + 13;
    let sum = b["ops"][0]["id"]["sum"].as_u64().unwrap() + 13;
    let op = json!({"type": "insert", "id": {"ssn": 1, "sum": sum, "sid": site.parse::<u64>().unwrap(), "seq": seq}, "after": null, "text": "// "});
    let (s, b) = fixture("post_operations")
        .doc(&id)
        .session(&site)
        .body(json!({"session": site.parse::<u64>().unwrap(), "ops": [op]}))
        .send(&api)
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "applied");
    let (s, b) = fixture("get_operations").doc(&id).send(&api).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["ops"].as_array().unwrap().len(), 3);
    let since: Vec<String> = version
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    let (s, b) = fixture("get_operations")
        .doc(&id)
        .query(&format!("since={}", since.join(",")))
        .send(&api)
        .await;
    assert_eq!((s, b["ops"].as_array().unwrap().len()), (200, 1), "{b}");
    let (s, b) = fixture("rename_document").doc(&id).send(&api).await;
    assert_eq!((s, b["title"].as_str()), (200, Some("lib.rs")));
    api.app
        .service
        .compact(id.parse().unwrap(), true)
        .await
        .unwrap();
    let (s, b) = fixture("list_snapshots").doc(&id).send(&api).await;
    assert_eq!((s, b["snapshots"].as_array().unwrap().len()), (200, 1));
    let (s, b) = fixture("get_snapshot").doc(&id).send(&api).await;
    assert_eq!(
        (s, b["text"].as_str()),
        (200, Some("// use std::io;\nfn main() {}\n"))
    );
    let (s, b) = fixture("put_collaborator").doc(&id).send(&api).await;
    assert_eq!((s, b["collaborators"].as_array().unwrap().len()), (200, 2));
    let (s, b) = fixture("list_collaborators")
        .doc(&id)
        .user("bob")
        .send(&api)
        .await;
    assert_eq!(
        (s, b["collaborators"][1]["role"].as_str()),
        (200, Some("editor"))
    );
    let (s, _) = fixture("delete_collaborator").doc(&id).send(&api).await;
    assert_eq!(s, 200);
    let (s, _) = fixture("delete_document").doc(&id).send(&api).await;
    assert_eq!(s, 204);
    let (s, b) = fixture("get_document").doc(&id).send(&api).await;
    assert_eq!((s, b["error"].as_str()), (404, Some("not_found")));
    // Everything that changed was broadcast: create, session, edits, ops, rename, collaborator x2, delete.
    assert_eq!(api.publisher.take().len(), 8);
    // The rows published by the edit path are deleted by the container's next edit; the last
    // one waits for that (or the sweep, which republishes it once and deletes it).
    assert_eq!(api.app.service.store().outbox_len().await.unwrap(), 1);
    api.app.service.sweep_outbox(0).await.unwrap();
    assert_eq!(api.app.service.store().outbox_len().await.unwrap(), 0);
}

#[tokio::test]
async fn bad_requests_get_a_clear_json_error_and_change_nothing() {
    let api = api_with(
        Limits {
            max_body_bytes: 2048,
            max_batch_ops: 5,
            max_document_chars: 100,
            ..Limits::default()
        },
        AuthConfig::default(),
    )
    .await;
    let id = create(&api, "alice", "abc").await;
    let site = session(&api, &id, "alice").await;
    let sid: u64 = site.parse().unwrap();
    let cases: Vec<(Call, u16, &str)> = vec![
        (fixture("create_document").raw_body("{\"title\": "), 400, "malformed"),
        (fixture("create_document").body(json!({"title": ""})), 400, "malformed"),
        (fixture("create_document").body(json!({"title": "x", "owner_id": "mallory"})), 400, "malformed"),
        (fixture("get_document").doc("not-a-uuid"), 400, "malformed"),
        (fixture("get_document").doc("6f0c1b1e-9a52-4b7c-8d3e-1f2a3b4c5d6e"), 404, "not_found"),
        (fixture("post_edits").doc(&id).session(&site).body(json!({"session": sid, "edits": [{"index": 99, "delete": 0, "insert": "x"}]})), 400, "malformed"),
        (fixture("post_edits").doc(&id).session(&site).body(json!({"session": sid, "edits": vec![json!({"index": 0, "insert": "x"}); 6]})), 413, "too_large"),
        (fixture("post_edits").doc(&id).session(&site).body(json!({"session": sid, "edits": [{"index": 0, "insert": "x".repeat(3000)}]})), 413, "too_large"),
        (fixture("post_edits").doc(&id).session(&site).body(json!({"session": sid, "edits": [{"index": 0, "insert": "x".repeat(200)}]})), 413, "too_large"),
        (fixture("post_edits").doc(&id).session(&site).body(json!({"session": sid, "base": {"999": 4}, "edits": []})), 409, "conflict"),
        (fixture("post_edits").doc(&id).session("42").body(json!({"session": 42, "edits": []})), 409, "conflict"),
        (fixture("post_operations").doc(&id).body(json!({"session": sid, "ops": [{"type": "insert", "id": {"ssn": 1, "sum": 1, "sid": sid, "seq": 5}, "after": null, "text": "x"}]})), 422, "invalid_op"),
        (fixture("post_operations").doc(&id).body(json!({"session": sid, "ops": [{"type": "insert", "id": {"ssn": 7, "sum": 9, "sid": sid, "seq": 1}, "after": null, "text": "x"}]})), 422, "invalid_op"),
        (fixture("post_operations").doc(&id).body(json!({"session": sid, "ops": [{"type": "insert", "id": {"ssn": 1, "sum": 9, "sid": 5, "seq": 1}, "after": null, "text": "x"}]})), 403, "forbidden"),
        (fixture("post_operations").doc(&id).body(json!({"session": sid, "ops": [{"type": "insert", "id": {"ssn": 1, "sum": 9007199254740993u64, "sid": sid, "seq": 1}, "after": null, "text": "x"}]})), 400, "malformed"),
        (fixture("get_operations").doc(&id).query("since=zzz"), 400, "malformed"),
        (fixture("get_snapshot").doc(&id), 404, "not_found"),
        (fixture("list_documents").anonymous(), 401, "unauthorized"),
    ];
    for (call, status, code) in cases {
        let (s, b) = call.send(&api).await;
        assert_eq!((s, b["error"].as_str()), (status, Some(code)), "{b}");
        assert!(b["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (s, b) = fixture("get_document").doc(&id).send(&api).await;
    assert_eq!(
        (s, b["text"].as_str()),
        (200, Some("abc")),
        "refused requests changed nothing"
    );
    // A reused op id with other content is a conflict.
    let (_, b) = fixture("post_edits")
        .doc(&id)
        .session(&site)
        .body(json!({"session": sid, "edits": [{"index": 3, "insert": "d"}]}))
        .send(&api)
        .await;
    let mut forged = b["ops"][0].clone();
    forged["text"] = json!("e");
    let (s, b) = fixture("post_operations")
        .doc(&id)
        .body(json!({"session": sid, "ops": [forged]}))
        .send(&api)
        .await;
    assert_eq!((s, b["error"].as_str()), (409, Some("conflict")), "{b}");
}

/// PostgreSQL cannot store U+0000 in `text` or `jsonb`: every way it can come in is a 400 that
/// changes nothing, not a 500 from the database (found by `scripts/schemathesis.sh`).
#[tokio::test]
async fn nul_characters_are_refused_with_400_instead_of_failing_in_the_database() {
    let api = api().await;
    let id = create(&api, "alice", "abc").await;
    let site = session(&api, &id, "alice").await;
    let sid: u64 = site.parse().unwrap();
    let op_id = json!({"ssn": 1, "sum": 9, "sid": sid, "seq": 1});
    let mut nul_user = fixture("put_collaborator").doc(&id);
    nul_user.event["rawPath"] = json!(format!("/documents/{id}/collaborators/b%00b"));
    let cases = vec![
        fixture("create_document").body(json!({"title": "a\u{0}b"})),
        fixture("create_document").body(json!({"title": "main.rs", "content": "a\u{0}b"})),
        fixture("rename_document").doc(&id).body(json!({"title": "a\u{0}b"})),
        fixture("post_edits").doc(&id).session(&site).body(json!({"session": sid, "edits": [{"index": 0, "insert": "x\u{0}"}]})),
        fixture("post_operations").doc(&id).body(json!({"session": sid, "ops": [{"type": "insert", "id": op_id, "after": null, "text": "x\u{0}"}]})),
        fixture("post_operations").doc(&id).body(json!({"session": sid, "ops": [{"type": "update", "id": op_id, "target": {"sid": 1u64 << 40, "seq": 1}, "value": "\u{0}"}]})),
        nul_user,
    ];
    for call in cases {
        let (s, b) = call.send(&api).await;
        assert_eq!((s, b["error"].as_str()), (400, Some("malformed")), "{b}");
        assert!(
            b["message"].as_str().is_some_and(|m| m.contains("U+0000")),
            "{b}"
        );
    }
    let (s, b) = fixture("get_document").doc(&id).send(&api).await;
    assert_eq!(
        (s, b["title"].as_str(), b["text"].as_str()),
        (200, Some("main.rs"), Some("abc")),
        "refused requests changed nothing"
    );
    let (_, b) = fixture("list_documents").send(&api).await;
    assert_eq!(b["documents"].as_array().map(Vec::len), Some(1), "{b}");
    let (_, b) = fixture("list_collaborators").doc(&id).send(&api).await;
    assert_eq!(b["collaborators"].as_array().map(Vec::len), Some(1), "{b}");
}

#[tokio::test]
async fn an_op_whose_cause_is_missing_is_stored_and_answered_with_202() {
    let api = api().await;
    let id = create(&api, "alice", "abc").await;
    let site = session(&api, &id, "alice").await;
    let sid: u64 = site.parse().unwrap();
    // seq 2 before seq 1: it waits.
    let second = json!({"type": "insert", "id": {"ssn": 1, "sum": 5, "sid": sid, "seq": 2}, "after": {"ssn": 1, "sum": 4, "sid": sid, "seq": 1}, "text": "y"});
    let (s, b) = fixture("post_operations")
        .doc(&id)
        .body(json!({"session": sid, "ops": [second]}))
        .send(&api)
        .await;
    assert_eq!((s, b["status"].as_str()), (202, Some("pending")), "{b}");
    let first = json!({"type": "insert", "id": {"ssn": 1, "sum": 4, "sid": sid, "seq": 1}, "after": null, "text": "x"});
    let (s, b) = fixture("post_operations")
        .doc(&id)
        .body(json!({"session": sid, "ops": [first]}))
        .send(&api)
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("applied")), "{b}");
    let (_, b) = fixture("get_document").doc(&id).send(&api).await;
    assert_eq!(b["text"], "xyabc");
}

/// Which status each role gets on each route (owner, editor, viewer, stranger).
#[tokio::test]
async fn each_role_gets_exactly_its_rights_on_every_route() {
    let api = api().await;
    let id = create(&api, "alice", "abc").await;
    for (user, role) in [("erin", "editor"), ("vic", "viewer")] {
        let mut call = fixture("put_collaborator")
            .doc(&id)
            .body(json!({"role": role}));
        call.event["rawPath"] = json!(format!("/documents/{id}/collaborators/{user}"));
        call.event["requestContext"]["http"]["path"] = call.event["rawPath"].clone();
        call.event["pathParameters"]["user"] = json!(user);
        assert_eq!(call.send(&api).await.0, 200);
    }
    let sessions = [
        session(&api, &id, "alice").await,
        session(&api, &id, "erin").await,
    ];
    // (fixture, owner, editor, viewer, stranger)
    let table: &[(&str, [u16; 4])] = &[
        ("get_document", [200, 200, 200, 404]),
        ("list_collaborators", [200, 200, 200, 404]),
        ("list_snapshots", [200, 200, 200, 404]),
        ("get_operations", [200, 200, 200, 404]),
        ("open_session", [201, 201, 404, 404]),
        ("post_edits", [200, 200, 404, 404]),
        ("rename_document", [200, 404, 404, 404]),
        ("put_collaborator", [200, 404, 404, 404]),
        ("delete_collaborator", [200, 404, 404, 404]),
    ];
    for (name, expected) in table {
        for (i, user) in ["alice", "erin", "vic", "mallory"].iter().enumerate() {
            let site = &sessions[if i == 1 { 1 } else { 0 }];
            let (s, b) = fixture(name)
                .doc(&id)
                .user(user)
                .session(site)
                .send(&api)
                .await;
            // Sessions belong to their user: the viewer and the stranger use alice's, which
            // the document check refuses first.
            assert_eq!(s, expected[i], "{name} as {user}: {b}");
        }
    }
    let (s, _) = fixture("delete_document")
        .doc(&id)
        .user("erin")
        .send(&api)
        .await;
    assert_eq!(s, 404);
    let (s, _) = fixture("delete_document")
        .doc(&id)
        .user("alice")
        .send(&api)
        .await;
    assert_eq!(s, 204);
}

#[tokio::test]
async fn local_bearer_tokens_are_verified_when_no_authorizer_ran() {
    let secret = b"dev-secret".to_vec();
    let api = api_with(
        Limits::default(),
        AuthConfig {
            local_secret: Some(secret.clone()),
        },
    )
    .await;
    let token = api::issue_local_token(&secret, "alice", 600);
    let (s, b) = fixture("create_document")
        .anonymous()
        .header("authorization", &format!("Bearer {token}"))
        .send(&api)
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["owner_id"], "alice");
    let forged = api::issue_local_token(b"wrong", "alice", 600);
    for (header, why) in [
        (format!("Bearer {forged}"), "signature"),
        ("Bearer x.y.z".to_owned(), "malformed"),
        (String::new(), "missing"),
    ] {
        let call = fixture("list_documents").anonymous();
        let call = if header.is_empty() {
            call
        } else {
            call.header("authorization", &header)
        };
        let (s, b) = call.send(&api).await;
        assert_eq!(s, 401, "{b}");
        assert!(b["message"].as_str().unwrap().contains(why), "{b}");
    }
}

#[tokio::test]
async fn catch_up_pages_come_as_binary_batches_to_an_accept_header() {
    let api = api().await;
    let id = create(&api, "alice", "").await;
    let site: u64 = session(&api, &id, "alice").await.parse().unwrap();
    let mut len = 0;
    for (i, text) in ["héllo", " wörld", "😀", "!"].iter().enumerate() {
        let edits = fixture("post_edits")
            .doc(&id)
            .session(&site.to_string())
            .body(json!({"session": site, "edits": [{"index": len, "delete": 0, "insert": text}]}));
        len += text.chars().count();
        let (s, b) = edits.send(&api).await;
        assert_eq!(s, 200, "edit {i}: {b}");
    }
    let (s, json_page) = fixture("get_operations")
        .doc(&id)
        .query("since=")
        .send(&api)
        .await;
    assert_eq!(s, 200, "{json_page}");
    let json_ops: Vec<rga::Op> = serde_json::from_value(json_page["ops"].clone()).unwrap();
    assert!(json_ops.len() >= 4, "{json_page}");

    // One page: the same ops, in the same order, as the JSON page.
    let (s, headers, body) = fixture("get_operations")
        .doc(&id)
        .query("since=")
        .header("accept", "application/x-rga-ops")
        .send_raw(&api)
        .await;
    assert_eq!(s, 200);
    assert_eq!(headers["content-type"], "application/x-rga-ops");
    assert!(headers.get("x-next-cursor").is_none());
    assert_eq!(rga::decode_ops(&body).unwrap(), json_ops);
    assert!(body.len() * 3 < serde_json::to_vec(&json_page["ops"]).unwrap().len());

    // Paged: the cursor travels in a header, and the pages add up to the same ops.
    let (mut cursor, mut paged) = (Some("0".to_owned()), Vec::new());
    while let Some(c) = cursor {
        let (s, headers, body) = fixture("get_operations")
            .doc(&id)
            .query(&format!("since=&limit=1&cursor={c}"))
            .header("accept", "application/json, application/x-rga-ops")
            .send_raw(&api)
            .await;
        assert_eq!(s, 200);
        paged.extend(rga::decode_ops(&body).unwrap());
        cursor = headers
            .get("x-next-cursor")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(
            paged.len() <= json_ops.len() + 1,
            "the cursor does not advance"
        );
    }
    assert_eq!(paged, json_ops);

    // Lambda's response encoding sends it as binary (base64 in the API Gateway answer).
    let (_, headers, body) = fixture("get_operations")
        .doc(&id)
        .query("since=")
        .header("accept", "application/x-rga-ops")
        .send_raw(&api)
        .await;
    let mut resp = http::Response::new(axum::body::Body::from(body.clone()));
    *resp.headers_mut() = headers;
    let lambda = lambda_http::IntoResponse::into_response(resp).await;
    assert!(
        matches!(lambda.body(), lambda_http::Body::Binary(b) if *b == body),
        "not sent as binary: {:?}",
        lambda.body()
    );
}

#[tokio::test]
async fn a_retried_edit_with_its_idempotency_key_applies_once_on_any_container() {
    let api = api().await;
    let id = create(&api, "alice", "fn main() {}\n").await;
    let site = session(&api, &id, "alice").await;
    let edit = |insert: &str| {
        fixture("post_edits")
            .doc(&id)
            .session(&site)
            .body(json!({"session": site.parse::<u64>().unwrap(), "edits": [{"index": 0, "delete": 0, "insert": insert}]}))
    };
    let (s, first) = edit("// a\n")
        .header("idempotency-key", "k-1")
        .send(&api)
        .await;
    assert_eq!(s, 200, "{first}");
    assert!(first.get("text").is_none());
    // The answer was lost; the client retries, twice.
    for _ in 0..2 {
        let (s, again) = edit("// a\n")
            .header("idempotency-key", "k-1")
            .send(&api)
            .await;
        assert_eq!((s, &again), (200, &first));
    }
    // Asked for the text, a retry gets it too.
    let (s, with_text) = edit("// a\n")
        .header("idempotency-key", "k-1")
        .query("include=text")
        .send(&api)
        .await;
    assert_eq!(s, 200);
    assert_eq!(with_text["text"], "// a\nfn main() {}\n");
    assert_eq!(with_text["ops"], first["ops"]);
    // Another container of the replica (its own cache and pool, the same database).
    let settings = settings(Limits::default());
    let other = Api {
        app: App::new(
            Service::new(api._db.store(1).unwrap(), ChannelPublisher::new(), settings),
            AuthConfig::default(),
        ),
        publisher: ChannelPublisher::new(),
        _db: TestDb::new().await.unwrap(),
    };
    let (s, there) = edit("// a\n")
        .header("idempotency-key", "k-1")
        .send(&other)
        .await;
    assert_eq!((s, &there), (200, &first));
    // The same key for another edit is refused and changes nothing.
    let (s, b) = edit("// b\n")
        .header("idempotency-key", "k-1")
        .send(&api)
        .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{b}"
    );
    // Without a key, an edit is new each time.
    let (s, _) = edit("// c\n").send(&api).await;
    assert_eq!(s, 200);
    let (_, doc) = fixture("get_document").doc(&id).send(&api).await;
    assert_eq!(
        doc["text"], "// c\n// a\nfn main() {}\n",
        "applied exactly once"
    );
    // Ops too: a retried batch gets the first answer (not "duplicates").
    let sid: u64 = site.parse().unwrap();
    let seq = doc["version"][&site].as_u64().unwrap() + 1;
    let op = json!({"type": "insert", "id": {"ssn": 1, "sum": 500, "sid": sid, "seq": seq}, "after": null, "text": "!"});
    let ops = || {
        fixture("post_operations")
            .doc(&id)
            .session(&site)
            .body(json!({"session": sid, "ops": [op.clone()]}))
            .header("idempotency-key", "ops-1")
    };
    let (s, a) = ops().send(&api).await;
    assert_eq!((s, a["applied"].as_u64()), (200, Some(1)), "{a}");
    let (s, b) = ops().send(&other).await;
    assert_eq!((s, &b), (200, &a));
    let (s, b) = fixture("post_edits")
        .doc(&id)
        .session(&site)
        .header("idempotency-key", &"x".repeat(201))
        .body(json!({"session": sid, "edits": []}))
        .send(&api)
        .await;
    assert_eq!(s, 400, "{b}");
}

#[tokio::test]
async fn an_unreachable_database_is_a_quick_503_with_retry_after() {
    let pg = collab::testing::stalled_server().await;
    let config: collab::config::PgConfig =
        format!("postgres://collab@127.0.0.1:{}/collab", pg.port())
            .parse()
            .unwrap();
    let waits = collab::Waits {
        connect: std::time::Duration::from_millis(300),
        pool_wait: std::time::Duration::from_millis(300),
        ..collab::Waits::default()
    };
    let store = collab::PgDocumentStore::connect_with(&config, 1, waits).unwrap();
    let settings = settings(Limits::default());
    let api = Api {
        app: App::new(
            Service::new(store, ChannelPublisher::new(), settings),
            AuthConfig::default(),
        ),
        publisher: ChannelPublisher::new(),
        _db: TestDb::new().await.unwrap(),
    };
    let (s, headers, body) = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        fixture("list_documents").send_raw(&api),
    )
    .await
    .expect("the request hung");
    assert_eq!(s, 503, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["retry-after"], "2");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "unavailable");
}

#[tokio::test]
async fn a_session_answer_leaves_out_what_the_client_does_not_need() {
    let api = api().await;
    let id = create(&api, "alice", "fn main() {}\n").await;
    let (s, full) = fixture("open_session").doc(&id).send(&api).await;
    assert_eq!(s, 201);
    assert!(full["text"].is_string() && full["snapshot"].is_string());
    let (s, b) = fixture("open_session")
        .doc(&id)
        .query("omit=text")
        .send(&api)
        .await;
    assert_eq!(s, 201, "{b}");
    assert!(b.get("text").is_none() && b["snapshot"].is_string(), "{b}");
    let (s, b) = fixture("open_session")
        .doc(&id)
        .query("omit=text,snapshot")
        .send(&api)
        .await;
    assert_eq!(s, 201, "{b}");
    assert!(
        b.get("text").is_none() && b.get("snapshot").is_none(),
        "{b}"
    );
    assert_eq!(b["version"], full["version"]);
    assert_ne!(b["session"], full["session"], "each call opens a session");
    // Anything but the documented values is refused, an empty one too (schemathesis found it).
    for bad in ["omit=title", "omit=", "omit=text,", "omit=text,text"] {
        let (s, b) = fixture("open_session").doc(&id).query(bad).send(&api).await;
        assert_eq!((s, b["error"].as_str()), (400, Some("malformed")), "{bad}");
    }
}

#[tokio::test]
async fn health_needs_no_token_and_reports_the_schema_and_an_unreachable_database() {
    let api = api().await;
    let (s, b) = fixture("health").send(&api).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "ok");
    assert_eq!(b["database"], "reachable");
    assert_eq!(b["schema_version"], b["schema_needed"]);
    assert_eq!(b["version"], env!("CARGO_PKG_VERSION"));
    // A database that does not answer: 503 quickly, no detail.
    let mut config = collab::config::PgConfig::new();
    config
        .host("127.0.0.1")
        .port(1)
        .user("postgres")
        .dbname("postgres");
    let service = Service::new(
        PgDocumentStore::connect(&config, 1).unwrap(),
        ChannelPublisher::new(),
        settings(Limits::default()),
    );
    let down = Api {
        _db: TestDb::new().await.unwrap(),
        app: App::new(service, AuthConfig::default()),
        publisher: ChannelPublisher::new(),
    };
    let (s, b) = fixture("health").send(&down).await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(
        (b["status"].as_str(), b["database"].as_str()),
        (Some("unavailable"), Some("unreachable"))
    );
    assert!(b["schema_version"].is_null());
}

#[tokio::test]
async fn no_write_makes_a_document_answer_heavier_than_lambda_can_carry() {
    let api = api().await;
    let id = create(&api, "alice", "").await;
    let site = session(&api, &id, "alice").await;
    let sid: u64 = site.parse().unwrap();
    // Quotes are the heaviest text there is in Lambda's JSON payload: `\\\"`, four bytes each,
    // and the snapshot carries them again (base64 of a block stored raw). 400,000 of them make
    // a 0.8 MB request body; after three such edits the session answer would be 6.4 MB.
    const CHUNK: usize = 400_000;
    let chunk = "\"".repeat(CHUNK);
    let mut accepted = 0;
    let mut refusal = None;
    for _ in 0..5 {
        let edit = json!({"session": sid, "edits": [{"index": accepted * CHUNK, "delete": 0, "insert": chunk}]});
        let (s, b) = fixture("post_edits")
            .doc(&id)
            .session(&site)
            .body(edit)
            .send(&api)
            .await;
        if s == 200 {
            accepted += 1;
        } else {
            refusal = Some((s, b));
            break;
        }
    }
    let (status, body) = refusal.expect("a write that outgrows Lambda's answer is refused");
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );
    assert_eq!(
        accepted, 2,
        "two edits fit under the limit, the third does not: {body}"
    );
    // Every answer about the document fits, measured as Lambda carries it (the body as a JSON
    // string in the response payload), and the refused edit changed nothing.
    for call in [
        fixture("open_session").doc(&id),
        fixture("get_document").doc(&id),
    ] {
        let (s, _, bytes) = call.send_raw(&api).await;
        assert!(s == 200 || s == 201, "{s}");
        let body = String::from_utf8(bytes).unwrap();
        let payload = serde_json::to_string(&body).unwrap().len();
        assert!(payload < 6_000_000, "an answer of {payload} bytes");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["text"].as_str().map(|t| t.len()), Some(2 * CHUNK));
    }
}
