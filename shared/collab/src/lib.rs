//! Documents on PostgreSQL over the `rga` CRDT, in the shape the house style asks for:
//!
//! - [`ports`]: small traits by area (documents, op log, snapshots, sessions, connections,
//!   outbox, idempotency keys, the publisher, the connection gateway);
//! - [`service`]: the use-cases above the ports, in files by family, the write path in one
//!   file (`service/write.rs`) that can be reviewed alone;
//! - [`adapters`]: the ports on PostgreSQL, SNS and API Gateway's management API;
//! - [`wire`]: the messages replicas exchange and the WebSocket protocol;
//! - configuration from the environment, authentication, logging and metrics.
//!
//! Function crates are thin layers over [`Service`]: they parse an event, call a use-case and
//! shape the response.

#![deny(missing_docs)]

pub mod adapters;
pub mod auth;
mod cache;
pub mod config;
pub mod error;
pub mod ids;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod ports;
pub mod runtime;
pub mod service;
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod testing;
pub mod wire;

pub use adapters::{ApiGatewayPoster, PgDocumentStore, SnsPublisher, Waits};
pub use config::{Config, ConfigError, Limits};
pub use error::AppError;
pub use ids::{DocumentId, ReplicaId, UserId};
pub use ports::{DocumentStore, EventPublisher};
pub use runtime::Runtime;
pub use service::{Service, Settings};
