//! Entry point of the `realtime` Lambda: wiring only.

#![recursion_limit = "256"]

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use collab::realtime::{ApiGatewayPoster, push_hook};
use collab::{Config, PgDocumentStore, Service, Settings, SnsPublisher};
use lambda_runtime::{LambdaEvent, service_fn};
use realtime::Realtime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let mut config = Config::from_env()?;
    config.resolve_secret().await?;
    let endpoint = config
        .ws_management_endpoint
        .clone()
        .ok_or("environment variable WS_MANAGEMENT_ENDPOINT: is not set")?;
    let store = PgDocumentStore::connect(&config.database, config.pool_size)?;
    store.migrate().await?;
    let publisher = SnsPublisher::from_config(&config).await;
    let poster = ApiGatewayPoster::new(&endpoint, &config.aws_region).await;
    let service = Service::new(store.clone(), publisher, Settings::from_config(&config))
        .with_push(push_hook(store.clone(), poster.clone()));
    let local_secret = std::env::var("AUTH_LOCAL_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .map(String::into_bytes);
    let oidc = match std::env::var("JWT_ISSUER").ok().filter(|s| !s.is_empty()) {
        Some(issuer) => {
            let audiences = std::env::var("JWT_AUDIENCE")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect();
            Some(collab::auth::OidcVerifier::discover(&issuer, audiences).await?)
        }
        None => None,
    };
    let app = Realtime {
        service,
        store,
        poster,
        local_secret,
        oidc,
    };
    let app = &app;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            Ok::<_, lambda_runtime::Error>(app.handle(event.payload).await)
        },
    ))
    .await
}
