//! `bench -- store`: the data layer against the same PostgreSQL, in one run, with the same
//! number of concurrent connections.
//!
//! - `raw_insert`: the floor: single-row `INSERT` + commit, straight through tokio-postgres.
//! - `raw_update_one_row`: the floor of any write that serializes on one row (a document's):
//!   every connection increments the same row, each `UPDATE` + commit holding its lock until
//!   the commit is flushed.
//! - `append`: single-op batches through the store's write path (`try_append`: one statement that
//!   writes only if the document's log has not moved; `append` with the row lock when it has),
//!   each connection on a document of its own.
//! - `append_one_doc`: the same with every connection on one document (its row lock serializes
//!   them; shown for honesty, not a target).
//! - `edit_request`: what a client's edit costs end to end in a warm Lambda container: an API
//!   Gateway v2 event (the `events/api/post_edits.json` fixture) parsed by `lambda_http`, through
//!   the api router, a single-char index edit, answered; one container (its own cache and
//!   connection) per writer, each on a document of its own.
//! - `edit_request_one_doc_8`, `_32`: the same with 8 or 32 containers on one document.
//! - `cold_load`: `Service::get_document` in a fresh container (access check, latest snapshot plus
//!   tail, decode, text) on a document holding the final state of `automerge-paper` (every op of
//!   the trace stored, then compacted).
//! - `cold_load_rows`: only fetching that state as one row per element in document order, the
//!   seed's snapshot layout, for comparison with the encoded snapshot `cold_load` reads.
//! - `warm_refresh`: `Service::get_document` on a warm container after another container
//!   appended 100 ops.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use collab::ports::{OpLog, Plan};
use collab::testing::{ChannelPublisher, TestDb};
use collab::{DocumentId, Limits, ReplicaId, Service, Settings, UserId};
use rga::{Op, Rga, SiteId, VersionVector};
use serde::Serialize;

/// Arguments of `bench store`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Seconds each throughput case runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Repetitions of each load case.
    #[arg(long, default_value_t = 30)]
    loads: usize,
    /// Only the throughput cases whose names contain this (with `raw_insert`, the baseline).
    #[arg(long)]
    only: Option<String>,
}

#[derive(Debug, Serialize)]
struct Row {
    case: &'static str,
    ops_per_s: Option<f64>,
    p50_ms: f64,
    p99_ms: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn row(case: &'static str, mut lat: Vec<Duration>, elapsed: Option<Duration>) -> Row {
    lat.sort();
    Row {
        case,
        ops_per_s: elapsed.map(|e| lat.len() as f64 / e.as_secs_f64()),
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
    }
}

fn settings() -> Settings {
    Settings {
        replica: ReplicaId(1),
        ssn: 1,
        limits: Limits {
            max_document_chars: 1 << 24,
            ..Limits::default()
        },
        compact_after: 1 << 40,
        cache_docs: 8,
    }
}

/// Runs `task(worker)` on `n` workers until `secs` pass; returns every latency and the time.
async fn throughput<F, Fut>(n: usize, secs: u64, task: F) -> Result<(Vec<Duration>, Duration)>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let task = Arc::new(task);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..n {
        let task = task.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                task(w, i).await?;
                lat.push(t.elapsed());
                i += 1;
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    Ok((all, start.elapsed()))
}

/// One-char inserts of `site`, each after the previous: op `i` of an endless typing run.
fn typing_op(site: SiteId, i: u64) -> Op {
    let id = rga::S4Vector {
        ssn: 1,
        sum: i + 1,
        sid: site,
        seq: i + 1,
    };
    let after = (i > 0).then_some(rga::S4Vector {
        ssn: 1,
        sum: i,
        sid: site,
        seq: i,
    });
    Op::Insert {
        id,
        after,
        text: "x".into(),
    }
}

async fn raw_insert(db: &TestDb, n: usize, secs: u64) -> Result<Row> {
    let store = db.store(n)?;
    store.pool().get().await?.batch_execute("CREATE TABLE bench_raw (id bigserial PRIMARY KEY, document_id uuid NOT NULL, value text NOT NULL)").await?;
    let pool = store.pool().clone();
    let (lat, elapsed) = throughput(n, secs, move |_, _| {
        let pool = pool.clone();
        async move {
            let client = pool.get().await?;
            client
                .execute(
                    "INSERT INTO bench_raw (document_id, value) VALUES ($1, 'x')",
                    &[&DocumentId::new().0],
                )
                .await?;
            Ok(())
        }
    })
    .await?;
    Ok(row("raw_insert", lat, Some(elapsed)))
}

/// `post_edits.json` for `doc`, `session` and `user`, with a placeholder for the edit.
fn edit_event(doc: DocumentId, session: u64, user: &str) -> Result<serde_json::Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../events/api/post_edits.json");
    let text = std::fs::read_to_string(path).with_context(|| path.to_owned())?;
    let text = text
        .replace("00000000-0000-4000-8000-000000000001", &doc.to_string())
        .replace("1099511627777", &session.to_string());
    let mut event: serde_json::Value = serde_json::from_str(&text)?;
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = user.into();
    Ok(event)
}

/// One writer's container: the api router over its own service (cache, one connection), the
/// event template of its session on `doc`.
struct Container {
    router: axum::Router,
    event: serde_json::Value,
    session: u64,
}

impl Container {
    /// Sends a one-char insert at `index` as API Gateway would; returns the status.
    async fn edit(&self, index: u64) -> Result<axum::http::StatusCode> {
        use tower::ServiceExt;
        let mut event = self.event.clone();
        event["body"] = serde_json::json!({"session": self.session, "edits": [{"index": index, "delete": 0, "insert": "x"}]}).to_string().into();
        let req = lambda_http::request::from_str(&event.to_string())?;
        let resp = self
            .router
            .clone()
            .oneshot(req.map(|b| axum::body::Body::from(b.to_vec())))
            .await?;
        let status = resp.status();
        axum::body::to_bytes(resp.into_body(), usize::MAX).await?;
        Ok(status)
    }
}

async fn containers(db: &TestDb, docs: &[DocumentId], n: usize) -> Result<Vec<Container>> {
    let user = UserId("bench".into());
    let mut out = Vec::new();
    for w in 0..n {
        let service = Service::new(db.store(1)?, ChannelPublisher::new(), settings());
        let doc = docs[w % docs.len()];
        let session = service.open_session(doc, &user).await?.session.site.0;
        let app = api::App::new(service, api::AuthConfig::default());
        out.push(Container {
            router: api::router(app),
            event: edit_event(doc, session, &user.0)?,
            session,
        });
    }
    Ok(out)
}

/// `count` empty documents of the bench user.
async fn documents(db: &TestDb, count: usize) -> Result<Vec<DocumentId>> {
    let svc = Service::new(db.store(1)?, ChannelPublisher::new(), settings());
    let owner = UserId("bench".into());
    let mut docs = Vec::new();
    for _ in 0..count {
        docs.push(
            svc.create_document(&owner, "bench", None)
                .await?
                .document
                .id,
        );
    }
    Ok(docs)
}

/// `edit_request` (a document per writer) or `edit_request_one_doc_<n>` (one for all).
async fn edit_request(db: &TestDb, n: usize, secs: u64, one_doc: bool) -> Result<Row> {
    let docs = documents(db, if one_doc { 1 } else { n }).await?;
    let containers = Arc::new(containers(db, &docs, n).await?);
    // Warm every container (its cache loaded, statements prepared), outside the timer.
    for c in containers.iter() {
        let status = c.edit(0).await?;
        anyhow::ensure!(status == 200, "warm-up edit: {status}");
    }
    let (lat, elapsed) = throughput(n, secs, move |w, i| {
        let containers = containers.clone();
        async move {
            // Typing at the end of a document of one's own; at the head of a shared one.
            let index = if one_doc { 0 } else { i + 1 };
            let status = containers[w].edit(index).await?;
            anyhow::ensure!(status == 200, "edit answered {status}");
            Ok(())
        }
    })
    .await?;
    let case = match (one_doc, n) {
        (false, _) => "edit_request",
        (true, 8) => "edit_request_one_doc_8",
        (true, 32) => "edit_request_one_doc_32",
        (true, _) => "edit_request_one_doc",
    };
    Ok(row(case, lat, Some(elapsed)))
}

async fn raw_update_one_row(db: &TestDb, n: usize, secs: u64) -> Result<Row> {
    let store = db.store(n)?;
    store
        .pool()
        .get()
        .await?
        .batch_execute(
            "CREATE TABLE bench_row (id int PRIMARY KEY, n bigint NOT NULL); INSERT INTO bench_row VALUES (1, 0)",
        )
        .await?;
    let pool = store.pool().clone();
    let (lat, elapsed) = throughput(n, secs, move |_, _| {
        let pool = pool.clone();
        async move {
            let client = pool.get().await?;
            client
                .execute("UPDATE bench_row SET n = n + 1 WHERE id = 1", &[])
                .await?;
            Ok(())
        }
    })
    .await?;
    Ok(row("raw_update_one_row", lat, Some(elapsed)))
}

async fn append(db: &TestDb, n: usize, secs: u64, one_doc: bool) -> Result<Row> {
    let store = Arc::new(db.store(n)?);
    let docs = documents(db, if one_doc { 1 } else { n }).await?;
    let docs = Arc::new(docs);
    // Like a container's cache, each worker remembers the log position it has seen.
    let known: Arc<Vec<AtomicI64>> = Arc::new((0..n).map(|_| AtomicI64::new(0)).collect());
    let (lat, elapsed) = throughput(n, secs, move |w, i| {
        let (store, docs, known) = (store.clone(), docs.clone(), known.clone());
        async move {
            let doc = docs[w % docs.len()];
            let op = typing_op(SiteId(100 + w as u64), i);
            let from = known[w].load(Relaxed);
            let plan = Plan {
                ops: vec![op],
                ..Plan::default()
            };
            // The service's write path: one optimistic statement; when another writer moved
            // the log on, the locked append.
            let appended = match store
                .try_append(doc, Some(from), ReplicaId(1), &plan)
                .await?
            {
                Some(a) => a,
                None => {
                    store
                        .append(doc, from, ReplicaId(1), |_tail| Ok(plan))
                        .await?
                }
            };
            known[w].store(appended.next_pos, Relaxed);
            Ok(())
        }
    })
    .await?;
    Ok(row(
        if one_doc { "append_one_doc" } else { "append" },
        lat,
        Some(elapsed),
    ))
}

/// Stores every op of automerge-paper in a document and compacts it; returns its id.
async fn stored_trace(db: &TestDb) -> Result<(DocumentId, Rga)> {
    let trace = editing_traces::sequential("automerge-paper")
        .context("reading the automerge-paper trace")?;
    let mut doc = Rga::new();
    for p in trace.patches() {
        if p.del() > 0 {
            doc.delete(SiteId(7), p.pos(), p.del())?;
        }
        if !p.ins().is_empty() {
            doc.insert(SiteId(7), p.pos(), p.ins())?;
        }
    }
    let svc = Service::new(db.store(2)?, ChannelPublisher::new(), settings());
    let id = svc
        .create_document(&UserId("bench".into()), "automerge-paper", None)
        .await?
        .document
        .id;
    for chunk in doc.ops_since(&VersionVector::new()).chunks(2000) {
        svc.store().append_ops(id, chunk, ReplicaId(1)).await?;
    }
    svc.compact(id, true)
        .await?
        .context("compaction wrote no snapshot")?;
    anyhow::ensure!(
        svc.get_document(id, &UserId("bench".into())).await?.text == trace.end_content,
        "stored text differs from the trace"
    );
    Ok((id, doc))
}

async fn cold_load(db: &TestDb, id: DocumentId, loads: usize) -> Result<Row> {
    let user = UserId("bench".into());
    let mut lat = Vec::new();
    for _ in 0..loads {
        let svc = Service::new(db.store(1)?, ChannelPublisher::new(), settings());
        // Connect outside the timer: a warm pool, a cold cache.
        drop(svc.store().pool().get().await?);
        let t = Instant::now();
        let v = svc.get_document(id, &user).await?;
        lat.push(t.elapsed());
        anyhow::ensure!(!v.text.is_empty());
    }
    Ok(row("cold_load", lat, None))
}

async fn cold_load_rows(db: &TestDb, doc: &Rga, loads: usize) -> Result<Row> {
    let store = db.store(1)?;
    let client = store.pool().get().await?;
    client
        .batch_execute(
            "CREATE TABLE bench_snapshot_rows (document_order integer PRIMARY KEY, ssn integer, sum bigint, sid bigint, seq bigint, value text, tombstone boolean)",
        )
        .await?;
    // One row per element in document order, as the seed's snapshot table would hold them.
    let ops = doc.ops_since(&VersionVector::new());
    let mut rows: Vec<(i64, i64, String)> = Vec::new();
    for op in &ops {
        if let Op::Insert { id, text, .. } = op {
            for (k, c) in text.chars().enumerate() {
                rows.push((
                    (id.sum + k as u64) as i64,
                    (id.seq + k as u64) as i64,
                    c.to_string(),
                ));
            }
        }
    }
    for (i, chunk) in rows.chunks(5000).enumerate() {
        let order: Vec<i32> = (0..chunk.len()).map(|k| (i * 5000 + k) as i32).collect();
        let sums: Vec<i64> = chunk.iter().map(|r| r.0).collect();
        let seqs: Vec<i64> = chunk.iter().map(|r| r.1).collect();
        let values: Vec<&str> = chunk.iter().map(|r| r.2.as_str()).collect();
        client
            .execute(
                "INSERT INTO bench_snapshot_rows SELECT o, 1, s, 7, q, v, false FROM unnest($1::int4[], $2::int8[], $3::int8[], $4::text[]) AS t(o, s, q, v)",
                &[&order, &sums, &seqs, &values],
            )
            .await?;
    }
    let mut lat = Vec::new();
    for _ in 0..loads {
        let t = Instant::now();
        let got = client.query("SELECT ssn, sum, sid, seq, value, tombstone FROM bench_snapshot_rows ORDER BY document_order", &[]).await?;
        lat.push(t.elapsed());
        anyhow::ensure!(got.len() == rows.len());
    }
    Ok(row("cold_load_rows", lat, None))
}

async fn warm_refresh(db: &TestDb, id: DocumentId, loads: usize) -> Result<Row> {
    let user = UserId("bench".into());
    let warm = Service::new(db.store(1)?, ChannelPublisher::new(), settings());
    warm.get_document(id, &user).await?;
    let other = db.store(1)?;
    let site = SiteId(999);
    let mut next = 0u64;
    let mut lat = Vec::new();
    for _ in 0..loads {
        let ops: Vec<Op> = (0..100)
            .map(|k| typing_op(site, next + k))
            .map(|op| shift_after_head(op, 200_000))
            .collect();
        next += 100;
        other.append_ops(id, &ops, ReplicaId(2)).await?;
        let t = Instant::now();
        warm.get_document(id, &user).await?;
        lat.push(t.elapsed());
    }
    Ok(row("warm_refresh", lat, None))
}

/// Lifts a typing op's sums above the stored document's, so it is valid after everything.
fn shift_after_head(op: Op, by: u64) -> Op {
    match op {
        Op::Insert {
            mut id,
            after,
            text,
        } => {
            id.sum += by;
            let after = after.map(|mut a| {
                a.sum += by;
                a
            });
            Op::Insert { id, after, text }
        }
        other => other,
    }
}

/// Runs the store benchmarks; prints a table or JSON lines.
pub fn run(args: &Args) -> Result<bool> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let db = TestDb::new().await.context(
            "PostgreSQL from DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres)",
        )?;
        let n = args.connections;
        let want = |case: &str| args.only.as_deref().is_none_or(|o| case.contains(o));
        eprintln!("store: raw_insert...");
        let mut rows = vec![raw_insert(&db, n, args.seconds).await?];
        if want("raw_update_one_row") {
            rows.push(raw_update_one_row(&db, n, args.seconds).await?);
        }
        if want("append") {
            eprintln!("store: append...");
            rows.push(append(&db, n, args.seconds, false).await?);
        }
        if want("append_one_doc") {
            eprintln!("store: append_one_doc...");
            rows.push(append(&db, n, args.seconds, true).await?);
        }
        if want("edit_request") {
            eprintln!("store: edit_request...");
            rows.push(edit_request(&db, n, args.seconds, false).await?);
        }
        if want("edit_request_one_doc") {
            eprintln!("store: edit_request_one_doc (8, 32 writers)...");
            rows.push(edit_request(&db, 8, args.seconds, true).await?);
            rows.push(edit_request(&db, 32, args.seconds, true).await?);
        }
        if args.only.is_none() {
            eprintln!("store: storing automerge-paper...");
            let (id, doc) = stored_trace(&db).await?;
            eprintln!("store: cold_load...");
            rows.push(cold_load(&db, id, args.loads).await?);
            rows.push(cold_load_rows(&db, &doc, args.loads.min(10)).await?);
            eprintln!("store: warm_refresh...");
            rows.push(warm_refresh(&db, id, args.loads).await?);
        }
        if args.json {
            for r in &rows {
                println!("{}", serde_json::to_string(r)?);
            }
        } else {
            let raw = rows[0].ops_per_s.unwrap_or(f64::NAN);
            let raw_p50 = rows[0].p50_ms;
            println!(
                "\nstore, {n} connections, {} s per throughput case, {} loads",
                args.seconds, args.loads
            );
            println!(
                "{:<24} {:>10} {:>8} {:>9} {:>9} {:>9}",
                "case", "ops/s", "×raw", "p50 ms", "p50 ×raw", "p99 ms"
            );
            for r in &rows {
                let (ops, ratio) = match r.ops_per_s {
                    Some(o) => (format!("{o:.0}"), format!("{:.2}", o / raw)),
                    None => ("-".into(), "-".into()),
                };
                let p50_ratio = match r.ops_per_s {
                    Some(_) => format!("{:.2}", r.p50_ms / raw_p50),
                    None => "-".into(),
                };
                println!(
                    "{:<24} {:>10} {:>8} {:>9.3} {:>9} {:>9.3}",
                    r.case, ops, ratio, r.p50_ms, p50_ratio, r.p99_ms
                );
            }
        }
        Ok(true)
    })
}
