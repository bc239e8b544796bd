//! Entry point of the `integrate` Lambda: wiring only.

#![recursion_limit = "256"]

use collab::Runtime;
use integrate::Integrator;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    collab::logging::init();
    let runtime = Runtime::from_env().await?;
    collab::metrics::init("integrate", runtime.config.replica.0);
    let integrator = Integrator {
        service: runtime.service,
        topic_arn: runtime.config.sns_topic.clone(),
    };
    let integrator = &integrator;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let report = integrator.handle(event.payload).await?;
        Ok::<_, lambda_runtime::Error>(report)
    }))
    .await
}
