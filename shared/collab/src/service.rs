//! The use-cases, above the ports: documents, sessions, applying a client's ops or index-based
//! edits, catch-up, integrating other replicas' ops, compaction and the outbox sweep.
//!
//! Every write goes through [`Service::commit`]: under the document's database lock it brings the
//! cached replica up to date with the log tail and the waiting ops, applies the work, and writes
//! the new ops, the waiting-buffer changes and the broadcast in one transaction. The broadcast is
//! published after commit; if publishing fails the outbox row stays for the sweep.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use chrono::Utc;
use rga::{CharId, Op, Rga, SiteId, Splice, Status, VersionVector};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cache::{Cached, DocCache};
use crate::config::{Config, Limits};
use crate::error::{AppError, op_error};
use crate::ids::{DocumentId, ReplicaId, UserId, site_id};
use crate::message::{Broadcast, Envelope, SNS_MAX_BYTES, split};
use crate::metrics::Unit;
use crate::model::{
    Collaborator, CollaboratorChange, Document, DocumentInfo, OpsPage, Role, Session, SnapshotMeta,
};
use crate::publisher::EventPublisher;
use crate::store::{DocumentStore, KeyRecord, NewDocument, Plan};

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

/// A client's idempotency key for one request (`Idempotency-Key`, or a socket message's
/// `request_id`), with a hash of what the request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    /// The key, as the client sent it.
    pub key: String,
    /// SHA-256 of the route and the request body, hex.
    pub hash: String,
}

/// The longest idempotency key accepted.
pub const MAX_KEY_LEN: usize = 200;

impl RequestKey {
    /// The key `key` for a request to `route` with `body`; refuses an empty or overlong key.
    pub fn new(key: &str, route: &str, body: &impl Serialize) -> Result<Self, AppError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(AppError::BadRequest(format!(
                "an idempotency key is 1 to {MAX_KEY_LEN} bytes"
            )));
        }
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(route.as_bytes());
        h.update(b"\n");
        h.update(serde_json::to_vec(body).map_err(|e| AppError::Internal(e.to_string()))?);
        let hash = h
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        Ok(RequestKey {
            key: key.to_owned(),
            hash,
        })
    }
}

/// The result of applying a client's ops.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpsOutcome {
    /// Ops applied now (including waiting ops they released).
    pub applied: usize,
    /// Ops that were already applied.
    pub duplicates: usize,
    /// Ops of the batch that wait for causes this replica has not received.
    pub pending: Vec<CharId>,
    /// The replica's version afterwards.
    pub version: VersionVector,
}

/// The result of applying index-based edits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EditsOutcome {
    /// The ops generated for the session.
    pub ops: Vec<Op>,
    /// The version of the client's copy after its edits (its base plus the new ops).
    pub version: VersionVector,
    /// The replica's current version.
    pub current_version: VersionVector,
    /// The replica's current text, when asked for.
    #[serde(skip)]
    pub text: Option<String>,
}

/// What to broadcast after a write.
enum Announce {
    /// Nothing (ops that came from other replicas).
    Nothing,
    /// These ops.
    Ops,
}

/// What an outbox sweep did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sweep {
    /// Rows published.
    pub published: usize,
    /// Whether it stopped at a failed publish.
    pub stopped: bool,
    /// What the outbox holds afterwards (its oldest unsent age is the replication backlog).
    pub health: crate::store::OutboxHealth,
    /// Documents whose expired client ops waiting for their causes were dropped.
    pub expired_waiting: usize,
}

/// The use-cases over a store and a publisher.
pub struct Service<S, P> {
    store: S,
    publisher: P,
    settings: Settings,
    cache: DocCache,
    push: Option<crate::realtime::PushHook>,
    /// Outbox rows this container published and has not deleted yet: the next write's
    /// statement deletes them (see [`Plan::sent_outbox`]), so an edit costs no round trip for
    /// it. Rows left here when the container goes idle are republished once by the sweep
    /// (harmless: integration is idempotent) and deleted then.
    sent: std::sync::Mutex<Vec<i64>>,
}

/// The most published rows a container keeps for its next write to delete; past this, the
/// publish deletes its row itself.
const MAX_SENT_DEFERRED: usize = 64;

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
    pub fn with_push(mut self, hook: crate::realtime::PushHook) -> Self {
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

    fn check_title(title: &str) -> Result<String, AppError> {
        check_storable("the title", title)?;
        let t = title.trim();
        if t.is_empty() || t.chars().count() > 512 {
            return Err(AppError::BadRequest(
                "title must have 1 to 512 characters".into(),
            ));
        }
        Ok(t.to_owned())
    }

    /// Creates a document owned by `owner`, with optional initial content.
    pub async fn create_document(
        &self,
        owner: &UserId,
        title: &str,
        content: Option<&str>,
    ) -> Result<DocumentView, AppError> {
        let title = Self::check_title(title)?;
        let content = content.unwrap_or("");
        check_storable("the content", content)?;
        if content.chars().count() > self.settings.limits.max_document_chars {
            return Err(AppError::TooLarge(format!(
                "the document is limited to {} chars",
                self.settings.limits.max_document_chars
            )));
        }
        let mut rga = Rga::with_session(self.settings.ssn);
        rga.insert(self.replica_site(), 0, content)?;
        let ops = rga.ops_since(&VersionVector::new());
        let info = DocumentInfo {
            id: DocumentId::new(),
            title,
            owner_id: owner.clone(),
            created_at: Utc::now(),
            origin_replica: self.settings.replica,
            title_stamp: now_ms(),
            title_replica: self.settings.replica,
            deleted: false,
        };
        let outbox = Envelope {
            origin: self.settings.replica,
            body: Broadcast::Ops {
                document: info.clone(),
                ops: ops.clone(),
            },
        };
        let (document, outbox_id) = self
            .store
            .create_document(
                &NewDocument {
                    info,
                    ops,
                    outbox: Some(outbox),
                },
                self.settings.replica,
            )
            .await?;
        if let Some(id) = outbox_id {
            self.publish_row(id).await;
        }
        Ok(DocumentView {
            document,
            role: Role::Owner,
            text: rga.text(),
            version: rga.version(),
        })
    }

    /// The documents `user` owns or collaborates on.
    pub async fn list_documents(&self, user: &UserId) -> Result<Vec<(Document, Role)>, AppError> {
        self.store.list_documents(user).await
    }

    /// A document with its current text and version.
    pub async fn get_document(
        &self,
        id: DocumentId,
        user: &UserId,
    ) -> Result<DocumentView, AppError> {
        // A cached document: its access and tail in one round trip.
        {
            let slot = self.cache.slot(id);
            let mut guard = slot.lock().await;
            if let Some(c) = guard.as_mut() {
                let (access, tail) = self.store.access_and_tail(id, user, c.next_pos).await?;
                let (document, role) = match access {
                    Some((doc, Some(role))) if doc.deleted_at.is_none() => (doc, role),
                    _ => return Err(AppError::not_found(format!("document {id}"))),
                };
                if let Err(e) = apply_tail(id, c, tail) {
                    *guard = None;
                    return Err(e);
                }
                return Ok(DocumentView {
                    document,
                    role,
                    text: c.rga.text(),
                    version: c.rga.version(),
                });
            }
        }
        let (document, role) = self.authorize(id, user, Role::Viewer).await?;
        let (text, version) = self.read(id, |r| (r.text(), r.version())).await?;
        Ok(DocumentView {
            document,
            role,
            text,
            version,
        })
    }

    /// Renames a document (owner only).
    pub async fn rename_document(
        &self,
        id: DocumentId,
        user: &UserId,
        title: &str,
    ) -> Result<Document, AppError> {
        let title = Self::check_title(title)?;
        self.authorize(id, user, Role::Owner).await?;
        let origin = self.settings.replica;
        let announce = move |d: &Document| Envelope {
            origin,
            body: Broadcast::Document { document: d.info() },
        };
        let (doc, outbox) = self
            .store
            .rename_document(id, &title, (now_ms(), origin), &announce)
            .await?
            .ok_or_else(|| AppError::not_found(format!("document {id}")))?;
        self.publish_row(outbox).await;
        Ok(doc)
    }

    /// Deletes a document (owner only).
    pub async fn delete_document(&self, id: DocumentId, user: &UserId) -> Result<(), AppError> {
        self.authorize(id, user, Role::Owner).await?;
        let origin = self.settings.replica;
        let announce = move |d: &Document| Envelope {
            origin,
            body: Broadcast::Document { document: d.info() },
        };
        let (_, outbox) = self
            .store
            .delete_document(id, &announce)
            .await?
            .ok_or_else(|| AppError::not_found(format!("document {id}")))?;
        self.cache.forget(id);
        self.publish_row(outbox).await;
        self.access_changed(id).await;
        Ok(())
    }

    /// Closes the connections to `id` that no longer read it (through the push hook).
    async fn access_changed(&self, id: DocumentId) {
        if let Some(push) = &self.push {
            push.access_changed(id).await;
        }
    }

    /// The owner and collaborators (anyone with access).
    pub async fn collaborators(
        &self,
        id: DocumentId,
        user: &UserId,
    ) -> Result<Vec<Collaborator>, AppError> {
        self.authorize(id, user, Role::Viewer).await?;
        self.store.collaborators(id).await
    }

    /// Adds, changes (`Some(role)`) or removes (`None`) a collaborator (owner only).
    pub async fn set_collaborator(
        &self,
        id: DocumentId,
        user: &UserId,
        target: &UserId,
        role: Option<Role>,
    ) -> Result<Vec<Collaborator>, AppError> {
        let (doc, _) = self.authorize(id, user, Role::Owner).await?;
        if role == Some(Role::Owner) {
            return Err(AppError::BadRequest(
                "a collaborator's role is viewer or editor".into(),
            ));
        }
        if *target == doc.owner_id {
            return Err(AppError::BadRequest(
                "the owner's role cannot change".into(),
            ));
        }
        check_storable("the user id", &target.0)?;
        let change = CollaboratorChange {
            document_id: id,
            user_id: target.clone(),
            role,
            stamp: now_ms(),
            replica: self.settings.replica,
        };
        let envelope = Envelope {
            origin: self.settings.replica,
            body: Broadcast::Collaborator {
                document: doc.info(),
                change: change.clone(),
            },
        };
        let (_, outbox) = self
            .store
            .change_collaborator(&change, Some(&envelope))
            .await?;
        if let Some(row) = outbox {
            self.publish_row(row).await;
        }
        if role.is_none() {
            self.access_changed(id).await;
        }
        self.store.collaborators(id).await
    }

    /// Opens an editing session for `user` (editor or owner).
    pub async fn open_session(
        &self,
        id: DocumentId,
        user: &UserId,
    ) -> Result<SessionView, AppError> {
        self.open_session_with(id, user, true, true).await
    }

    /// [`Service::open_session`], with the text and the snapshot only when asked for (an empty
    /// string or vector otherwise): a CRDT client needs only the snapshot (the text is in it), a
    /// simple one only the text, a client that keeps its own replica neither.
    pub async fn open_session_with(
        &self,
        id: DocumentId,
        user: &UserId,
        want_text: bool,
        want_snapshot: bool,
    ) -> Result<SessionView, AppError> {
        let (doc, _) = self.authorize(id, user, Role::Editor).await?;
        let origin = self.settings.replica;
        let info = doc.info();
        let announce = move |s: &Session| Envelope {
            origin,
            body: Broadcast::Session {
                document: info.clone(),
                session: s.clone(),
            },
        };
        let (session, outbox) = self
            .store
            .create_session(id, user, origin, &announce)
            .await?;
        self.publish_row(outbox).await;
        let (text, version, snapshot) = self
            .read(id, |r| {
                (
                    if want_text { r.text() } else { String::new() },
                    r.version(),
                    if want_snapshot {
                        r.encode()
                    } else {
                        Vec::new()
                    },
                )
            })
            .await?;
        Ok(SessionView {
            session,
            ssn: self.settings.ssn,
            text,
            version,
            snapshot,
        })
    }

    /// [`Service::authorize`] for an editor, and the session `site`, which must belong to `user`
    /// and the document: one round trip.
    async fn authorize_session(
        &self,
        id: DocumentId,
        user: &UserId,
        site: SiteId,
    ) -> Result<Document, AppError> {
        let (doc, session) = match self.store.access_with_session(id, user, site).await? {
            Some((doc, Some(role), session))
                if doc.deleted_at.is_none() && role >= Role::Editor =>
            {
                (doc, session)
            }
            _ => return Err(AppError::not_found(format!("document {id}"))),
        };
        check_session(id, user, site, session, self.settings.replica)?;
        Ok(doc)
    }
}

/// Checks that the session `s` (of site `site`) exists, belongs to `user` and `id`, and was
/// opened on this replica (`here`): other replicas accept a replica's ops only for sites that
/// carry it in their high bits, so a session's ops must go out from where it was opened.
fn check_session(
    id: DocumentId,
    user: &UserId,
    site: SiteId,
    s: Option<Session>,
    here: ReplicaId,
) -> Result<Session, AppError> {
    let s =
        s.ok_or_else(|| AppError::Conflict(format!("unknown session {site}: open one first")))?;
    if s.document_id != id {
        return Err(AppError::Conflict(format!(
            "session {site} belongs to another document"
        )));
    }
    if s.user_id != *user {
        return Err(AppError::Forbidden(format!(
            "session {site} belongs to another user"
        )));
    }
    if s.replica != here || crate::ids::replica_of(site) != here {
        return Err(AppError::Conflict(format!(
            "session {site} was opened on replica {}: open a session on this replica",
            s.replica
        )));
    }
    Ok(s)
}

impl<S: DocumentStore, P: EventPublisher> Service<S, P> {
    /// Applies a batch of RGA ops from a CRDT-native client's session. Every op must be of the
    /// session's site. Ops whose causes this replica lacks are stored and wait (`pending`).
    pub async fn apply_ops(
        &self,
        id: DocumentId,
        user: &UserId,
        site: SiteId,
        ops: Vec<Op>,
    ) -> Result<OpsOutcome, AppError> {
        self.apply_ops_keyed(id, user, site, ops, None).await
    }

    /// [`Service::apply_ops`] with an idempotency key: a retry with the same key gets the first
    /// answer and applies nothing; the same key with another request is refused (422).
    pub async fn apply_ops_keyed(
        &self,
        id: DocumentId,
        user: &UserId,
        site: SiteId,
        ops: Vec<Op>,
        key: Option<&RequestKey>,
    ) -> Result<OpsOutcome, AppError> {
        let started = Instant::now();
        if ops.len() > self.settings.limits.max_batch_ops {
            return Err(AppError::TooLarge(format!(
                "at most {} ops per request",
                self.settings.limits.max_batch_ops
            )));
        }
        let doc = self.authorize_session(id, user, site).await?;
        for op in &ops {
            check_wire_op(op)?;
            if op.site() != site {
                return Err(AppError::Forbidden(format!(
                    "op {} is not of session {site}",
                    op.id().id()
                )));
            }
        }
        if let Some(answer) = self.recorded(id, user, key).await? {
            return answer;
        }
        let answer = |o: &OpsOutcome| serde_json::to_value(o).unwrap_or_default();
        let keyed = key.map(|k| (k, user, &answer as &(dyn Fn(&OpsOutcome) -> Value + Sync)));
        let max_waiting = self.settings.limits.max_waiting_per_session;
        let committed = self
            .commit(&doc, Announce::Ops, keyed, move |rga| {
                let mut applied = 0;
                let mut duplicates = 0;
                let mut pending = Vec::new();
                let mut fresh = Vec::new();
                for op in ops.iter().cloned() {
                    let id = op.id().id();
                    let a = rga.apply(op.clone()).map_err(op_error)?;
                    applied += a.released;
                    match a.status {
                        Status::Applied => applied += 1,
                        Status::Duplicate => duplicates += 1,
                        Status::Pending => pending.push(id),
                    }
                    if a.status != Status::Duplicate {
                        fresh.push(op);
                    }
                }
                pending.retain(|id| !rga.contains(*id));
                let waiting = rga.pending_of(site);
                if waiting > max_waiting {
                    return Err(AppError::TooLarge(format!(
                        "{waiting} ops of session {site} would wait for their causes; at most {max_waiting} may: send a session's ops in order"
                    )));
                }
                Ok((
                    OpsOutcome {
                        applied,
                        duplicates,
                        pending,
                        version: rga.version(),
                    },
                    fresh,
                ))
            })
            .await;
        let outcome = match committed {
            Ok((outcome, _)) => outcome,
            // The same key's first request committed meanwhile (on this or another container).
            Err(AppError::KeyRecorded) => return self.recorded_first(id, user, key).await,
            Err(e) => return Err(e),
        };
        self.compact_if_due(id).await;
        crate::metrics::emit(&[
            ("EditLatency", ms_since(started), Unit::Milliseconds),
            ("OpsApplied", outcome.applied as f64, Unit::Count),
            ("OpsWaiting", outcome.pending.len() as f64, Unit::Count),
        ]);
        Ok(outcome)
    }

    /// The answer of the request with the same key that committed first (this one lost the
    /// race on the key).
    async fn recorded_first<T: serde::de::DeserializeOwned>(
        &self,
        id: DocumentId,
        user: &UserId,
        key: Option<&RequestKey>,
    ) -> Result<T, AppError> {
        self.recorded(id, user, key)
            .await?
            .unwrap_or_else(|| Err(AppError::Unavailable("the idempotency key vanished".into())))
    }

    /// The answer recorded under `key`, if a request with it committed: `Some(Ok(answer))` for
    /// the same request, `Some(Err(KeyReused))` for another one.
    async fn recorded<T: serde::de::DeserializeOwned>(
        &self,
        id: DocumentId,
        user: &UserId,
        key: Option<&RequestKey>,
    ) -> Result<Option<Result<T, AppError>>, AppError> {
        let Some(key) = key else { return Ok(None) };
        let Some((hash, answer)) = self.store.key_answer(id, user, &key.key).await? else {
            return Ok(None);
        };
        if hash != key.hash {
            return Ok(Some(Err(AppError::KeyReused(format!(
                "idempotency key {:?} was used for another request",
                key.key
            )))));
        }
        Ok(Some(serde_json::from_value(answer).map_err(|e| {
            AppError::Internal(format!("recorded answer: {e}"))
        })))
    }

    /// Applies index-based edits for a session. With `base`, indexes refer to the text at that
    /// version (409 if this replica has not received all of it); without, to the current text.
    pub async fn apply_edits(
        &self,
        id: DocumentId,
        user: &UserId,
        site: SiteId,
        base: Option<VersionVector>,
        edits: Vec<Splice>,
    ) -> Result<EditsOutcome, AppError> {
        self.apply_edits_keyed(id, user, site, base, edits, None, true)
            .await
    }

    /// [`Service::apply_edits`] with an idempotency key (see [`Service::apply_ops_keyed`]); the
    /// answer carries the current text only with `include_text`.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_edits_keyed(
        &self,
        id: DocumentId,
        user: &UserId,
        site: SiteId,
        base: Option<VersionVector>,
        edits: Vec<Splice>,
        key: Option<&RequestKey>,
        include_text: bool,
    ) -> Result<EditsOutcome, AppError> {
        let started = Instant::now();
        if edits.len() > self.settings.limits.max_batch_ops {
            return Err(AppError::TooLarge(format!(
                "at most {} edits per request",
                self.settings.limits.max_batch_ops
            )));
        }
        let doc = self.authorize_session(id, user, site).await?;
        for edit in &edits {
            check_storable("inserted text", &edit.insert)?;
        }
        let recorded: Option<Result<EditsOutcome, AppError>> = self.recorded(id, user, key).await?;
        let mut outcome = match recorded {
            Some(answer) => answer?,
            None => {
                let answer = |o: &EditsOutcome| serde_json::to_value(o).unwrap_or_default();
                let keyed =
                    key.map(|k| (k, user, &answer as &(dyn Fn(&EditsOutcome) -> Value + Sync)));
                let committed = self
                    .commit(&doc, Announce::Ops, keyed, move |rga| {
                        let edit = rga.splice(site, base.as_ref(), &edits)?;
                        let out = EditsOutcome {
                            ops: edit.ops.clone(),
                            version: edit.version,
                            current_version: rga.version(),
                            text: include_text.then(|| rga.text()),
                        };
                        Ok((out, edit.ops))
                    })
                    .await;
                match committed {
                    Ok((outcome, _)) => {
                        self.compact_if_due(id).await;
                        outcome
                    }
                    Err(AppError::KeyRecorded) => self.recorded_first(id, user, key).await?,
                    Err(e) => return Err(e),
                }
            }
        };
        if include_text && outcome.text.is_none() {
            outcome.text = Some(self.read(id, Rga::text).await?);
        }
        crate::metrics::emit(&[
            ("EditLatency", ms_since(started), Unit::Milliseconds),
            ("OpsApplied", outcome.ops.len() as f64, Unit::Count),
        ]);
        Ok(outcome)
    }

    /// Ops that `since` lacks, paged by log position.
    pub async fn ops_since(
        &self,
        id: DocumentId,
        user: &UserId,
        since: &VersionVector,
        cursor: i64,
        limit: usize,
    ) -> Result<OpsPage, AppError> {
        self.authorize(id, user, Role::Viewer).await?;
        self.store.ops_since(id, since, cursor.max(0), limit).await
    }

    /// The snapshot history.
    pub async fn snapshots(
        &self,
        id: DocumentId,
        user: &UserId,
    ) -> Result<Vec<SnapshotMeta>, AppError> {
        self.authorize(id, user, Role::Viewer).await?;
        self.store.snapshots(id).await
    }

    /// The text of snapshot `version`.
    pub async fn snapshot_text(
        &self,
        id: DocumentId,
        user: &UserId,
        version: i32,
    ) -> Result<String, AppError> {
        self.authorize(id, user, Role::Viewer).await?;
        self.store
            .snapshot_text(id, version)
            .await?
            .ok_or_else(|| AppError::not_found(format!("snapshot {version}")))
    }

    /// Integrates a message from another replica. Idempotent; invalid ops are logged and
    /// dropped (they can never succeed); a storage failure is returned so that the delivery is retried.
    pub async fn integrate(&self, envelope: Envelope) -> Result<(), AppError> {
        if envelope.origin == self.settings.replica {
            return Ok(());
        }
        if let Some(why) = envelope.forged() {
            return Err(AppError::Forged(why));
        }
        let doc = self.store.upsert_document(envelope.document()).await?;
        if doc.deleted_at.is_some() {
            self.cache.forget(doc.id);
            if matches!(envelope.body, Broadcast::Document { .. }) {
                self.access_changed(doc.id).await;
            }
            return Ok(());
        }
        match envelope.body {
            Broadcast::Document { .. } => Ok(()),
            Broadcast::Session { session, .. } => self.store.insert_session(&session).await,
            Broadcast::Collaborator { change, .. } => {
                let (applied, _) = self.store.change_collaborator(&change, None).await?;
                if applied && change.role.is_none() {
                    self.access_changed(doc.id).await;
                }
                if !applied {
                    // Not an error: a newer change of the same collaborator is stored already.
                    tracing::info!(document = %doc.id, user = %change.user_id.0, stamp = change.stamp,
                        "a remote collaborator change older than the stored one was not applied");
                }
                Ok(())
            }
            Broadcast::Ops { ops, .. } => {
                let document = doc.id;
                self.commit(&doc, Announce::Nothing, None, move |rga| {
                    for op in ops.iter().cloned() {
                        let id = op.id().id();
                        if let Err(e) = rga.apply(op) {
                            tracing::warn!(%document, op = %id, error = %e, "dropping an invalid remote op");
                        }
                    }
                    Ok(((), Vec::new()))
                })
                .await?;
                self.maybe_compact(doc.id).await;
                Ok(())
            }
        }
    }

    /// After a local write: compacts when the cached tail has grown past the threshold. The
    /// check reads the cache only, so a write below the threshold costs no query.
    async fn compact_if_due(&self, id: DocumentId) {
        let due = {
            let slot = self.cache.slot(id);
            let guard = slot.lock().await;
            guard
                .as_ref()
                .is_some_and(|c| c.next_pos - c.snapshot_pos >= self.settings.compact_after)
        };
        if due {
            self.maybe_compact(id).await;
        }
    }

    /// Writes a snapshot if the tail after the last one is longer than the threshold.
    pub async fn maybe_compact(&self, id: DocumentId) {
        if let Err(e) = self.compact(id, false).await {
            tracing::warn!(document = %id, error = %e, "compaction failed");
        }
    }

    /// Writes a snapshot of the document as cached (refreshed first) when the tail is long, or
    /// always with `force`. Returns the snapshot written, if any.
    pub async fn compact(
        &self,
        id: DocumentId,
        force: bool,
    ) -> Result<Option<SnapshotMeta>, AppError> {
        let slot = self.cache.slot(id);
        let mut guard = slot.lock().await;
        self.refresh(id, &mut guard).await?;
        let Some(c) = guard.as_mut() else {
            return Ok(None);
        };
        if c.next_pos <= c.snapshot_pos
            || (!force && c.next_pos - c.snapshot_pos < self.settings.compact_after)
        {
            return Ok(None);
        }
        let meta = self
            .store
            .write_snapshot(
                id,
                &c.rga.encode(),
                &c.rga.text(),
                &c.rga.version(),
                c.next_pos,
            )
            .await?;
        if meta.is_some() {
            c.snapshot_pos = c.next_pos;
        }
        Ok(meta)
    }

    /// Republishes outbox rows older than `min_age_secs` (left by failed publishes or crashes),
    /// oldest first. Stops at the first failure (SNS is down: the rest would fail too, and the
    /// failed row backs off instead of being claimed again at once). Returns what it published
    /// and what the outbox still holds.
    pub async fn sweep_outbox(&self, min_age_secs: i64) -> Result<Sweep, AppError> {
        let mut published = 0;
        let mut stopped = false;
        'claims: loop {
            let rows = self.store.claim_outbox(min_age_secs, 60, 50).await?;
            if rows.is_empty() {
                break;
            }
            // Every claimed row's messages, in PublishBatch calls (ten to a call, 256 KiB)
            // instead of one publish each, oldest first; after a call with a failure the rest
            // wait for the next sweep. A row is done when all its messages went out.
            let mut messages = Vec::new();
            let mut owner = Vec::new();
            for (r, row) in rows.iter().enumerate() {
                for m in split(&row.envelope, SNS_MAX_BYTES) {
                    messages.push(m);
                    owner.push(r);
                }
            }
            // Per row: Some(None) all attempted and sent so far, Some(Some(e)) a message failed,
            // None not (fully) attempted.
            let mut outcome: Vec<Option<Option<String>>> = vec![Some(None); rows.len()];
            let mut attempted = 0;
            for range in crate::publisher::batches(&messages) {
                let results = self.publisher.publish_batch(&messages[range.clone()]).await;
                let mut any_failed = false;
                for (i, result) in range.clone().zip(results) {
                    if let (Err(e), Some(o)) = (result, outcome[owner[i]].as_mut()) {
                        o.get_or_insert(e.to_string());
                        any_failed = true;
                    }
                }
                attempted = range.end;
                if any_failed {
                    break;
                }
            }
            for r in owner.iter().skip(attempted) {
                outcome[*r] = None;
            }
            for (row, o) in rows.iter().zip(outcome) {
                match o {
                    Some(None) => {
                        published += 1;
                        self.published(row.id).await;
                    }
                    Some(Some(e)) => {
                        stopped = true;
                        self.publish_failed(row.id, &e).await;
                    }
                    // Not attempted: its lease expires on its own.
                    None => {}
                }
            }
            if stopped {
                // SNS is failing: the next sweep tries again (the failed rows back off).
                break 'claims;
            }
        }
        match self.store.expire_keys().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "idempotency keys expired"),
            Err(e) => tracing::warn!(error = %e, "expiring idempotency keys failed"),
        }
        let limits = &self.settings.limits;
        let expired_waiting = match self
            .store
            .expire_waiting(self.settings.replica, limits.max_waiting_age_secs)
            .await
        {
            Ok(docs) => {
                for d in &docs {
                    // The cached replica still holds them as waiting: reload it.
                    self.cache.forget(*d);
                }
                if !docs.is_empty() {
                    tracing::info!(
                        documents = docs.len(),
                        "expired client ops waiting for their causes"
                    );
                }
                docs.len()
            }
            Err(e) => {
                tracing::warn!(error = %e, "expiring waiting ops failed");
                0
            }
        };
        let health = self.store.outbox_health().await?;
        crate::metrics::emit(&[
            ("OutboxBacklog", health.unsent as f64, Unit::Count),
            (
                "OutboxOldestAgeSeconds",
                health.oldest_unsent_secs as f64,
                Unit::Seconds,
            ),
            ("OutboxParked", health.parked as f64, Unit::Count),
        ]);
        if health.parked > 0 || stopped {
            tracing::warn!(
                published,
                unsent = health.unsent,
                parked = health.parked,
                oldest_unsent_secs = health.oldest_unsent_secs,
                "outbox not empty after the sweep"
            );
        }
        Ok(Sweep {
            published,
            stopped,
            health,
            expired_waiting,
        })
    }

    /// Publishes outbox row `id` (written by this request) and deletes it on success.
    async fn publish_row(&self, id: i64) {
        match self.store.outbox_row(id).await {
            Ok(Some(row)) => {
                self.publish_envelope(row.id, &row.envelope, false).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(outbox = id, error = %e, "reading the outbox failed; the sweep will publish")
            }
        }
    }

    /// The published rows the next write deletes.
    fn sent_rows(&self) -> Vec<i64> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Forgets rows a committed write deleted.
    fn forget_sent(&self, done: &[i64]) {
        if done.is_empty() {
            return;
        }
        if let Ok(mut s) = self.sent.lock() {
            s.retain(|id| !done.contains(id));
        }
    }

    /// Publishes outbox row `id`; on success deletes it, or with `defer` leaves that to this
    /// container's next write (at most [`MAX_SENT_DEFERRED`] rows wait so).
    async fn publish_envelope(&self, id: i64, envelope: &Envelope, defer: bool) -> bool {
        for message in split(envelope, SNS_MAX_BYTES) {
            if let Err(e) = self.publisher.publish(&message).await {
                self.publish_failed(id, &e.to_string()).await;
                return false;
            }
        }
        if defer
            && let Ok(mut sent) = self.sent.lock()
            && sent.len() < MAX_SENT_DEFERRED
        {
            sent.push(id);
            return true;
        }
        self.published(id).await;
        true
    }

    /// Deletes a published outbox row.
    async fn published(&self, id: i64) {
        if let Err(e) = self.store.outbox_done(id).await {
            tracing::warn!(outbox = id, error = %e, "deleting a published outbox row failed; it may be sent twice");
        }
    }

    /// Records a failed publish of outbox row `id`: it backs off, and parks at the limit.
    async fn publish_failed(&self, id: i64, error: &str) {
        tracing::warn!(outbox = id, error, "publish failed; the sweep will retry");
        crate::metrics::count("PublishFailures", 1);
        match self.store.outbox_failed(id, error).await {
            Ok(true) => tracing::error!(
                outbox = id,
                "an outbox row failed too often and is parked; it will not be retried"
            ),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(outbox = id, error = %e, "recording the failed publish failed")
            }
        }
    }

    /// Loads the document into `slot` or refreshes it from the tail.
    async fn refresh(&self, id: DocumentId, slot: &mut Option<Cached>) -> Result<(), AppError> {
        match slot {
            None => {
                let loaded = self
                    .store
                    .load(id)
                    .await?
                    .ok_or_else(|| AppError::not_found(format!("document {id}")))?;
                let mut rga = match &loaded.snapshot {
                    Some(bytes) => Rga::decode(bytes)
                        .map_err(|e| AppError::Internal(format!("snapshot of {id}: {e}")))?,
                    None => Rga::with_session(self.settings.ssn),
                };
                rga.set_session(self.settings.ssn);
                rga.set_limits(self.settings.limits.crdt);
                for op in loaded.tail {
                    rga.apply(op).map_err(|e| {
                        AppError::Internal(format!("stored op of {id} refused: {e}"))
                    })?;
                }
                for op in loaded.waiting {
                    let _ = rga.apply(op);
                }
                *slot = Some(Cached {
                    rga,
                    next_pos: loaded.next_pos,
                    snapshot_pos: loaded.snapshot_pos,
                });
            }
            Some(c) => {
                let tail = self.store.tail(id, c.next_pos).await?;
                if let Err(e) = apply_tail(id, c, tail) {
                    *slot = None;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Runs `f` on the up-to-date cached replica.
    async fn read<T>(&self, id: DocumentId, f: impl FnOnce(&Rga) -> T) -> Result<T, AppError> {
        let slot = self.cache.slot(id);
        let mut guard = slot.lock().await;
        if let Err(e) = self.refresh(id, &mut guard).await {
            *guard = None;
            return Err(e);
        }
        match guard.as_ref() {
            Some(c) => Ok(f(&c.rga)),
            None => Err(AppError::Internal("cache slot empty after refresh".into())),
        }
    }

    /// The write path; see the module docs. `work` returns its result and the ops to announce;
    /// it may run twice (once more if another container wrote the document meanwhile).
    ///
    /// First optimistically: the cached replica is taken as current, `work` runs on it, and one
    /// statement writes the plan only if the document's log has not grown since (one round trip).
    /// If it has, the cache is dropped and the locked path runs: lock the row, read the tail,
    /// apply it, run `work` again, write.
    async fn commit<T, W>(
        &self,
        doc: &Document,
        announce: Announce,
        key: Option<Keyed<'_, T>>,
        mut work: W,
    ) -> Result<(T, Option<i64>), AppError>
    where
        T: Send,
        W: FnMut(&mut Rga) -> Result<(T, Vec<Op>), AppError> + Send,
    {
        let slot = self.cache.slot(doc.id);
        let mut guard = slot.lock().await;
        crate::metrics::count(
            if guard.is_none() {
                "CacheMisses"
            } else {
                "CacheHits"
            },
            1,
        );
        if guard.is_none()
            && let Err(e) = self.refresh(doc.id, &mut guard).await
        {
            *guard = None;
            return Err(e);
        }
        let origin = self.settings.replica;
        if let Some(cached) = guard.as_mut() {
            let (version, pending) = (cached.rga.version(), cached.rga.pending_len());
            let stored_waiting: HashSet<CharId> = cached
                .rga
                .pending_ops()
                .iter()
                .map(|op| op.id().id())
                .collect();
            let planned = self
                .plan(&mut cached.rga, doc, &announce, stored_waiting, &mut work)
                .map(|(value, plan)| {
                    let mut plan = with_key(plan, &value, key);
                    plan.sent_outbox = self.sent_rows();
                    (value, plan)
                });
            // A refusal may come from a stale cache (a base this container has not seen yet,
            // though another container stored it): decide it again under the lock.
            let refused = planned.is_err();
            let attempt = match planned {
                Ok((value, plan)) => match self
                    .store
                    .try_append(doc.id, cached.next_pos, origin, &plan)
                    .await
                {
                    Ok(Some(appended)) => {
                        self.forget_sent(&plan.sent_outbox);
                        Some((value, appended, plan.ops, plan.outbox))
                    }
                    Ok(None) => None,
                    Err(e) => {
                        *guard = None;
                        return Err(e);
                    }
                },
                Err(_) => None,
            };
            match attempt {
                Some((value, appended, ops, envelope)) => {
                    cached.next_pos = appended.next_pos;
                    drop(guard);
                    let outbox = appended.outbox_id.zip(envelope);
                    return Ok((value, self.after_commit(doc, outbox, ops).await));
                }
                // Another container wrote first, or the refusal may be stale: start over
                // under the lock. A refusal that left the replica as it was (every check before
                // an op applies) keeps the cache, which the locked path brings up to date from
                // the tail; anything else may hold uncommitted changes and is dropped.
                None => {
                    let unchanged = refused
                        && cached.rga.pending_len() == pending
                        && cached.rga.version() == version;
                    if !unchanged {
                        *guard = None;
                    }
                }
            }
        }
        // A kept cache needs no refresh: the append below reads the tail under the lock.
        if guard.is_none()
            && let Err(e) = self.refresh(doc.id, &mut guard).await
        {
            *guard = None;
            return Err(e);
        }
        let Some(cached) = guard.as_mut() else {
            return Err(AppError::Internal("cache slot empty after load".into()));
        };
        let mut result: Option<T> = None;
        let mut committed_ops = Vec::new();
        let mut committed_envelope = None;
        let mut sent_outbox = Vec::new();
        let rga = &mut cached.rga;
        let appended = self
            .store
            .append(doc.id, cached.next_pos, origin, |tail| {
                for op in tail.ops {
                    rga.apply(op)
                        .map_err(|e| AppError::Internal(format!("stored op refused: {e}")))?;
                }
                let stored_waiting: HashSet<CharId> =
                    tail.waiting.iter().map(|op| op.id().id()).collect();
                for op in tail.waiting {
                    let _ = rga.apply(op);
                }
                let (value, plan) = self.plan(rga, doc, &announce, stored_waiting, &mut work)?;
                let mut plan = with_key(plan, &value, key);
                plan.sent_outbox = self.sent_rows();
                sent_outbox = plan.sent_outbox.clone();
                result = Some(value);
                committed_ops = plan.ops.clone();
                committed_envelope = plan.outbox.clone();
                Ok(plan)
            })
            .await;
        let appended = match appended {
            Ok(a) => a,
            Err(e) => {
                // The replica may hold changes that were not committed.
                *guard = None;
                return Err(e);
            }
        };
        cached.next_pos = appended.next_pos;
        drop(guard);
        self.forget_sent(&sent_outbox);
        let outbox = self
            .after_commit(
                doc,
                appended.outbox_id.zip(committed_envelope),
                committed_ops,
            )
            .await;
        let value =
            result.ok_or_else(|| AppError::Internal("append did not run the plan".into()))?;
        Ok((value, outbox))
    }

    /// Runs `work` on `rga` and turns what changed into a plan: the new ops, the waiting-buffer
    /// changes against `stored_waiting`, and the broadcast.
    fn plan<T, W>(
        &self,
        rga: &mut Rga,
        doc: &Document,
        announce: &Announce,
        stored_waiting: HashSet<CharId>,
        work: &mut W,
    ) -> Result<(T, Plan), AppError>
    where
        W: FnMut(&mut Rga) -> Result<(T, Vec<Op>), AppError>,
    {
        let max_chars = self.settings.limits.max_document_chars;
        let before = rga.version();
        let (value, mut announced) = work(rga)?;
        // Only this replica's own sites' ops go out: other replicas drop a message carrying
        // another's as forged (`Envelope::forged`), and those reach everyone from their origin.
        let here = self.settings.replica;
        announced.retain(|op| crate::ids::replica_of(op.site()) == here);
        if rga.len() > max_chars {
            return Err(AppError::TooLarge(format!(
                "the document is limited to {max_chars} chars"
            )));
        }
        let waiting: HashMap<CharId, Op> = rga
            .pending_ops()
            .into_iter()
            .map(|op| (op.id().id(), op))
            .collect();
        let plan = Plan {
            ops: rga.ops_since(&before),
            waiting_add: waiting
                .iter()
                .filter(|(id, _)| !stored_waiting.contains(id))
                .map(|(_, op)| op.clone())
                .collect(),
            waiting_remove: stored_waiting
                .iter()
                .filter(|id| !waiting.contains_key(id))
                .copied()
                .collect(),
            outbox: match announce {
                Announce::Ops if !announced.is_empty() => Some(Envelope {
                    origin: self.settings.replica,
                    body: Broadcast::Ops {
                        document: doc.info(),
                        ops: announced,
                    },
                }),
                _ => None,
            },
            key: None,
            sent_outbox: Vec::new(),
        };
        Ok((value, plan))
    }

    /// Publishes the outbox row a commit wrote, if any; returns its id.
    /// The broadcast is published from memory (the row is not read back); the row is deleted
    /// once SNS took it, and the sweep republishes it otherwise.
    async fn after_commit(
        &self,
        doc: &Document,
        outbox: Option<(i64, Envelope)>,
        ops: Vec<Op>,
    ) -> Option<i64> {
        if let Some((id, envelope)) = &outbox {
            self.publish_envelope(*id, envelope, true).await;
        }
        if let (Some(push), false) = (&self.push, ops.is_empty()) {
            push.ops(doc.info(), ops).await;
        }
        outbox.map(|(id, _)| id)
    }
}

/// Brings a cached replica up to date with the stored tail after its position.
fn apply_tail(id: DocumentId, c: &mut Cached, tail: crate::store::Tail) -> Result<(), AppError> {
    for op in tail.ops.into_iter().chain(tail.waiting) {
        c.rga
            .apply(op)
            .map_err(|e| AppError::Internal(format!("stored op of {id} refused: {e}")))?;
    }
    c.next_pos = tail.next_pos;
    Ok(())
}

/// Milliseconds since `t`, for the latency metrics.
fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// A request's key, its user, and how to turn its answer into the JSON recorded with it.
type Keyed<'a, T> = (&'a RequestKey, &'a UserId, &'a (dyn Fn(&T) -> Value + Sync));

/// `plan` with the request's key and answer to record, if it has a key.
fn with_key<T>(mut plan: Plan, value: &T, key: Option<Keyed<'_, T>>) -> Plan {
    if let Some((k, user, answer)) = key {
        plan.key = Some(KeyRecord {
            user: user.clone(),
            key: k.key.clone(),
            hash: k.hash.clone(),
            answer: answer(value),
        });
    }
    plan
}
