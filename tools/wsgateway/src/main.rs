//! `wsgateway`: the local WebSocket gateway (see the library docs).
//!
//! `wsgateway --listen 127.0.0.1:9201 --invoke http://127.0.0.1:9101/2015-03-31/functions/realtime/invocations --stage dev`

use std::sync::Arc;

use wsgateway::{Gateway, HttpInvoker, router};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut listen = "127.0.0.1:9201".to_owned();
    let mut invoke = "http://127.0.0.1:9101/2015-03-31/functions/realtime/invocations".to_owned();
    let mut stage = "dev".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))?;
        match a.as_str() {
            "--listen" => listen = value,
            "--invoke" => invoke = value,
            "--stage" => stage = value,
            other => anyhow::bail!("unknown argument {other} (--listen, --invoke, --stage)"),
        }
    }
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let domain = listener.local_addr()?.to_string();
    let gateway = Gateway::new(Arc::new(HttpInvoker::new(invoke)), &stage, &domain);
    tracing::info!(%listen, %stage, "websocket gateway ready");
    axum::serve(listener, router(gateway))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
