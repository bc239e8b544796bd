//! Test support shared by this crate's tests, the function crates' tests and the benchmarks:
//! a fresh PostgreSQL database per test (created from `DATABASE_URL`, migrated with the real
//! migrations, dropped afterwards) and an in-process publisher that records what would go to SNS.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_postgres::NoTls;

use crate::adapters::pg::PgDocumentStore;
use crate::error::AppError;
use crate::ports::{EventPublisher, PublishError};
use crate::wire::Outbound;

/// Where tests find PostgreSQL unless `DATABASE_URL` says otherwise.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The server tests use.
pub fn admin_config() -> tokio_postgres::Config {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    url.parse()
        .unwrap_or_else(|e| panic!("DATABASE_URL {url:?} is not a PostgreSQL URL: {e}"))
}

async fn admin_execute(sql: &str) -> Result<(), AppError> {
    let (client, conn) = admin_config().connect(NoTls).await.map_err(|e| {
        AppError::Unavailable(format!(
            "cannot reach PostgreSQL at DATABASE_URL (default {DEFAULT_DATABASE_URL}): {e}"
        ))
    })?;
    let task = tokio::spawn(conn);
    client.batch_execute(sql).await?;
    drop(client);
    let _ = task.await;
    Ok(())
}

/// A database of its own, dropped (with `FORCE`) when this value is dropped.
pub struct TestDb {
    name: String,
    config: tokio_postgres::Config,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestDb {
    /// Creates an empty database and applies the migrations.
    pub async fn new() -> Result<TestDb, AppError> {
        let db = Self::empty().await?;
        db.store(1)?.migrate().await?;
        Ok(db)
    }

    /// Creates an empty database, not migrated (for the migrate step's own tests).
    pub async fn empty() -> Result<TestDb, AppError> {
        let name = format!(
            "collab_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .get(..8)
                .unwrap_or("0")
        );
        admin_execute(&format!("CREATE DATABASE \"{name}\"")).await?;
        let mut config = admin_config();
        config.dbname(&name);
        Ok(TestDb { name, config })
    }

    /// Connection settings of the database.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// A store with its own pool of `connections`.
    pub fn store(&self, connections: usize) -> Result<PgDocumentStore, AppError> {
        PgDocumentStore::connect(&self.config, connections)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop runs inside a test's runtime: use a thread with a runtime of its own.
        let joined = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(admin_execute(&sql)).ok()
        })
        .join();
        if !matches!(joined, Ok(Some(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

/// Records every published message; can be told to fail (to exercise the outbox).
#[derive(Clone, Default)]
pub struct ChannelPublisher {
    messages: Arc<Mutex<Vec<Outbound>>>,
    failing: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
}

impl ChannelPublisher {
    /// A publisher that records.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes later publishes fail (`true`) or succeed.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Publish calls so far, failed ones included.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Removes and returns the messages published so far.
    pub fn take(&self) -> Vec<Outbound> {
        std::mem::take(&mut *self.messages.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl EventPublisher for ChannelPublisher {
    async fn publish(&self, message: &Outbound) -> Result<(), PublishError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(PublishError("the channel is failing on purpose".into()));
        }
        self.messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message.clone());
        Ok(())
    }
    /// One call for the whole batch, as SNS's PublishBatch.
    async fn publish_batch(&self, messages: &[Outbound]) -> Vec<Result<(), PublishError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return messages
                .iter()
                .map(|_| Err(PublishError("the channel is failing on purpose".into())))
                .collect();
        }
        self.messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(messages.iter().cloned());
        messages.iter().map(|_| Ok(())).collect()
    }
}

/// A TCP server that accepts connections and never answers: a dependency that stalls (a frozen
/// database, an SNS endpoint that hangs). Returns its address; it runs until the runtime ends.
pub async fn stalled_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// A TCP proxy in front of PostgreSQL that counts round trips: every time the client sends
/// after the server last spoke (pipelined statements sent together count once). Point a store
/// at [`RoundTrips::config`] and read [`RoundTrips::count`] before and after a request.
pub struct RoundTrips {
    config: tokio_postgres::Config,
    trips: Arc<AtomicU64>,
    generation: Arc<AtomicU64>,
}

impl RoundTrips {
    /// Starts a proxy to the server `db` uses.
    pub async fn start(db: &TestDb) -> RoundTrips {
        let upstream = match (db.config.get_hosts().first(), db.config.get_ports().first()) {
            (Some(tokio_postgres::config::Host::Tcp(h)), port) => {
                format!("{h}:{}", port.copied().unwrap_or(5432))
            }
            _ => "127.0.0.1:5432".to_owned(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port");
        let port = listener.local_addr().expect("its address").port();
        let trips = Arc::new(AtomicU64::new(0));
        let generation = Arc::new(AtomicU64::new(0));
        let counter = trips.clone();
        let current = generation.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let born = current.load(Ordering::SeqCst);
                let alive = {
                    let current = current.clone();
                    move || current.load(Ordering::SeqCst) == born
                };
                tokio::spawn(relay(client, server, counter.clone(), alive));
            }
        });
        // `host` and `port` add to a Config's lists: build one that has only the proxy.
        let mut config = tokio_postgres::Config::new();
        config.host("127.0.0.1").port(port);
        if let Some(user) = db.config.get_user() {
            config.user(user);
        }
        if let Some(password) = db.config.get_password() {
            config.password(password);
        }
        if let Some(name) = db.config.get_dbname() {
            config.dbname(name);
        }
        RoundTrips {
            config,
            trips,
            generation,
        }
    }

    /// Makes every connection open so far go silent (bytes are swallowed, nothing is closed),
    /// as a flow a NAT or proxy dropped while a container was frozen; new connections work.
    pub fn silence_open_connections(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Connection settings that go through the proxy.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// Round trips so far.
    pub fn count(&self) -> u64 {
        self.trips.load(Ordering::SeqCst)
    }
}

async fn relay(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    trips: Arc<AtomicU64>,
    alive: impl Fn() -> bool + Clone,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Whether the server spoke last (so the client's next bytes start a round trip).
    let server_last = Arc::new(AtomicBool::new(true));
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = {
        let server_last = server_last.clone();
        let alive = alive.clone();
        async move {
            let mut buf = vec![0u8; 64 << 10];
            while let Ok(n) = cr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if !alive() {
                    continue;
                }
                if server_last.swap(false, Ordering::SeqCst) {
                    trips.fetch_add(1, Ordering::SeqCst);
                }
                if sw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n) = sr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if !alive() {
                continue;
            }
            server_last.store(true, Ordering::SeqCst);
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(up, down);
}
