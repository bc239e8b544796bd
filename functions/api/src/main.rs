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
        Service::new(store, publisher, Settings::from_config(&config)),
        AuthConfig::from_env(),
    );
    lambda_http::run(router(app)).await
}
