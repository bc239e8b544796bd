//! The adapters: the ports of [`crate::ports`] on real services. [`pg`] implements the storage
//! ports on PostgreSQL (one handle, one file per area), [`sns`] the publisher on SNS, [`apigw`]
//! the connection gateway on API Gateway's management API.

pub mod apigw;
pub mod pg;
pub mod sns;

pub use apigw::ApiGatewayPoster;
pub use pg::{PgDocumentStore, Waits};
pub use sns::SnsPublisher;
