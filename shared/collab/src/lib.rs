//! Documents on PostgreSQL over the `rga` CRDT: the storage port and its PostgreSQL adapter, the
//! use-cases (create, edit by ops or by index, catch up, integrate other replicas' ops, compact,
//! sweep the outbox), the SNS publisher, configuration from the environment, and the messages
//! replicas exchange. Function crates are thin layers over [`Service`].

#![deny(missing_docs)]

pub mod auth;
mod cache;
pub mod config;
pub mod error;
pub mod ids;
pub mod logging;
pub mod message;
pub mod metrics;
pub mod model;
pub mod pg;
pub mod publisher;
pub mod realtime;
pub mod runtime;
pub mod service;
pub mod store;
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod testing;

pub use config::{Config, ConfigError, Limits};
pub use error::AppError;
pub use ids::{DocumentId, ReplicaId, UserId};
pub use pg::{PgDocumentStore, Waits};
pub use publisher::{EventPublisher, SnsPublisher};
pub use runtime::Runtime;
pub use service::{Service, Settings};
