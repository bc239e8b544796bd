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
    /// step) and builds the SNS and WebSocket clients.
    pub async fn from_env() -> Result<Self, BoxError> {
        let mut config = Config::from_env()?;
        config.resolve_secret().await?;
        let waits = crate::Waits {
            statement: std::time::Duration::from_millis(config.statement_timeout_ms),
            ..Default::default()
        };
        let store = PgDocumentStore::connect_with(&config.database, config.pool_size, waits)?;
        // The schema is migrated by the deploy step; the functions' role could not do it.
        store.check_schema().await?;
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
