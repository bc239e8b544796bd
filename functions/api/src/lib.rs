//! The REST API function: API Gateway HTTP API (payload v2) requests, routed with axum, each
//! handler a plain async function that translates between HTTP and [`collab::Service`].
//!
//! Identity comes from the JWT authorizer's claims in the request context (`sub`); without an
//! authorizer (local runs), from an HS256 bearer token checked against `AUTH_LOCAL_SECRET`.
//! Errors map through [`collab::AppError`] to a status and `{"error", "message"}`.

mod auth;
mod body;
mod error;
mod routes;
#[doc(hidden)]
pub mod testing;

use std::sync::Arc;

use collab::ports::EventPublisher;
use collab::{PgDocumentStore, Service};

pub use auth::{AuthConfig, Caller, LocalClaims, issue_local_token};
pub use routes::router;

/// What every handler shares: built once per container.
pub struct App<P> {
    /// The use-cases.
    pub service: Service<PgDocumentStore, P>,
    /// How callers are identified.
    pub auth: AuthConfig,
    /// Request limits (body size, batch size, document length).
    pub limits: collab::Limits,
}

impl<P: EventPublisher + 'static> App<P> {
    /// Wraps the parts for the router.
    pub fn new(service: Service<PgDocumentStore, P>, auth: AuthConfig) -> Arc<Self> {
        let limits = service.settings().limits;
        Arc::new(App {
            service,
            auth,
            limits,
        })
    }
}
