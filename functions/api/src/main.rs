//! Entry point of the `api` Lambda: wiring only.

#![recursion_limit = "256"]

use api::{App, AuthConfig, router};
use collab::Runtime;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    collab::logging::init();
    let runtime = Runtime::from_env().await?;
    collab::metrics::init("api", runtime.config.replica.0);
    lambda_http::run(router(App::new(runtime.service, AuthConfig::from_env()?))).await
}
