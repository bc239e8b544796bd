//! The PostgreSQL adapter of the storage ports ([`crate::ports`]): one handle over a deadpool
//! pool, and one file per area implementing its port (`documents`, `ops`, `snapshots`,
//! `sessions`, `connections`, `outbox`, `keys`), plus the embedded migrations from
//! `migrations/` (refinery).

mod connections;
mod documents;
mod keys;
mod ops;
mod outbox;
mod sessions;
mod snapshots;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::error::AppError;

#[cfg(feature = "migrations")]
mod embedded {
    refinery::embed_migrations!("../../migrations");
}

/// The schema version this build needs: the latest migration in `migrations/`.
pub const SCHEMA_VERSION: i32 = {
    match i32::from_str_radix(env!("COLLAB_SCHEMA_VERSION"), 10) {
        Ok(v) => v,
        Err(_) => panic!("COLLAB_SCHEMA_VERSION is not a number"),
    }
};

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgDocumentStore {
    pool: Pool,
}

/// How long the store waits for PostgreSQL before it gives up (and the request answers 503).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waits {
    /// Opening a connection (TCP, TLS, authentication).
    pub connect: Duration,
    /// Waiting for a free connection of the pool.
    pub pool_wait: Duration,
    /// One statement on the server (`statement_timeout`; zero leaves it to the server, as
    /// behind RDS Proxy, whose `InitQuery` sets it). Idle transactions get twice this.
    pub statement: Duration,
    /// A pooled connection unused for this long is checked (one empty query, at most `connect`
    /// long) before it is handed out: after a thaw, a dead one is replaced instead of hanging.
    pub idle_check: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Waits {
            connect: Duration::from_secs(3),
            pool_wait: Duration::from_secs(3),
            statement: Duration::from_secs(5),
            idle_check: Duration::from_secs(10),
        }
    }
}

/// An arbitrary key for the advisory lock that serializes migrations across containers.
#[cfg(feature = "migrations")]
const MIGRATION_LOCK: i64 = 0x636f_6c6c_6162;

impl PgDocumentStore {
    /// A store over an existing pool.
    pub fn new(pool: Pool) -> Self {
        PgDocumentStore { pool }
    }

    /// A store with a new pool of `size` connections. With `sslmode=require` connections use TLS
    /// and verify the server against the system's root certificates (RDS Proxy's are public);
    /// otherwise they are plain (local servers often offer TLS with a self-signed certificate,
    /// which verification would refuse).
    ///
    /// Every wait is bounded ([`Waits`]): connecting, waiting for a pooled connection, and
    /// (through the `options` startup parameter, unless the URL gives its own) each statement
    /// and each idle transaction on the server.
    pub fn connect(config: &tokio_postgres::Config, size: usize) -> Result<Self, AppError> {
        Self::connect_with(config, size, Waits::default())
    }

    /// [`PgDocumentStore::connect`] with other bounds.
    pub fn connect_with(
        config: &tokio_postgres::Config,
        size: usize,
        waits: Waits,
    ) -> Result<Self, AppError> {
        let mut config = config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(waits.connect);
        }
        config.keepalives(true);
        if config.get_options().is_none() && !waits.statement.is_zero() {
            // A statement that runs longer fails (57014); so does a transaction left idle, which
            // would otherwise hold its locks while its client is frozen.
            config.options(format!(
                "-c statement_timeout={} -c idle_in_transaction_session_timeout={} -c plan_cache_mode=force_generic_plan",
                waits.statement.as_millis(),
                (waits.statement * 2).as_millis()
            ));
        }
        let config = &config;
        let recycling = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if config.get_ssl_mode() != tokio_postgres::config::SslMode::Require {
            Manager::from_config(config.clone(), NoTls, recycling)
        } else {
            Manager::from_config(config.clone(), tls()?, recycling)
        };
        let idle_check = waits.idle_check;
        let check_within = waits.connect;
        let pool = Pool::builder(manager)
            .max_size(size.max(1))
            // A connection idle for a while may be dead without knowing it (Lambda froze the
            // container; a proxy or NAT dropped the flow): check it with an empty query, and
            // open a new one if that fails or stalls.
            .pre_recycle(deadpool_postgres::Hook::async_fn(move |client, metrics| {
                Box::pin(async move {
                    if metrics.last_used() < idle_check {
                        return Ok(());
                    }
                    match tokio::time::timeout(check_within, client.simple_query("")).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(deadpool_postgres::HookError::Backend(e)),
                        Err(_) => Err(deadpool_postgres::HookError::Message(
                            "an idle connection did not answer".into(),
                        )),
                    }
                })
            }))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(waits.pool_wait))
            .create_timeout(Some(waits.connect))
            .recycle_timeout(Some(waits.connect))
            .build()
            .map_err(|e| AppError::Internal(format!("building the connection pool: {e}")))?;
        Ok(PgDocumentStore { pool })
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Applies the migrations that have not run yet; returns the versions applied. Runs as the
    /// administrator in the deploy step (the `migrate` function), never in the functions, whose
    /// role cannot change the schema; concurrent runs take turns through an advisory lock.
    #[cfg(feature = "migrations")]
    pub async fn migrate(&self) -> Result<Vec<i32>, AppError> {
        let mut client = self.pool.get().await?;
        // A migration may rewrite a large table: no statement timeout for this session (behind
        // RDS Proxy, its InitQuery sets one).
        client.batch_execute("SET statement_timeout = 0").await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let result = embedded::migrations::runner()
            .run_async(&mut **client)
            .await;
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await?;
        let report = result.map_err(|e| AppError::Internal(format!("migrations failed: {e}")))?;
        Ok(report
            .applied_migrations()
            .iter()
            .map(|m| m.version() as i32)
            .collect())
    }

    /// The schema version this build needs: its latest migration (read off the file names at
    /// build time).
    pub fn needed_schema_version() -> i32 {
        SCHEMA_VERSION
    }

    /// The database's schema version (its latest applied migration; 0 before any), in one
    /// query.
    pub async fn schema_version(&self) -> Result<i32, AppError> {
        let client = self.pool.get().await?;
        match client
            .query_one(
                "SELECT COALESCE(max(version), 0)::int4 FROM refinery_schema_history",
                &[],
            )
            .await
        {
            Ok(row) => Ok(row.get(0)),
            // No history table: never migrated.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// What a function checks at start instead of migrating: the schema is at least the
    /// version this build needs (a newer one is fine while a deploy rolls out, since migrations
    /// only add). Behind, it fails naming both versions and the fix.
    pub async fn check_schema(&self) -> Result<i32, AppError> {
        let (have, need) = (self.schema_version().await?, Self::needed_schema_version());
        if have < need {
            return Err(AppError::Internal(format!(
                "the database schema is at version {have}, this build needs {need}: run the migrate step (the Migrate custom resource in AWS; `cargo run -p migrate` locally)"
            )));
        }
        Ok(have)
    }

    /// Makes `user` a login of the functions' role `collab_app` (reads and writes the tables,
    /// cannot change the schema) with `password`, creating it or resetting its password. The
    /// statement is built by PostgreSQL's `format` (`%I`, `%L`), so neither value can inject SQL.
    pub async fn ensure_app_login(&self, user: &str, password: &str) -> Result<(), AppError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT format(CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = $1)
                                    THEN 'ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L'
                                    ELSE 'CREATE ROLE %I WITH LOGIN PASSWORD %L' END, $1::text, $2::text),
                        format('GRANT collab_app TO %I', $1::text),
                        $1::text = current_user",
                &[&user, &password],
            )
            .await?;
        if row.get::<_, bool>(2) {
            return Err(AppError::BadRequest(format!(
                "the functions' login {user:?} must not be the administrator the migrations run as"
            )));
        }
        client.batch_execute(row.get::<_, &str>(0)).await?;
        client.batch_execute(row.get::<_, &str>(1)).await?;
        Ok(())
    }
}

/// A TLS connector trusting the system's root certificates.
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, AppError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| AppError::Internal(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Converts an id component to PostgreSQL's `bigint`.
fn to_i64(v: u64, what: &str) -> Result<i64, AppError> {
    i64::try_from(v).map_err(|_| AppError::BadRequest(format!("{what} {v} is out of range")))
}
