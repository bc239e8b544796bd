//! `bench -- realtime`: edit-to-other-client latency through the local WebSocket gateway, with
//! 2, 10 and 50 clients on one document, beside the HTTP round trip of the edit itself, in one
//! run against the same PostgreSQL.
//!
//! Each edit goes through the api router (an API Gateway v2 event, in process); its commit pushes
//! the new ops to every connection through the real `aws-sdk-apigatewaymanagement` client and the
//! gateway's management API; every other client's socket (a real WebSocket on 127.0.0.1) records
//! when the edit's ops arrive. The realtime function runs in process behind the gateway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use api::{App, AuthConfig};
use collab::adapters::ApiGatewayPoster;
use collab::service::{Sockets, push_hook};
use collab::testing::{ChannelPublisher, TestDb};
use collab::{Limits, ReplicaId, Service, Settings};
use futures_util::StreamExt;
use realtime::Realtime;
use serde_json::{Value, json};
use wsgateway::Gateway;

const SECRET: &[u8] = b"bench-realtime-secret";

/// Arguments of `bench realtime`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Edits per client count.
    #[arg(long, default_value_t = 200)]
    edits: usize,
}

fn sdk() -> aws_config::SdkConfig {
    let creds = aws_credential_types::Credentials::new("bench", "bench", None, None, "bench");
    aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(creds))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .http_client(collab::config::https_client())
        .build()
}

async fn http(
    app: &Arc<App<ChannelPublisher>>,
    method: &str,
    path: &str,
    body: Value,
) -> Result<Value> {
    let (status, json) = api::testing::send(
        app,
        &api::testing::apigw_event(method, path, "", Some(&body), "alice"),
    )
    .await;
    anyhow::ensure!(
        (200..300).contains(&status),
        "{method} {path}: {status} {json}"
    );
    Ok(json)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len().max(1) as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

/// Runs the realtime benchmark.
pub fn run(args: &Args) -> Result<bool> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let db = TestDb::new()
            .await
            .context("PostgreSQL from DATABASE_URL")?;
        let store = db.store(8)?;
        let settings = Settings {
            replica: ReplicaId(1),
            ssn: 1,
            limits: Limits::default(),
            compact_after: 1 << 40,
            cache_docs: 8,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let poster = ApiGatewayPoster::from_sdk(&sdk(), &format!("http://{addr}/dev"));
        let hook = push_hook(store.clone(), poster.clone());
        let realtime = Arc::new(Realtime {
            sockets: Sockets::new(
                Service::new(store.clone(), ChannelPublisher::new(), settings.clone())
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
        tokio::spawn(async move { axum::serve(listener, wsgateway::router(gateway)).await });
        let service = Service::new(store.clone(), ChannelPublisher::new(), settings);
        let app = App::new(service.with_push(hook), AuthConfig::default());
        let mut rows = Vec::new();
        for clients in [2usize, 10, 50] {
            eprintln!("realtime: {clients} clients...");
            let body = json!({"title": "bench.rs", "content": "fn main() {}\n"});
            let doc = http(&app, "POST", "/documents", body).await?;
            let id = doc["id"].as_str().context("document id")?.to_owned();
            let opened = http(
                &app,
                "POST",
                &format!("/documents/{id}/sessions"),
                json!({}),
            )
            .await?;
            let session = opened["session"].as_u64().context("session")?;
            // Arrival times of each edit's marker, per receiving client.
            let arrivals: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Arc::default();
            let token = collab::auth::issue_local_token(SECRET, "alice", 3600);
            let mut readers = Vec::new();
            for _ in 0..clients {
                let url = format!("ws://{addr}/?document={id}&token={token}");
                let (ws, _) = tokio_tungstenite::connect_async(url).await?;
                let arrivals = arrivals.clone();
                readers.push(tokio::spawn(record_arrivals(ws, arrivals)));
            }
            let (mut rtt, mut push) = (Vec::new(), Vec::new());
            for e in 0..args.edits {
                let marker = format!("<{clients}:{e}>");
                let start = Instant::now();
                let edit = json!({"session": session, "edits": [{"index": 0, "insert": marker}]});
                http(&app, "POST", &format!("/documents/{id}/edits"), edit).await?;
                rtt.push(start.elapsed());
                // Wait until every client has it (bounded), then record each arrival.
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    let got = arrivals
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&marker)
                        .map_or(0, Vec::len);
                    if got >= clients || Instant::now() > deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                let times = arrivals
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&marker)
                    .unwrap_or_default();
                let n = times.len();
                anyhow::ensure!(
                    n == clients,
                    "edit {e}: {n} of {clients} clients received it"
                );
                push.extend(times.iter().map(|t| t.duration_since(start)));
            }
            for r in readers {
                r.abort();
            }
            rtt.sort();
            push.sort();
            let (h50, h99) = (percentile(&rtt, 0.5), percentile(&rtt, 0.99));
            let (p50, p99) = (percentile(&push, 0.5), percentile(&push, 0.99));
            rows.push((clients, h50, h99, p50, p99));
        }
        if args.json {
            for (clients, h50, h99, p50, p99) in &rows {
                let row = json!({
                    "clients": clients,
                    "http_p50_ms": h50,
                    "http_p99_ms": h99,
                    "push_p50_ms": p50,
                    "push_p99_ms": p99,
                });
                println!("{row}");
            }
        } else {
            let edits = args.edits;
            println!("\nrealtime, {edits} edits per row, latency from the start of the HTTP edit");
            println!(
                "{:>8} {:>12} {:>12} {:>14} {:>14}",
                "clients", "http p50 ms", "http p99 ms", "push p50 ms", "push p99 ms"
            );
            for (clients, h50, h99, p50, p99) in &rows {
                println!("{clients:>8} {h50:>12.2} {h99:>12.2} {p50:>14.2} {p99:>14.2}");
            }
        }
        Ok(true)
    })
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Records, for every inserted text pushed to `ws`, when it arrived.
async fn record_arrivals(ws: Ws, arrivals: Arc<Mutex<HashMap<String, Vec<Instant>>>>) {
    let (_, mut read) = ws.split();
    while let Some(Ok(m)) = read.next().await {
        let now = Instant::now();
        let Ok(v) = serde_json::from_str::<Value>(m.to_text().unwrap_or("")) else {
            continue;
        };
        let texts = v["ops"].as_array().into_iter().flatten();
        let mut arrived = arrivals.lock().unwrap_or_else(|p| p.into_inner());
        for t in texts.filter_map(|op| op["text"].as_str()) {
            arrived.entry(t.to_owned()).or_default().push(now);
        }
    }
}
