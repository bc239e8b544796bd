//! What every function builds once per container, from the environment: the checked
//! configuration, the store (its schema version checked), and the service over them.

use crate::adapters::ApiGatewayPoster;
use crate::service::push_hook;
use crate::{Config, PgDocumentStore, Service, Settings, SnsPublisher};

/// The error a function's start-up ends with; lambda_runtime's and lambda_http's `Error`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The production service: documents on PostgreSQL, broadcast through SNS.
pub type PgService = Service<PgDocumentStore, SnsPublisher>;

/// A container's long-lived parts.
pub struct Runtime {
    /// The configuration, with the database secret resolved.
    pub config: Config,
    /// The pool, its schema checked.
    pub store: PgDocumentStore,
    /// PostToConnection client, when `WS_MANAGEMENT_ENDPOINT` is set.
    pub poster: Option<ApiGatewayPoster>,
    /// The use-cases; they push new ops to WebSocket editors when `poster` is set.
    pub service: PgService,
}

impl Runtime {
    /// Reads and checks the environment (naming any bad variable), resolves the database secret,
    /// connects the pool, checks the schema version (one query; the migrations run in the deploy
    /// step) and builds the SNS and WebSocket clients. A database that is down does not end the
    /// start-up (see [`check_schema`]).
    pub async fn from_env() -> Result<Self, BoxError> {
        let mut config = Config::from_env()?;
        config.resolve_secret().await?;
        let waits = crate::Waits {
            statement: std::time::Duration::from_millis(config.statement_timeout_ms),
            ..Default::default()
        };
        let store = PgDocumentStore::connect_with(&config.database, config.pool_size, waits)?;
        check_schema(&store).await?;
        let publisher = SnsPublisher::from_config(&config).await;
        let mut service = Service::new(store.clone(), publisher, Settings::from_config(&config));
        let poster = match &config.ws_management_endpoint {
            Some(endpoint) => Some(ApiGatewayPoster::new(endpoint, &config.aws_region).await),
            None => None,
        };
        if let Some(poster) = &poster {
            service = service.with_push(push_hook(store.clone(), poster.clone()));
        }
        Ok(Runtime {
            config,
            store,
            poster,
            service,
        })
    }
}

/// The schema is migrated by the deploy step (the functions' role could not do it): a schema
/// behind this build ends the start-up, naming the fix. A database that does not answer (it is
/// restarting, failing over) does not: a container that ended here would fail every request
/// until Lambda replaced it, while one that starts answers 503 until the database is back. The
/// check is retried for about a second first.
async fn check_schema(store: &PgDocumentStore) -> Result<(), BoxError> {
    let mut pause = std::time::Duration::from_millis(150);
    for attempt in 1.. {
        match store.check_schema().await {
            Ok(_) => return Ok(()),
            Err(crate::AppError::Unavailable(e)) if attempt < 4 => {
                tracing::warn!(error = %e, attempt, "the database does not answer at start; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(crate::AppError::Unavailable(e)) => {
                tracing::warn!(error = %e, "the database does not answer at start; starting without the schema check");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
