//! Test support shared by this crate's tests, the function crates' tests and the benchmarks:
//! a fresh PostgreSQL database per test (created from `DATABASE_URL`, migrated with the real
//! migrations, dropped afterwards) and an in-process publisher that records what would go to SNS.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_postgres::NoTls;

use crate::error::AppError;
use crate::message::Outbound;
use crate::pg::PgDocumentStore;
use crate::publisher::{EventPublisher, PublishError};

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
        let db = TestDb { name, config };
        db.store(1)?.migrate().await?;
        Ok(db)
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
