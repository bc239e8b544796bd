//! The ports: what the use-cases in [`crate::service`] need from the world, one small trait per
//! area. The adapters in [`crate::adapters`] implement them (PostgreSQL for the storage ports,
//! SNS for [`EventPublisher`], API Gateway's management API for [`ConnectionPoster`]); tests use
//! the same adapters against real servers, and [`crate::testing`] adds a recording publisher.
//!
//! [`DocumentStore`] names the storage ports together, for the use-cases that need them all.
//!
//! Appending is the one subtle method: [`OpLog::append`] locks the document, reads the log
//! tail the caller has not seen and the waiting operations, lets the caller decide what to
//! write (bringing its in-memory replica up to date first), and writes it in the same
//! transaction. Writers of one document are thereby serialized, so log positions follow commit
//! order and every append is validated against the latest state.

mod connections;
mod documents;
mod gateway;
mod keys;
mod oplog;
mod outbox;
mod publisher;
mod sessions;
mod snapshots;

pub use connections::Connections;
pub use documents::{Access, Documents, NewDocument};
pub use gateway::{ConnectionPoster, PostError};
pub use keys::{KeyRecord, Keys};
pub use oplog::{Appended, Loaded, OpLog, Plan, Tail};
pub use outbox::{MAX_OUTBOX_ATTEMPTS, Outbox, OutboxHealth, OutboxRow};
pub use publisher::{EventPublisher, PublishError, SNS_BATCH_MESSAGES, batches};
pub use sessions::Sessions;
pub use snapshots::Snapshots;

/// Every storage port: what [`crate::Service`] runs on. Implemented for any type that
/// implements them all.
pub trait DocumentStore:
    Documents + OpLog + Snapshots + Sessions + Connections + Outbox + Keys
{
}

impl<T> DocumentStore for T where
    T: Documents + OpLog + Snapshots + Sessions + Connections + Outbox + Keys
{
}
