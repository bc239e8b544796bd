//! `bench -- load`: simulated editors typing against a running stack (`scripts/load.sh` starts
//! `make dev REPLICAS=3` with release builds and runs this against it).
//!
//! Each editor opens a session over HTTP and a WebSocket on its replica (editors are spread over
//! the replicas), then types in bursts at `--cps` characters a second on average, as the client in
//! `clients/js` sends: one unacknowledged `edits` message at a time, keys typed meanwhile join the
//! next one, a message unanswered for 10 s is resent with the same `request_id` on a fresh socket.
//! It measures, per row of editors × documents:
//! - edit latency: an `edits` message sent to its ack;
//! - push latency: the message sent to its ops arriving at each other editor of the document, apart
//!   for editors on the same replica and on other replicas (the latter includes SNS, the relay and
//!   integrate: the integration lag plus the push);
//! - errors (refusals, timeouts, closed sockets), acknowledged characters and messages a second,
//!   the most PostgreSQL client connections seen (sampled every 500 ms);
//! - after the typing stops, how long until every replica serves the same text for each document.
//!
//! Rows run at 1×, 2×, 4× the editors (`--scales`) until one gives: errors above 1% of messages, or
//! push latency to other replicas above 2 s at p99.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use rga::{CharId, Op};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// How long an `edits` message may wait for its ack before the editor resends it.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// The mean pause between two keys of a burst.
const KEY_INTERVAL_MS: (u64, u64) = (60, 120);

/// Arguments of `bench load`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file `make dev` writes its URLs and tokens to (`DEV_READY_FILE`).
    #[arg(long)]
    ready: PathBuf,
    /// The stack's PostgreSQL server, to count its client connections.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Seconds of typing per row.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Rows as editors×documents at 1×, comma-separated.
    #[arg(long, default_value = "100x1,100x20")]
    shapes: String,
    /// Multiples of each shape's editors, run in order until one gives.
    #[arg(long, default_value = "1,2,4")]
    scales: String,
    /// Characters each editor types a second, on average.
    #[arg(long, default_value_t = 5.0)]
    cps: f64,
    /// Seed of the typing.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// One JSON object per row instead of a table.
    #[arg(long)]
    json: bool,
}

/// The stack's endpoints.
struct Stack {
    api: Vec<String>,
    ws: Vec<String>,
    token: String,
    http: reqwest::Client,
}

impl Stack {
    fn read(path: &PathBuf) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        let vars: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let mut api = Vec::new();
        let mut ws = Vec::new();
        if let (Some(a), Some(w)) = (vars.get("API_URL"), vars.get("WS_URL")) {
            api.push(a.to_string());
            ws.push(w.to_string());
        }
        for i in 1.. {
            match (
                vars.get(format!("API_URL_{i}").as_str()),
                vars.get(format!("WS_URL_{i}").as_str()),
            ) {
                (Some(a), Some(w)) => {
                    api.push(a.to_string());
                    ws.push(w.to_string());
                }
                _ => break,
            }
        }
        anyhow::ensure!(!api.is_empty(), "no API_URL in {}", path.display());
        let token = vars.get("DEV_TOKEN").context("no DEV_TOKEN")?.to_string();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Stack {
            api,
            ws,
            token,
            http,
        })
    }

    async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }
}

/// Latencies in log-spaced buckets (2% wide): bounded memory however many samples.
#[derive(Default, Clone)]
struct Hist {
    buckets: Vec<u64>,
    n: u64,
}

impl Hist {
    const STEP: f64 = 1.02;

    fn record(&mut self, d: Duration) {
        let us = d.as_micros().max(1) as f64;
        let b = (us.ln() / Self::STEP.ln()) as usize;
        if self.buckets.len() <= b {
            self.buckets.resize(b + 1, 0);
        }
        self.buckets[b] += 1;
        self.n += 1;
    }

    /// The `p` quantile in ms (NaN when empty).
    fn ms(&self, p: f64) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        let rank = ((self.n as f64 - 1.0) * p).round() as u64;
        let mut seen = 0;
        for (b, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen > rank {
                return Self::STEP.powf(b as f64 + 0.5) / 1000.0;
            }
        }
        f64::NAN
    }
}

/// What every editor of a row records.
#[derive(Default)]
struct Shared {
    /// When the message that made an op was sent, and from which replica.
    sent: HashMap<CharId, (Instant, usize)>,
    /// Ops that arrived before their sender's ack (when and on which replica).
    early: HashMap<CharId, Vec<(Instant, usize)>>,
    edit: Hist,
    push_same: Hist,
    push_other: Hist,
    errors: HashMap<String, u64>,
}

impl Shared {
    fn arrived(&mut self, id: CharId, at: Instant, replica: usize) {
        match self.sent.get(&id) {
            Some(&(sent, from)) => self.push(sent, from, at, replica),
            None => self.early.entry(id).or_default().push((at, replica)),
        }
    }

    fn push(&mut self, sent: Instant, from: usize, at: Instant, replica: usize) {
        let d = at.saturating_duration_since(sent);
        if from == replica {
            self.push_same.record(d);
        } else {
            self.push_other.record(d);
        }
    }

    fn acked(&mut self, id: CharId, sent: Instant, replica: usize) {
        self.sent.insert(id, (sent, replica));
        for (at, r) in self.early.remove(&id).unwrap_or_default() {
            self.push(sent, replica, at, r);
        }
    }

    fn error(&mut self, what: impl Into<String>) {
        *self.errors.entry(what.into()).or_default() += 1;
    }
}

/// A finished row.
struct Row {
    editors: usize,
    docs: usize,
    messages: u64,
    chars: u64,
    seconds: f64,
    edit: Hist,
    push_same: Hist,
    push_other: Hist,
    errors: HashMap<String, u64>,
    connections: u64,
    converged_s: Option<f64>,
}

impl Row {
    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Why this row is where the system gives, if it is.
    fn gives(&self) -> Option<String> {
        let errors = self.error_count();
        if errors * 100 > self.messages.max(1) {
            return Some(format!("{errors} errors in {} messages", self.messages));
        }
        let lag = self.push_other.ms(0.99);
        if lag > 2000.0 {
            return Some(format!("push to other replicas p99 {lag:.0} ms > 2 s"));
        }
        if self.converged_s.is_none() {
            return Some("replicas did not converge within 60 s".into());
        }
        None
    }

    fn json(&self) -> Value {
        json!({
            "editors": self.editors, "documents": self.docs,
            "messages_per_s": self.messages as f64 / self.seconds,
            "chars_per_s": self.chars as f64 / self.seconds,
            "edit_p50_ms": self.edit.ms(0.5), "edit_p99_ms": self.edit.ms(0.99),
            "push_same_p50_ms": self.push_same.ms(0.5), "push_same_p99_ms": self.push_same.ms(0.99),
            "push_other_p50_ms": self.push_other.ms(0.5), "push_other_p99_ms": self.push_other.ms(0.99),
            "errors": self.errors, "max_db_connections": self.connections,
            "converged_after_s": self.converged_s, "gives": self.gives(),
        })
    }
}

/// Runs the load benchmark.
pub fn run(args: &Args) -> Result<bool> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let stack = Arc::new(Stack::read(&args.ready)?);
        let mut shapes = Vec::new();
        for s in args.shapes.split(',') {
            let (e, d) = s
                .split_once('x')
                .with_context(|| format!("shape {s}: editors x documents"))?;
            shapes.push((e.trim().parse::<usize>()?, d.trim().parse::<usize>()?));
        }
        let scales: Vec<usize> = args
            .scales
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()?;
        let mut rows = Vec::new();
        for &(editors, docs) in &shapes {
            for &scale in &scales {
                let editors = editors * scale;
                eprintln!(
                    "load: {editors} editors on {docs} document(s), {} s...",
                    args.seconds
                );
                let row = run_row(&stack, args, editors, docs).await?;
                let gives = row.gives();
                if args.json {
                    println!("{}", row.json());
                } else {
                    eprintln!("{}", row.json());
                }
                rows.push(row);
                if let Some(why) = gives {
                    eprintln!("load: gives at {editors} editors on {docs} document(s): {why}");
                    break;
                }
            }
        }
        if !args.json {
            print_table(args, &rows);
        }
        Ok(true)
    })
}

fn print_table(args: &Args, rows: &[Row]) {
    println!(
        "\nload, {} s per row, {} chars/s per editor in bursts, replicas: editors spread evenly",
        args.seconds, args.cps
    );
    println!(
        "{:>7} {:>5} {:>9} {:>8} {:>9} {:>9} {:>10} {:>10} {:>11} {:>11} {:>7} {:>6} {:>6}",
        "editors",
        "docs",
        "msgs/s",
        "chars/s",
        "edit p50",
        "edit p99",
        "same p50",
        "same p99",
        "other p50",
        "other p99",
        "errors",
        "db",
        "conv s"
    );
    for r in rows {
        let conv = r.converged_s.map_or("-".to_string(), |s| format!("{s:.1}"));
        println!(
            "{:>7} {:>5} {:>9.0} {:>8.0} {:>9.1} {:>9.1} {:>10.1} {:>10.1} {:>11.1} {:>11.1} {:>7} {:>6} {:>6}",
            r.editors,
            r.docs,
            r.messages as f64 / r.seconds,
            r.chars as f64 / r.seconds,
            r.edit.ms(0.5),
            r.edit.ms(0.99),
            r.push_same.ms(0.5),
            r.push_same.ms(0.99),
            r.push_other.ms(0.5),
            r.push_other.ms(0.99),
            r.error_count(),
            r.connections,
            conv
        );
        if let Some(why) = r.gives() {
            println!("        gives: {why}; errors: {:?}", r.errors);
        }
    }
    println!(
        "latencies in ms; same/other: push to editors on the same / another replica; db: most PostgreSQL client connections"
    );
}

/// The starting text of each document: a few hundred lines of code.
fn initial_text() -> String {
    (0..200)
        .map(|i| format!("    let value_{i} = compute({i});\n"))
        .collect()
}

async fn run_row(stack: &Arc<Stack>, args: &Args, editors: usize, docs: usize) -> Result<Row> {
    let replicas = stack.api.len();
    let content = initial_text();
    let mut ids = Vec::new();
    for d in 0..docs {
        let body = json!({"title": format!("load-{d}.rs"), "content": content});
        let (status, doc) = stack
            .request(
                reqwest::Method::POST,
                &format!("{}/documents", stack.api[0]),
                Some(body),
            )
            .await?;
        anyhow::ensure!(status == 201, "creating a document: {status} {doc}");
        ids.push(doc["id"].as_str().context("document id")?.to_string());
    }
    // Every document reaches every replica before its editors open sessions there.
    for id in &ids {
        for api in &stack.api[1..] {
            let deadline = Instant::now() + Duration::from_secs(60);
            while stack
                .request(reqwest::Method::GET, &format!("{api}/documents/{id}"), None)
                .await?
                .0
                != 200
            {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "document {id} did not reach {api}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let shared = Arc::new(Mutex::new(Shared::default()));
    let messages = Arc::new(AtomicU64::new(0));
    let chars = Arc::new(AtomicU64::new(0));
    let start_len = content.chars().count();
    let (ready_tx, mut ready_rx) = mpsc::channel::<Result<()>>(editors);
    let go = Arc::new(tokio::sync::Notify::new());
    let typing = Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for e in 0..editors {
        let editor = Editor {
            stack: stack.clone(),
            replica: (e / docs) % replicas,
            doc: ids[e % docs].clone(),
            shared: shared.clone(),
            messages: messages.clone(),
            chars: chars.clone(),
            rng: ChaCha8Rng::seed_from_u64(
                args.seed.wrapping_mul(1_000_003).wrapping_add(e as u64),
            ),
            cps: args.cps,
            pos: 0,
            start_len,
            socket: Arc::default(),
        };
        let (ready, go) = (ready_tx.clone(), go.clone());
        tasks.push(tokio::spawn(editor.run(ready, go, typing)));
        // Connections open a few at a time, as editors arrive.
        if e % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for _ in 0..editors {
        ready_rx
            .recv()
            .await
            .context("an editor ended before it was ready")??;
    }
    // The PostgreSQL connections, sampled while the editors type.
    let stop = Arc::new(tokio::sync::Notify::new());
    let sampler = tokio::spawn(sample_connections(args.database_url.clone(), stop.clone()));
    let started = Instant::now();
    go.notify_waiters();
    for t in tasks {
        t.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.notify_waiters();
    let connections = sampler.await?;
    let converged_s = converged(stack, &ids).await?;
    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Row {
        editors,
        docs,
        messages: messages.load(Ordering::Relaxed),
        chars: chars.load(Ordering::Relaxed),
        seconds,
        edit: s.edit.clone(),
        push_same: s.push_same.clone(),
        push_other: s.push_other.clone(),
        errors: std::mem::take(&mut s.errors),
        connections,
        converged_s,
    })
}

/// Seconds until every replica serves the same text for every document (None after 60 s).
async fn converged(stack: &Stack, ids: &[String]) -> Result<Option<f64>> {
    let start = Instant::now();
    'docs: for id in ids {
        while start.elapsed() < Duration::from_secs(60) {
            let mut texts = Vec::new();
            for api in &stack.api {
                let (status, body) = stack
                    .request(reqwest::Method::GET, &format!("{api}/documents/{id}"), None)
                    .await?;
                texts.push(
                    (status == 200)
                        .then(|| body["text"].as_str().map(str::to_owned))
                        .flatten(),
                );
            }
            if texts[0].is_some() && texts.iter().all(|t| *t == texts[0]) {
                continue 'docs;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        return Ok(None);
    }
    Ok(Some(start.elapsed().as_secs_f64()))
}

/// The most client connections the PostgreSQL server had, sampled every 500 ms until `stop`.
async fn sample_connections(url: Option<String>, stop: Arc<tokio::sync::Notify>) -> u64 {
    let Some(url) = url else { return 0 };
    let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
        eprintln!("load: cannot connect to {url} to count connections");
        return 0;
    };
    tokio::spawn(conn);
    let mut most = 0;
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        let q = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()";
        if let Ok(row) = client.query_one(q, &[]).await {
            most = most.max(row.get::<_, i64>(0) as u64);
        }
        tokio::select! {
            _ = &mut stopped => return most,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// One simulated editor.
struct Editor {
    stack: Arc<Stack>,
    replica: usize,
    doc: String,
    shared: Arc<Mutex<Shared>>,
    messages: Arc<AtomicU64>,
    chars: Arc<AtomicU64>,
    rng: ChaCha8Rng,
    cps: f64,
    /// Where it types, in chars (the text only grows, so it stays in range).
    pos: usize,
    start_len: usize,
    /// The generation of the socket now (a closed older one is not news).
    socket: Arc<AtomicU64>,
}

/// What the socket reader hands the typing loop.
enum Answer {
    Ack {
        request_id: String,
        ops: Vec<CharId>,
    },
    Refused {
        request_id: String,
        error: String,
    },
    /// The socket of that generation closed.
    Closed(u64),
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
type Sink = futures_util::stream::SplitSink<Ws, Message>;

impl Editor {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn open_session(&self) -> Result<u64> {
        let url = format!(
            "{}/documents/{}/sessions?omit=text,snapshot",
            self.stack.api[self.replica], self.doc
        );
        for _ in 0..20 {
            match self.stack.request(reqwest::Method::POST, &url, None).await {
                Ok((201, body)) => return body["session"].as_u64().context("session"),
                Ok((status, body)) => self.lock().error(format!("session {status}: {body}")),
                Err(e) => self.lock().error(format!("session: {e}")),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!("no session on replica {}", self.replica + 1)
    }

    async fn connect(&self, session: u64, answers: mpsc::UnboundedSender<Answer>) -> Result<Sink> {
        let url = format!(
            "{}?document={}&token={}",
            self.stack.ws[self.replica], self.doc, self.stack.token
        );
        let (ws, _) = tokio::time::timeout(ACK_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .context("connect timed out")??;
        let (sink, stream) = ws.split();
        let generation = self.socket.fetch_add(1, Ordering::Relaxed) + 1;
        tokio::spawn(read(
            stream,
            session,
            self.replica,
            (generation, self.socket.clone()),
            self.shared.clone(),
            answers,
        ));
        Ok(sink)
    }

    async fn run(
        mut self,
        ready: mpsc::Sender<Result<()>>,
        go: Arc<tokio::sync::Notify>,
        typing: Duration,
    ) -> Result<()> {
        let gone = go.notified();
        let session = match self.open_session().await {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send(Err(e)).await;
                return Ok(());
            }
        };
        let (tx, mut answers) = mpsc::unbounded_channel();
        let mut sink = match self.connect(session, tx.clone()).await {
            Ok(s) => Some(s),
            Err(e) => {
                let _ = ready.send(Err(e)).await;
                return Ok(());
            }
        };
        self.pos = self.rng.random_range(0..=self.start_len);
        let _ = ready.send(Ok(())).await;
        gone.await;
        let start = tokio::time::Instant::now();
        let end = start + typing;
        // The typing: bursts of keys with pauses between, `cps` on average; the first burst
        // starts at a random point of one cycle, so editors do not type in step.
        let mut next_key = start + Duration::from_millis(self.rng.random_range(0..1500));
        let mut burst_left = 0u32;
        let mut pending = String::new();
        // The message in flight: its request id, text, body, when sent.
        let mut in_flight: Option<(String, String, String, Instant)> = None;
        let mut deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
        let mut n = 0u64;
        loop {
            if in_flight.is_none() && !pending.is_empty() {
                n += 1;
                let rid = format!("{session}-{n}");
                let text = std::mem::take(&mut pending);
                let body = json!({"type": "edits", "session": session, "request_id": rid,
                    "edits": [{"index": self.pos, "delete": 0, "insert": text}]})
                .to_string();
                in_flight = Some((rid, text, body, Instant::now()));
                deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
                self.send(&mut sink, session, &tx, in_flight.as_ref()).await;
            }
            let typing_over = tokio::time::Instant::now() >= end;
            if typing_over && in_flight.is_none() && pending.is_empty() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next_key), if !typing_over => {
                    pending.push(*b"abcdefghijklmnopqrstuvwxyz  ();\n".choose(&mut self.rng).unwrap_or(&b'x') as char);
                    if burst_left == 0 {
                        burst_left = self.rng.random_range(3..=12);
                    }
                    burst_left -= 1;
                    let gap = if burst_left > 0 {
                        self.rng.random_range(KEY_INTERVAL_MS.0..=KEY_INTERVAL_MS.1)
                    } else {
                        // The pause after a burst brings the average to `cps`: a cycle of
                        // b keys lasts b / cps seconds.
                        let mean_burst = 7.5;
                        let cycle = mean_burst / self.cps * 1000.0;
                        let typed = mean_burst * (KEY_INTERVAL_MS.0 + KEY_INTERVAL_MS.1) as f64 / 2.0;
                        let pause = (cycle - typed).max(0.0);
                        self.rng.random_range(pause * 0.5..=pause * 1.5 + 1.0) as u64
                    };
                    next_key += Duration::from_millis(gap);
                }
                answer = answers.recv() => match answer {
                    Some(Answer::Ack { request_id, ops }) => {
                        if let Some((rid, text, _, sent)) = &in_flight
                            && *rid == request_id
                        {
                            let mut s = self.lock();
                            s.edit.record(sent.elapsed());
                            for id in ops {
                                s.acked(id, *sent, self.replica);
                            }
                            drop(s);
                            let k = text.chars().count();
                            self.pos += k;
                            self.messages.fetch_add(1, Ordering::Relaxed);
                            self.chars.fetch_add(k as u64, Ordering::Relaxed);
                            in_flight = None;
                        }
                    }
                    Some(Answer::Refused { request_id, error }) => {
                        if in_flight.as_ref().is_some_and(|f| f.0 == request_id) {
                            self.lock().error(format!("refused: {error}"));
                            // Retried with the same request id after a pause.
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            self.send(&mut sink, session, &tx, in_flight.as_ref()).await;
                        }
                    }
                    Some(Answer::Closed(generation)) => {
                        if generation != self.socket.load(Ordering::Relaxed) {
                            continue;
                        }
                        if sink.take().is_some() {
                            self.lock().error("socket closed");
                        }
                        if in_flight.is_some() {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            self.send(&mut sink, session, &tx, in_flight.as_ref()).await;
                        }
                    }
                    None => bail!("the answers channel closed"),
                },
                _ = tokio::time::sleep_until(deadline), if in_flight.is_some() => {
                    self.lock().error("ack timeout");
                    sink = None;
                    deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
                    self.send(&mut sink, session, &tx, in_flight.as_ref()).await;
                }
            }
            if tokio::time::Instant::now() > end + Duration::from_secs(60) {
                self.lock()
                    .error("gave up: unacknowledged 60 s after the typing ended");
                break;
            }
        }
        if let Some(mut s) = sink {
            let _ = s.close().await;
        }
        Ok(())
    }

    /// Sends the message in flight, on a fresh socket if there is none.
    async fn send(
        &self,
        sink: &mut Option<Sink>,
        session: u64,
        tx: &mpsc::UnboundedSender<Answer>,
        in_flight: Option<&(String, String, String, Instant)>,
    ) {
        let Some((_, _, body, _)) = in_flight else {
            return;
        };
        if sink.is_none() {
            match self.connect(session, tx.clone()).await {
                Ok(s) => *sink = Some(s),
                Err(e) => {
                    self.lock().error(format!("connect: {e}"));
                    return;
                }
            }
        }
        if let Some(s) = sink
            && s.send(Message::text(body.clone())).await.is_err()
        {
            self.lock().error("send failed");
            *sink = None;
        }
    }
}

/// Reads one socket: acks and refusals to the typing loop, pushed ops of other editors to the
/// arrival records.
async fn read(
    mut stream: futures_util::stream::SplitStream<Ws>,
    session: u64,
    replica: usize,
    (generation, current): (u64, Arc<AtomicU64>),
    shared: Arc<Mutex<Shared>>,
    answers: mpsc::UnboundedSender<Answer>,
) {
    while let Some(Ok(m)) = stream.next().await {
        if current.load(Ordering::Relaxed) != generation {
            // Replaced by a fresh socket: what this one still gets is not the editor's.
            return;
        }
        let at = Instant::now();
        let Message::Text(text) = m else { continue };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let ops = || -> Vec<CharId> {
            v["ops"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| serde_json::from_value::<Op>(o.clone()).ok())
                .map(|o| o.id().id())
                .collect()
        };
        match v["type"].as_str() {
            Some("ops") => {
                let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                for id in ops().into_iter().filter(|id| id.sid.0 != session) {
                    s.arrived(id, at, replica);
                }
            }
            Some("ack") => {
                let request_id = v["request_id"].as_str().unwrap_or("").to_string();
                let _ = answers.send(Answer::Ack {
                    request_id,
                    ops: ops(),
                });
            }
            Some("error") => {
                let request_id = v["request_id"].as_str().unwrap_or("").to_string();
                let error = v["error"].as_str().unwrap_or("?").to_string();
                let _ = answers.send(Answer::Refused { request_id, error });
            }
            _ => {}
        }
    }
    let _ = answers.send(Answer::Closed(generation));
}
