//! Entry point of the `integrate` Lambda: wiring only.

#![recursion_limit = "256"]

use collab::{Config, PgDocumentStore, Service, Settings, SnsPublisher};
use integrate::Integrator;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let mut config = Config::from_env()?;
    config.resolve_secret().await?;
    let store = PgDocumentStore::connect(&config.database, config.pool_size)?;
    store.migrate().await?;
    let publisher = SnsPublisher::from_config(&config).await;
    let integrator = Integrator {
        service: Service::new(store, publisher, Settings::from_config(&config)),
        topic_arn: config.sns_topic.clone(),
    };
    let integrator = &integrator;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let report = integrator.handle(event.payload).await?;
        Ok::<_, lambda_runtime::Error>(report)
    }))
    .await
}
