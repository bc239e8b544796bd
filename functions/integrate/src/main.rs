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
        service: with_push(
            Service::new(store.clone(), publisher, Settings::from_config(&config)),
            &store,
            &config,
        )
        .await,
        topic_arn: config.sns_topic.clone(),
    };
    let integrator = &integrator;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let report = integrator.handle(event.payload).await?;
        Ok::<_, lambda_runtime::Error>(report)
    }))
    .await
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
