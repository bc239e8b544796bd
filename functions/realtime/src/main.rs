//! Entry point of the `realtime` Lambda: wiring only.

#![recursion_limit = "256"]

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use collab::Runtime;
use collab::auth::{OidcVerifier, local_secret_from_env};
use collab::service::Sockets;
use lambda_runtime::{LambdaEvent, service_fn};
use realtime::Realtime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    collab::logging::init();
    let runtime = Runtime::from_env().await?;
    collab::metrics::init("realtime", runtime.config.replica.0);
    let poster = runtime
        .poster
        .ok_or("environment variable WS_MANAGEMENT_ENDPOINT: is not set")?;
    let app = Realtime {
        sockets: Sockets::new(runtime.service, poster),
        local_secret: local_secret_from_env()?,
        oidc: OidcVerifier::from_env()?,
    };
    let app = &app;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            Ok::<_, lambda_runtime::Error>(app.handle(event.payload).await)
        },
    ))
    .await
}
