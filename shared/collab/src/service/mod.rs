//! The use-cases, above the ports, in files by family:
//!
//! - `documents`: create, list, rename, delete, collaborators;
//! - `read`: text, catch-up, snapshot history;
//! - `sessions`: opening an editing session;
//! - `edits`: a client's ops or index-based edits, with idempotency keys;
//! - `integrate`: other replicas' messages, and compaction;
//! - `outbox`: publishing after commit, and the sweep;
//! - `write`: the write path every write goes through, reviewable alone;
//! - `push` and `sockets`: WebSocket connections (push after commit, the socket use-cases);
//! - `size`: what an answer weighs, so that none outgrows Lambda's response limit.
//!
//! Handlers never see the store: they call these methods and shape the answer. The types
//! they exchange (outcomes, views, keys) are re-exported here.

mod documents;
mod edits;
mod integrate;
mod outbox;
mod push;
mod read;
mod sessions;
pub mod size;
mod sockets;
mod write;

use std::time::Instant;

use chrono::Utc;
use rga::{Op, SiteId, VersionVector};

use crate::cache::DocCache;
use crate::config::{Config, Limits};
use crate::error::AppError;
use crate::ids::{DocumentId, ReplicaId, UserId, site_id};
use crate::model::{Document, Role, Session};
use crate::ports::{DocumentStore, EventPublisher};

pub use edits::{EditsOutcome, MAX_KEY_LEN, OpsOutcome, RequestKey};
pub use outbox::Sweep;
pub use push::{PushHook, broadcast, close_revoked, end_if_not_reading, push_hook};
pub use size::MAX_ANSWER_BYTES;
pub use sockets::Sockets;

/// Identifiers in JSON must stay below 2^53 so that JavaScript clients read them exactly.
pub const MAX_WIRE_ID: u64 = (1 << 53) - 1;

/// Settings of the use-cases.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This replica.
    pub replica: ReplicaId,
    /// Global session number of RGA ops.
    pub ssn: u32,
    /// Request limits.
    pub limits: Limits,
    /// Tail rows after which a snapshot is written.
    pub compact_after: i64,
    /// Documents kept in the warm cache.
    pub cache_docs: usize,
}

impl Settings {
    /// Settings from the configuration.
    pub fn from_config(c: &Config) -> Self {
        Settings {
            replica: c.replica,
            ssn: c.ssn,
            limits: c.limits,
            compact_after: c.compact_after,
            cache_docs: 64,
        }
    }
}

/// A document with its text.
#[derive(Debug, Clone)]
pub struct DocumentView {
    /// Metadata.
    pub document: Document,
    /// The caller's role.
    pub role: Role,
    /// Current text.
    pub text: String,
    /// Current version.
    pub version: VersionVector,
}

/// A newly opened session.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// The session (its site id).
    pub session: Session,
    /// Session number to put in the ops' S4Vectors.
    pub ssn: u32,
    /// Current text.
    pub text: String,
    /// Current version.
    pub version: VersionVector,
    /// The replica encoded for a CRDT-native client (`rga::Rga::decode`).
    pub snapshot: Vec<u8>,
}

/// The use-cases over a store and a publisher.
pub struct Service<S, P> {
    store: S,
    publisher: P,
    settings: Settings,
    cache: DocCache,
    push: Option<PushHook>,
    /// Outbox rows this container published and has not deleted yet: the next write's
    /// statement deletes them (see [`Plan::sent_outbox`]), so an edit costs no round trip for
    /// it. Rows left here when the container goes idle are republished once by the sweep
    /// (harmless: integration is idempotent) and deleted then.
    sent: std::sync::Mutex<Vec<i64>>,
}

impl<S: DocumentStore, P: EventPublisher> Service<S, P> {
    /// A service over `store` and `publisher`.
    pub fn new(store: S, publisher: P, settings: Settings) -> Self {
        let cache = DocCache::new(settings.cache_docs);
        Service {
            store,
            publisher,
            settings,
            cache,
            push: None,
            sent: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Pushes the new ops of every commit through `hook` (to WebSocket editors).
    pub fn with_push(mut self, hook: PushHook) -> Self {
        self.push = Some(hook);
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The replica that allocates this replica's own sites (initial content).
    fn replica_site(&self) -> SiteId {
        site_id(self.settings.replica, 0)
    }

    /// The document, if `user` has at least `need` on it; 404 otherwise (ids do not leak).
    pub async fn authorize(
        &self,
        id: DocumentId,
        user: &UserId,
        need: Role,
    ) -> Result<(Document, Role), AppError> {
        match self.store.access(id, user).await? {
            Some((doc, Some(role))) if doc.deleted_at.is_none() && role >= need => Ok((doc, role)),
            _ => Err(AppError::not_found(format!("document {id}"))),
        }
    }

    /// Closes the connections to `id` that no longer read it (through the push hook).
    async fn access_changed(&self, id: DocumentId) {
        if let Some(push) = &self.push {
            push.access_changed(id).await;
        }
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Refuses text that PostgreSQL cannot store: `text` and `jsonb` values cannot hold U+0000, so
/// storing it would fail the request with a 500 instead of explaining.
fn check_storable(what: &str, s: &str) -> Result<(), AppError> {
    if s.contains('\0') {
        return Err(AppError::BadRequest(format!(
            "{what} must not contain U+0000"
        )));
    }
    Ok(())
}

fn check_wire_op(op: &Op) -> Result<(), AppError> {
    let id = op.id();
    let big = |v: u64| v > MAX_WIRE_ID;
    let bad = match op {
        Op::Insert { after, .. } => {
            big(id.sum)
                || big(id.seq)
                || big(id.sid.0)
                || after.is_some_and(|a| big(a.sum) || big(a.seq) || big(a.sid.0))
        }
        Op::Delete { targets, .. } => {
            big(id.sum)
                || big(id.seq)
                || big(id.sid.0)
                || targets
                    .iter()
                    .any(|t| big(t.sid.0) || big(t.seq) || big(t.len))
        }
        Op::Update { target, .. } => {
            big(id.sum) || big(id.seq) || big(id.sid.0) || big(target.sid.0) || big(target.seq)
        }
    };
    if bad {
        return Err(AppError::BadRequest(format!(
            "op {}: identifiers must be below 2^53",
            id.id()
        )));
    }
    match op {
        Op::Insert { text, .. } => check_storable(&format!("op {}: the text", id.id()), text),
        Op::Update { value: '\0', .. } => Err(AppError::BadRequest(format!(
            "op {}: the value must not be U+0000",
            id.id()
        ))),
        Op::Update { .. } | Op::Delete { .. } => Ok(()),
    }
}

/// Milliseconds since `t`, for the latency metrics.
fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}
