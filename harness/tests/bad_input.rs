//! Random and mutated requests to the handlers: JSON bodies for every route, RGA ops, and SNS
//! messages. Whatever arrives, nothing panics, no request gets a 5xx, and a refused request
//! (4xx, or a dropped SNS message) leaves every stored row as it was.

use harness::{Cluster, sns_event};
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

/// Everything stored on replica `r`, as comparable text: a refused request must not change it.
async fn fingerprint(cl: &Cluster, r: usize) -> String {
    let store = cl.replicas[r].db.store(1).unwrap();
    let client = store.pool().get().await.unwrap();
    let mut out = String::new();
    for q in [
        "SELECT string_agg(id::text || title || owner_id || coalesce(deleted_at::text, '') || log_len, ',' ORDER BY id) FROM documents",
        "SELECT string_agg(sid || ':' || seq || ':' || len || kind || coalesce(value, ''), ',' ORDER BY sid, seq) FROM operations",
        "SELECT string_agg(sid || ':' || seq, ',' ORDER BY sid, seq) FROM waiting_ops",
        "SELECT count(*)::text FROM outbox",
        "SELECT string_agg(site_id::text, ',' ORDER BY site_id) FROM sessions",
        "SELECT string_agg(user_id || coalesce(role, '-'), ',' ORDER BY user_id) FROM collaborators",
    ] {
        let row = client.query_one(q, &[]).await.unwrap();
        out.push_str(&row.get::<_, Option<String>>(0).unwrap_or_default());
        out.push('|');
    }
    out
}

/// A random change to a JSON value: a field dropped, renamed or retyped, a number or string
/// bent, or the text itself broken.
fn mutate(rng: &mut ChaCha8Rng, v: &Value) -> String {
    fn walk(rng: &mut ChaCha8Rng, v: &mut Value) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                let keys: Vec<String> = map.keys().cloned().collect();
                let k = &keys[rng.random_range(0..keys.len())];
                match rng.random_range(0..5) {
                    0 => {
                        map.remove(k);
                    }
                    1 => {
                        let val = map.remove(k).unwrap_or(Value::Null);
                        map.insert(format!("{k}_"), val);
                    }
                    _ => walk(rng, map.get_mut(k).unwrap()),
                }
            }
            Value::Array(items) if !items.is_empty() => {
                let i = rng.random_range(0..items.len());
                if rng.random_bool(0.2) {
                    items.remove(i);
                } else if rng.random_bool(0.2) {
                    let copy = items[i].clone();
                    items.push(copy);
                } else {
                    walk(rng, &mut items[i]);
                }
            }
            Value::Number(_) => {
                *v = match rng.random_range(0..6) {
                    0 => json!(-1),
                    1 => json!(0),
                    2 => json!(u64::MAX),
                    3 => json!(9007199254740993u64),
                    4 => json!(1.5),
                    _ => json!(rng.random_range(0..50)),
                }
            }
            Value::String(s) => {
                *v = match rng.random_range(0..5) {
                    0 => json!(""),
                    1 => json!(format!("{s}\u{0}")),
                    2 => json!(s.repeat(3)),
                    3 => json!(42),
                    _ => json!("😀→é"),
                }
            }
            other => *other = json!(["?"]),
        }
    }
    if rng.random_bool(0.1) {
        let text = v.to_string();
        let cut = rng.random_range(0..text.len().max(1));
        return text[..text.floor_char_boundary(cut)].to_owned();
    }
    let mut v = v.clone();
    walk(rng, &mut v);
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_mutated_requests_never_panic_never_5xx_and_refusals_change_nothing() {
    let mut rng = ChaCha8Rng::seed_from_u64(
        std::env::var("HARNESS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(99),
    );
    let mut cl = Cluster::new(2).await.unwrap();
    let (_, doc) = cl
        .request(
            0,
            "alice",
            "POST",
            "/documents",
            "",
            Some(json!({"title": "t.rs", "content": "abc"})),
        )
        .await;
    let id = doc["id"].as_str().unwrap().to_owned();
    let path = format!("/documents/{id}");
    let (_, sess) = cl
        .request(0, "alice", "POST", &format!("{path}/sessions"), "", None)
        .await;
    let site = sess["session"].as_u64().unwrap();
    let (_, edit) = cl
        .request(
            0,
            "alice",
            "POST",
            &format!("{path}/edits"),
            "",
            Some(json!({"session": site, "edits": [{"index": 1, "insert": "xy"}]})),
        )
        .await;
    let op = edit["ops"][0].clone();
    cl.quiesce(&mut rng).await;
    // Valid requests of every kind, the seeds of the mutations.
    let seeds: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "/documents".into(),
            json!({"title": "n.rs", "content": "fn x() {}"}),
        ),
        ("PATCH", path.clone(), json!({"title": "renamed"})),
        (
            "POST",
            format!("{path}/edits"),
            json!({"session": site, "base": edit["version"], "edits": [{"index": 0, "delete": 1, "insert": "q"}]}),
        ),
        (
            "POST",
            format!("{path}/operations"),
            json!({"session": site, "ops": [op]}),
        ),
        (
            "PUT",
            format!("{path}/collaborators/bob"),
            json!({"role": "viewer"}),
        ),
    ];
    let (mut refused, mut accepted) = (0, 0);
    for _ in 0..400 {
        let (method, route, body) = &seeds[rng.random_range(0..seeds.len())];
        let text = mutate(&mut rng, body);
        let before = fingerprint(&cl, 0).await;
        let event = api::testing::apigw_event(method, route, "", None, "alice");
        let mut event: Value = serde_json::from_str(&event).unwrap();
        event["body"] = json!(text);
        let (status, answer) = api::testing::send(&cl.replicas[0].api, &event.to_string()).await;
        assert!(status < 500, "{method} {route} {text} -> {status} {answer}");
        cl.collect();
        if status >= 400 {
            refused += 1;
            assert_eq!(
                fingerprint(&cl, 0).await,
                before,
                "a refused {method} {route} changed the store: {text} -> {answer}"
            );
            assert!(
                answer["error"].is_string() && answer["message"].is_string(),
                "{answer}"
            );
        } else {
            accepted += 1;
        }
    }
    // Mutated SNS messages to replica 2: a dropped one changes nothing there.
    while cl.deliver_one(&mut rng, 0.0, 0.0).await {}
    cl.request(
        0,
        "alice",
        "POST",
        &format!("{path}/edits"),
        "",
        Some(json!({"session": site, "edits": [{"index": 0, "insert": "s"}]})),
    )
    .await;
    let messages = cl.take_in_flight();
    assert!(!messages.is_empty());
    let mut dropped = 0;
    for _ in 0..200 {
        let m = &messages[rng.random_range(0..messages.len())];
        let body: Value = serde_json::from_str(&m.body).unwrap();
        let mut bent = m.clone();
        bent.body = mutate(&mut rng, &body);
        let before = fingerprint(&cl, 1).await;
        match cl.replicas[1].integrate.handle(sns_event(&[&bent])).await {
            Ok(report) if report.dropped == 1 => {
                dropped += 1;
                assert_eq!(
                    fingerprint(&cl, 1).await,
                    before,
                    "a dropped message changed the store: {}",
                    bent.body
                );
            }
            Ok(_) => {}
            Err(e) => panic!(
                "a mutated message failed the invocation: {e} ({})",
                bent.body
            ),
        }
    }
    println!(
        "{accepted} mutated requests accepted, {refused} refused; {dropped} of 200 mutated SNS messages dropped"
    );
    assert!(
        refused > 100 && dropped > 20,
        "the mutations exercised the refusals"
    );
}
