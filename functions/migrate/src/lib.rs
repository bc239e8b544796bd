//! The migrate function: the deploy step that owns the schema (issues 13 and 16).
//!
//! The api, integrate and realtime functions connect as a login of the role `collab_app`, which
//! reads and writes the tables and cannot change the schema; at start they only check the
//! schema version (one query). This function connects as the administrator, applies the
//! migrations, and makes (or re-passwords) the functions' login from its own secret.
//!
//! - Invoked by CloudFormation as a custom resource (`RequestType` Create / Update / Delete,
//!   answered with a PUT to the event's `ResponseURL`): Create and Update migrate; Delete
//!   changes nothing (the data outlives the stack). A failure is reported as `FAILED` with its
//!   reason, so a deploy stops at once instead of waiting an hour for an answer.
//! - Invoked with anything else (or run from the command line by `make dev` and the tests):
//!   migrates and returns the [`Report`].

use std::time::Duration;

use collab::{AppError, PgDocumentStore};
use serde::Serialize;
use serde_json::{Value, json};

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Versions of the migrations applied now (empty when the schema was current).
    pub applied: Vec<i32>,
    /// The schema version after the run.
    pub schema_version: i32,
    /// The functions' login made or updated, if one was configured.
    pub app_login: Option<String>,
}

/// How long one answer to CloudFormation may take, and how many tries it gets.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TRIES: usize = 3;

/// The physical id of the schema resource (stable, so an Update never replaces it).
pub const PHYSICAL_ID: &str = "collab-schema";

/// Shared per container.
pub struct Migrator {
    /// The store, connected as the administrator.
    pub store: PgDocumentStore,
    /// The functions' login: user and password.
    pub app_login: Option<(String, String)>,
    /// For the answers to CloudFormation.
    pub http: reqwest::Client,
}

impl Migrator {
    /// A migrator over `store`, making `app_login` when given.
    pub fn new(store: PgDocumentStore, app_login: Option<(String, String)>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(RESPONSE_TIMEOUT)
            .build()
            .unwrap_or_default();
        Migrator {
            store,
            app_login,
            http,
        }
    }

    /// Applies the pending migrations and makes the functions' login.
    pub async fn run(&self) -> Result<Report, AppError> {
        let applied = self.store.migrate().await?;
        if let Some((user, password)) = &self.app_login {
            self.store.ensure_app_login(user, password).await?;
        }
        Ok(Report {
            applied,
            schema_version: self.store.schema_version().await?,
            app_login: self.app_login.as_ref().map(|(u, _)| u.clone()),
        })
    }

    /// Handles one invocation (see the module doc). For a custom resource, `Err` only when
    /// CloudFormation could not be answered.
    pub async fn handle(&self, event: Value) -> Result<Value, AppError> {
        let Some(kind) = event.get("RequestType").and_then(Value::as_str) else {
            let report = self.run().await?;
            tracing::info!(?report, "migrated");
            return serde_json::to_value(report).map_err(|e| AppError::Internal(e.to_string()));
        };
        let outcome = match kind {
            "Delete" => Ok(None),
            "Create" | "Update" => self.run().await.map(Some),
            other => Err(AppError::BadRequest(format!(
                "unknown RequestType {other:?}"
            ))),
        };
        let answer = match &outcome {
            Ok(report) => {
                tracing::info!(request = kind, ?report, "custom resource done");
                json!({
                    "Status": "SUCCESS",
                    "Data": {"SchemaVersion": report.as_ref().map(|r| r.schema_version)},
                })
            }
            Err(e) => {
                tracing::error!(request = kind, error = %e, "custom resource failed");
                let mut reason = e.to_string();
                reason.truncate(2000);
                json!({"Status": "FAILED", "Reason": reason})
            }
        };
        let mut answer = answer;
        let field = |k: &str| event.get(k).cloned().unwrap_or(Value::Null);
        for k in ["StackId", "RequestId", "LogicalResourceId"] {
            answer[k] = field(k);
        }
        answer["PhysicalResourceId"] = event
            .get("PhysicalResourceId")
            .cloned()
            .unwrap_or_else(|| Value::from(PHYSICAL_ID));
        if answer["Reason"].is_null() {
            answer["Reason"] = Value::from("see the migrate function's log");
        }
        let url = event
            .get("ResponseURL")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                AppError::BadRequest("a custom resource event without ResponseURL".into())
            })?;
        self.answer(url, &answer).await?;
        Ok(answer)
    }

    /// PUTs `answer` to the pre-signed `url` (no content type: the signature covers none).
    async fn answer(&self, url: &str, answer: &Value) -> Result<(), AppError> {
        let body = answer.to_string();
        let mut last = String::new();
        for _ in 0..RESPONSE_TRIES {
            match self.http.put(url).body(body.clone()).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("answered {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(AppError::Unavailable(format!(
            "CloudFormation's response URL {last}"
        )))
    }
}
