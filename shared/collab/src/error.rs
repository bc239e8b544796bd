//! Domain errors and their one mapping to HTTP: a status and a JSON body
//! `{"error": "<code>", "message": "..."}`. 4xx messages explain; 5xx messages stay generic and
//! the detail goes to the log.

use serde::Serialize;

/// Everything a use-case can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is malformed (bad JSON, bad field).
    #[error("{0}")]
    BadRequest(String),
    /// No valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed (for example ops of another user's session).
    #[error("{0}")]
    Forbidden(String),
    /// Unknown (or not visible to the caller).
    #[error("{0}")]
    NotFound(String),
    /// Conflicts with the stored state: an op id reused with other content, a base version not
    /// received yet, a stale or foreign session.
    #[error("{0}")]
    Conflict(String),
    /// A body, batch or document over its limit.
    #[error("{0}")]
    TooLarge(String),
    /// An op that breaks the S4Vector rules.
    #[error("invalid operation: {0}")]
    InvalidOp(#[from] rga::OpError),
    /// An idempotency key reused with a different request.
    #[error("{0}")]
    KeyReused(String),
    /// An idempotency key that another request with the same key recorded first (internal: the
    /// use-case answers with that request's answer).
    #[error("idempotency key recorded concurrently")]
    KeyRecorded,
    /// A replication message whose claims do not match its origin (a site of another replica,
    /// a change stamped by another): dropped and counted, never applied.
    #[error("forged replication message: {0}")]
    Forged(String),
    /// A storage failure worth retrying (database unreachable).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON body of an error response.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub error: &'static str,
    /// Human-readable explanation (generic for 5xx).
    pub message: String,
}

impl AppError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            AppError::BadRequest(_) => 400,
            AppError::Unauthorized(_) => 401,
            AppError::Forbidden(_) => 403,
            AppError::NotFound(_) => 404,
            AppError::Conflict(_) => 409,
            AppError::TooLarge(_) => 413,
            AppError::InvalidOp(_) => 422,
            AppError::KeyReused(_) => 422,
            AppError::KeyRecorded => 409,
            AppError::Forged(_) => 400,
            AppError::Unavailable(_) => 503,
            AppError::Internal(_) => 500,
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "malformed",
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::TooLarge(_) => "too_large",
            AppError::InvalidOp(_) => "invalid_op",
            AppError::KeyReused(_) => "idempotency_key_reused",
            AppError::KeyRecorded => "conflict",
            AppError::Forged(_) => "forged",
            AppError::Unavailable(_) => "unavailable",
            AppError::Internal(_) => "internal",
        }
    }

    /// The body to send; 5xx bodies never carry the detail.
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            AppError::Unavailable(_) => {
                "the service is temporarily unavailable; retry later".to_owned()
            }
            AppError::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        ErrorBody {
            error: self.code(),
            message,
        }
    }

    /// Whether a retry may succeed (integrate returns these to SNS so that it redelivers).
    pub fn is_transient(&self) -> bool {
        matches!(self, AppError::Unavailable(_) | AppError::Internal(_))
    }

    pub(crate) fn not_found(what: impl std::fmt::Display) -> Self {
        AppError::NotFound(format!("{what} not found"))
    }
}

impl From<tokio_postgres::Error> for AppError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.as_db_error().and_then(|d| d.constraint()) == Some("idempotency_keys_pkey") {
            return AppError::KeyRecorded;
        }
        if e.is_closed() || e.as_db_error().is_none() || e.code().is_some_and(retryable) {
            AppError::Unavailable(e.to_string())
        } else {
            AppError::Internal(e.to_string())
        }
    }
}

/// SQLSTATEs that say "not now" rather than "never": the server is shutting down or restarting
/// (class 57P, e.g. `admin_shutdown` on every session when PostgreSQL restarts), the connection
/// broke (class 08), the server is out of connections or memory (class 53), a serialization
/// failure or deadlock (class 40), a lock or statement timeout (`55P03`, `57014`). The request
/// answers 503 with `Retry-After`, and a delivery is retried.
fn retryable(code: &tokio_postgres::error::SqlState) -> bool {
    let c = code.code();
    c.starts_with("08")
        || c.starts_with("40")
        || c.starts_with("53")
        || c.starts_with("57P")
        || c == "55P03"
        || c == "57014"
}

impl From<deadpool_postgres::PoolError> for AppError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        AppError::Unavailable(e.to_string())
    }
}

impl From<rga::EditError> for AppError {
    fn from(e: rga::EditError) -> Self {
        match e {
            rga::EditError::NotReceived { .. } => AppError::Conflict(e.to_string()),
            rga::EditError::Op(op) => op_error(op),
            other => AppError::BadRequest(other.to_string()),
        }
    }
}

/// Maps an op refusal: a reused id is a conflict, a full buffer or document is too large, the
/// rest break the S4Vector rules.
pub fn op_error(e: rga::OpError) -> AppError {
    match e {
        rga::OpError::ConflictingDuplicate { .. } => AppError::Conflict(e.to_string()),
        rga::OpError::BufferFull { .. }
        | rga::OpError::DocumentTooLarge { .. }
        | rga::OpError::TooLarge { .. } => AppError::TooLarge(e.to_string()),
        other => AppError::InvalidOp(other),
    }
}
