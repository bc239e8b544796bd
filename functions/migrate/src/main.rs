//! Entry point of the `migrate` function: wiring only. Under Lambda (`AWS_LAMBDA_RUNTIME_API`
//! set) it serves invocations; otherwise it migrates once, prints the report and exits (what
//! `make dev` and the test scripts run).
//!
//! Environment: the database as for every function (`DATABASE_URL`, or `DB_HOST`, `DB_NAME`,
//! `DB_PORT`, `DB_SSLMODE`, with `DB_SECRET_ARN` naming the administrator's secret), and the
//! functions' login: `APP_DB_SECRET_ARN` (a secret with `username` and `password`), or
//! `APP_DB_USER` and `APP_DB_PASSWORD`. Neither: the migrations run and no login is made.

use collab::config::{database_from_lookup, read_db_secret};
use collab::{PgDocumentStore, Waits};
use lambda_runtime::{LambdaEvent, service_fn};
use migrate::Migrator;
use serde_json::Value;

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    collab::logging::init();
    let mut database = database_from_lookup(&env)?;
    let region = env("AWS_REGION").unwrap_or_else(|| "us-east-1".into());
    let endpoint = env("AWS_ENDPOINT_URL");
    if let Some(arn) = env("DB_SECRET_ARN") {
        let (user, password) =
            read_db_secret(&region, endpoint.as_deref(), &arn, "DB_SECRET_ARN").await?;
        database.user(user).password(password);
    }
    let app_login = match (env("APP_DB_SECRET_ARN"), env("APP_DB_USER")) {
        (Some(arn), _) => {
            Some(read_db_secret(&region, endpoint.as_deref(), &arn, "APP_DB_SECRET_ARN").await?)
        }
        (None, Some(user)) => Some((user, env("APP_DB_PASSWORD").unwrap_or_default())),
        (None, None) => None,
    };
    // Migrations may run longer than a request: no statement timeout here.
    let waits = Waits {
        statement: std::time::Duration::ZERO,
        ..Waits::default()
    };
    let store = PgDocumentStore::connect_with(&database, 1, waits)?;
    let migrator = Migrator::new(store, app_login);
    if env("AWS_LAMBDA_RUNTIME_API").is_none() {
        let report = migrator.run().await?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let migrator = &migrator;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, lambda_runtime::Error>(migrator.handle(event.payload).await?)
    }))
    .await
}
