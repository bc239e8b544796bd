//! A client's writes: RGA ops from a CRDT-native client, or index-based edits, each through
//! the write path ([`super::write`]) with its idempotency key recorded in the same transaction.

use std::time::Instant;

use rga::{CharId, Op, Rga, SiteId, Splice, Status, VersionVector};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::write::Announce;
use super::{Service, check_storable, check_wire_op, ms_since};
use crate::error::AppError;
use crate::error::op_error;
use crate::ids::{DocumentId, UserId};
use crate::metrics::Unit;
use crate::ports::{DocumentStore, EventPublisher};

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
    pub(super) async fn recorded_first<T: serde::de::DeserializeOwned>(
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
    pub(super) async fn recorded<T: serde::de::DeserializeOwned>(
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
}
