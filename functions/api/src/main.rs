//! Entry point of the `api` Lambda: wiring only.

#![recursion_limit = "256"]

use std::sync::Arc;

use api::{App, AuthConfig, router};
use collab::{Config, PgDocumentStore, Service, Settings, SnsPublisher};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let mut config = Config::from_env()?;
    config.resolve_secret().await?;
    let store = PgDocumentStore::connect(&config.database, config.pool_size)?;
    store.migrate().await?;
    let publisher = SnsPublisher::from_config(&config).await;
    let app: Arc<App<SnsPublisher>> = App::new(
        with_push(
            Service::new(store.clone(), publisher, Settings::from_config(&config)),
            &store,
            &config,
        )
        .await,
        AuthConfig::from_env(),
    );
    lambda_http::run(router(app)).await
}

/// Pushes new ops to WebSocket editors when `WS_MANAGEMENT_ENDPOINT` is set.
async fn with_push(
    service: Service<PgDocumentStore, SnsPublisher>,
    store: &PgDocumentStore,
    config: &Config,
) -> Service<PgDocumentStore, SnsPublisher> {
    match &config.ws_management_endpoint {
        Some(endpoint) => {
            let poster =
                collab::realtime::ApiGatewayPoster::new(endpoint, &config.aws_region).await;
            service.with_push(collab::realtime::push_hook(store.clone(), poster))
        }
        None => service,
    }
}
