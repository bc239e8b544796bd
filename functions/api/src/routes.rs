//! The routes. Each handler parses, calls one use-case of [`collab::Service`] and shapes the
//! response; nothing else.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine;
use chrono::{DateTime, Utc};
use http::StatusCode;
use http::request::Parts;
use serde::{Deserialize, Serialize};

use collab::model::{Collaborator, Document, Role, SnapshotMeta};
use collab::ports::EventPublisher;
use collab::service::MAX_ANSWER_BYTES;
use collab::service::size::payload_bytes;
use collab::{AppError, DocumentId, PgDocumentStore, UserId};
use rga::{CharId, Op, SiteId, Splice, VersionVector};

use crate::App;
use crate::auth::Caller;
use crate::body::{Json, Query};
use crate::error::ApiError;

type Result<T> = std::result::Result<T, ApiError>;

/// The API's routes over `app`.
pub fn router<P: EventPublisher + 'static>(app: Arc<App<P>>) -> Router {
    Router::new()
        .route("/health", get(health::<P>))
        .route("/documents", post(create::<P>).get(list::<P>))
        .route(
            "/documents/{id}",
            get(read::<P>).patch(rename::<P>).delete(remove::<P>),
        )
        .route("/documents/{id}/sessions", post(open_session::<P>))
        .route(
            "/documents/{id}/operations",
            post(post_ops::<P>).get(get_ops::<P>),
        )
        .route("/documents/{id}/edits", post(post_edits::<P>))
        .route("/documents/{id}/snapshots", get(snapshots::<P>))
        .route("/documents/{id}/snapshots/{n}", get(snapshot::<P>))
        .route("/documents/{id}/collaborators", get(collaborators::<P>))
        .route(
            "/documents/{id}/collaborators/{user}",
            put(set_collaborator::<P>).delete(remove_collaborator::<P>),
        )
        .layer(axum::middleware::from_fn(request_span))
        .fallback(|| async { ApiError(AppError::NotFound("no such route".into())) })
        .method_not_allowed_fallback(|| async {
            ApiError(AppError::BadRequest(
                "method not allowed on this route".into(),
            ))
        })
        .with_state(app)
}

/// Runs the request inside a span naming its method, path, document and (once the caller is
/// known) user, so that every log line of the request carries them; Lambda's runtime adds the
/// request id. Bodies and texts are never logged.
async fn request_span(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    let path = req.uri().path();
    let document = path
        .strip_prefix("/documents/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("")
        .to_owned();
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %path,
        document = %document,
        user = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "answered"
        )
    });
    response
}

/// `GET /health` (no authentication): the build's version, the schema version against the one
/// it needs, and whether the database answers, within the store's bounded waits. 200 when the
/// replica can serve, 503 otherwise; no detail of the failure is shown.
async fn health<P: EventPublisher + 'static>(State(app): State<Arc<App<P>>>) -> Response {
    let needed = PgDocumentStore::needed_schema_version();
    let (status, database, schema) = match app.service.store().schema_version().await {
        Ok(v) if v >= needed => (StatusCode::OK, "reachable", Some(v)),
        Ok(v) => (StatusCode::SERVICE_UNAVAILABLE, "reachable", Some(v)),
        Err(e) => {
            tracing::warn!(error = %e, "health: the database did not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "unreachable", None)
        }
    };
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "ok" } else { "unavailable" },
        "version": env!("CARGO_PKG_VERSION"),
        "replica": app.service.settings().replica,
        "database": database,
        "schema_version": schema,
        "schema_needed": needed,
    });
    json(status, &body)
}

/// Path parameters, in order; a failure is a JSON 400.
struct Params(Vec<String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        axum::extract::Path::<Vec<String>>::from_request_parts(parts, state)
            .await
            .map(|p| Params(p.0))
            .map_err(|e| ApiError(AppError::BadRequest(format!("bad path: {}", e.body_text()))))
    }
}

impl Params {
    fn doc(&self) -> Result<DocumentId> {
        let raw = self.0.first().map(String::as_str).unwrap_or("");
        raw.parse().map_err(|_| {
            ApiError(AppError::BadRequest(format!(
                "{raw:?} is not a document id (a UUID)"
            )))
        })
    }
    fn second(&self) -> &str {
        self.0.get(1).map(String::as_str).unwrap_or("")
    }
}

/// A document in responses.
#[derive(Serialize)]
struct DocumentBody {
    id: DocumentId,
    title: String,
    owner_id: UserId,
    role: Role,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<VersionVector>,
}

impl DocumentBody {
    fn new(d: Document, role: Role) -> Self {
        DocumentBody {
            id: d.id,
            title: d.title,
            owner_id: d.owner_id,
            role,
            created_at: d.created_at,
            updated_at: d.updated_at,
            text: None,
            version: None,
        }
    }
}

/// A JSON answer, refused (413, saying what to ask instead) if Lambda could not carry it: the
/// writes that would make a document's answers this heavy are refused (`service::size`), so
/// only an answer that asks for more than one document's worth meets this.
fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = match serde_json::to_vec(body) {
        Ok(b) => b,
        Err(e) => return ApiError(AppError::Internal(e.to_string())).into_response(),
    };
    // The payload is at most twice the body (each byte escaped once more): only a large body
    // is measured.
    let carried = if bytes.len() * 2 <= MAX_ANSWER_BYTES {
        bytes.len()
    } else {
        std::str::from_utf8(&bytes).map_or(bytes.len() * 2, payload_bytes)
    };
    if carried > MAX_ANSWER_BYTES {
        return ApiError(AppError::TooLarge(format!(
            "the answer would be {carried} bytes, over Lambda's response limit: ask for less (`omit=text` or `omit=snapshot` on /sessions, a smaller `limit` on /operations)"
        )))
        .into_response();
    }
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    title: String,
    #[serde(default)]
    content: Option<String>,
}

async fn create<P: EventPublisher + 'static>(
    State(app): State<Arc<App<P>>>,
    Caller(user): Caller,
    Json(b): Json<CreateBody>,
) -> Result<Response> {
    let v = app
        .service
        .create_document(&user, &b.title, b.content.as_deref())
        .await?;
    let mut body = DocumentBody::new(v.document, v.role);
    body.text = Some(v.text);
    body.version = Some(v.version);
    Ok(json(StatusCode::CREATED, &body))
}

#[derive(Serialize)]
struct DocumentList {
    documents: Vec<DocumentBody>,
}

async fn list<P: EventPublisher + 'static>(
    State(app): State<Arc<App<P>>>,
    Caller(user): Caller,
) -> Result<Response> {
    let docs = app.service.list_documents(&user).await?;
    Ok(json(
        StatusCode::OK,
        &DocumentList {
            documents: docs
                .into_iter()
                .map(|(d, r)| DocumentBody::new(d, r))
                .collect(),
        },
    ))
}

async fn read<P: EventPublisher + 'static>(
    State(app): State<Arc<App<P>>>,
    Caller(user): Caller,
    p: Params,
) -> Result<Response> {
    let v = app.service.get_document(p.doc()?, &user).await?;
    let mut body = DocumentBody::new(v.document, v.role);
    body.text = Some(v.text);
    body.version = Some(v.version);
    Ok(json(StatusCode::OK, &body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    title: String,
}

async fn rename<P: EventPublisher + 'static>(
    State(app): State<Arc<App<P>>>,
    Caller(user): Caller,
    p: Params,
    Json(b): Json<RenameBody>,
) -> Result<Response> {
    let d = app
        .service
        .rename_document(p.doc()?, &user, &b.title)
        .await?;
    Ok(json(StatusCode::OK, &DocumentBody::new(d, Role::Owner)))
}

async fn remove<P: EventPublisher + 'static>(
    State(app): State<Arc<App<P>>>,
    Caller(user): Caller,
    p: Params,
) -> Result<Response> {
    app.service.delete_document(p.doc()?, &user).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize)]
struct SessionBody {
    session: SiteId,
    document_id: DocumentId,
    ssn: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    version: VersionVector,
    /// The replica encoded for `rga::Rga::decode`, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionQuery {
    /// `text`, `snapshot` or both (comma-separated): leave them out of the answer.
    #[serde(default)]
    omit: Option<String>,
}

async fn open_session<P: EventPublisher + 'static>(
    State(app): State<Arc<App<P>>>,
    Caller(user): Caller,
    p: Params,
    Query(q): Query<SessionQuery>,
) -> Result<Response> {
    // Exactly the documented values (an empty or repeated part is a mistake worth naming).
    let (want_text, want_snapshot) = match q.omit.as_deref() {
        None => (true, true),
        Some("text") => (false, true),
        Some("snapshot") => (true, false),
        Some("text,snapshot" | "snapshot,text") => (false, false),
        Some(other) => {
            return Err(AppError::BadRequest(format!(
                "omit={other:?}: it is `text`, `snapshot` or `text,snapshot`"
            ))
            .into());
        }
    };
    let v = app
        .service
        .open_session_with(p.doc()?, &user, want_text, want_snapshot)
        .await?;
    let body = SessionBody {
        session: v.session.site,
        document_id: v.session.document_id,
        ssn: v.ssn,
        text: want_text.then_some(v.text),
        version: v.version,
        snapshot: want_snapshot
            .then(|| base64::engine::general_purpose::STANDARD.encode(&v.snapshot)),
    };
    Ok(json(StatusCode::CREATED, &body))
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct OpsBody {
    session: SiteId,
    ops: Vec<Op>,
}

#[derive(Serialize)]
struct OpsResult {
    /// `applied`, or `pending` when some ops wait for causes this replica has not received.
    status: &'static str,
    applied: usize,
    duplicates: usize,
    pending: Vec<CharId>,
    version: VersionVector,
}

async fn post_ops<P: EventPublisher + 'static>(
    State(app): State<Arc<App<P>>>,
    Caller(user): Caller,
    p: Params,
    headers: http::HeaderMap,
    Json(b): Json<OpsBody>,
) -> Result<Response> {
    let doc = p.doc()?;
    let key = request_key(&headers, &format!("POST /documents/{doc}/operations"), &b)?;
    let out = app
        .service
        .apply_ops_keyed(doc, &user, b.session, b.ops, key.as_ref())
        .await?;
    let (status, code) = if out.pending.is_empty() {
        ("applied", StatusCode::OK)
    } else {
        ("pending", StatusCode::ACCEPTED)
    };
    Ok(json(
        code,
        &OpsResult {
            status,
            applied: out.applied,
            duplicates: out.duplicates,
            pending: out.pending,
            version: out.version,
        },
    ))
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct EditsBody {
    session: SiteId,
    #[serde(default)]
    base: Option<VersionVector>,
    edits: Vec<Splice>,
}

#[derive(Serialize)]
struct EditsResult {
    ops: Vec<Op>,
    version: VersionVector,
    current_version: VersionVector,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditsQuery {
    /// `text`: the answer carries the document's current text too.
    #[serde(default)]
    include: Option<String>,
}

/// The request's `Idempotency-Key`, if it has one.
fn request_key(
    headers: &http::HeaderMap,
    route: &str,
    body: &impl Serialize,
) -> Result<Option<collab::service::RequestKey>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v.to_str().map_err(|_| {
        ApiError(AppError::BadRequest(
            "the Idempotency-Key header is not visible ASCII".into(),
        ))
    })?;
    Ok(Some(collab::service::RequestKey::new(key, route, body)?))
}

async fn post_edits<P: EventPublisher + 'static>(
    State(app): State<Arc<App<P>>>,
    Caller(user): Caller,
    p: Params,
    Query(q): Query<EditsQuery>,
    headers: http::HeaderMap,
    Json(b): Json<EditsBody>,
) -> Result<Response> {
    let doc = p.doc()?;
    let include_text = match q.include.as_deref() {
        None | Some("") => false,
        Some("text") => true,
        Some(other) => {
            return Err(AppError::BadRequest(format!(
                "include={other:?}: the only thing to include is `text`"
            ))
            .into());
        }
    };
    let key = request_key(&headers, &format!("POST /documents/{doc}/edits"), &b)?;
    let out = app
        .service
        .apply_edits_keyed(
            doc,
            &user,
            b.session,
            b.base,
            b.edits,
            key.as_ref(),
            include_text,
        )
        .await?;
    Ok(json(
        StatusCode::OK,
        &EditsResult {
            ops: out.ops,
            version: out.version,
            current_version: out.current_version,
            text: out.text,
        },
    ))
}

#[derive(Deserialize)]
struct OpsQuery {
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    cursor: Option<i64>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `since` as `site:seq,site:seq` (or a JSON object); empty means "from the start".
fn parse_since(s: Option<&str>) -> Result<VersionVector> {
    let Some(s) = s.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(VersionVector::new());
    };
    let bad = || {
        ApiError(AppError::BadRequest(
            "`since` must be `site:seq,...` or a JSON version object".into(),
        ))
    };
    let v: VersionVector = if s.starts_with('{') {
        serde_json::from_str(s).map_err(|_| bad())?
    } else {
        let mut v = VersionVector::new();
        for part in s.split(',') {
            let (site, seq) = part.split_once(':').ok_or_else(bad)?;
            let site: u64 = site.trim().parse().map_err(|_| bad())?;
            let seq: u64 = seq.trim().parse().map_err(|_| bad())?;
            if seq > v.get(SiteId(site)) {
                v.set(SiteId(site), seq);
            }
        }
        v
    };
    // Identifiers travel as JSON numbers, exact only below 2^53.
    if v.iter().any(|(site, seq)| {
        site.0 > collab::service::MAX_WIRE_ID || seq > collab::service::MAX_WIRE_ID
    }) {
        return Err(ApiError(AppError::BadRequest(
            "`since` entries must be below 2^53".into(),
        )));
    }
    Ok(v)
}

async fn get_ops<P: EventPublisher + 'static>(
    State(app): State<Arc<App<P>>>,
    Caller(user): Caller,
    p: Params,
    Query(q): Query<OpsQuery>,
    headers: http::HeaderMap,
) -> Result<Response> {
    let since = parse_since(q.since.as_deref())?;
    let binary = headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(OPS_BINARY));
    let limit = q.limit.unwrap_or(if binary { 10_000 } else { 1000 });
    if limit == 0 || limit > 10_000 {
        return Err(AppError::BadRequest("limit must be 1 to 10000".into()).into());
    }
    let page = app
        .service
        .ops_since(p.doc()?, &user, &since, q.cursor.unwrap_or(0).max(0), limit)
        .await?;
    if !binary {
        return Ok(json(StatusCode::OK, &page));
    }
    // The binary batch (about a tenth of the JSON, and decoded without a JSON parser); the next
    // page's cursor travels in a header.
    let mut res = Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, OPS_BINARY)
        .header(http::header::VARY, "accept");
    if let Some(c) = page.next_cursor {
        res = res.header(NEXT_CURSOR, c);
    }
    res.body(axum::body::Body::from(rga::encode_ops(&page.ops)))
        .map_err(|e| ApiError(AppError::Internal(e.to_string())))
}

/// The media type of the binary op batch (`rga::encode_ops`), asked for with `Accept`.
pub const OPS_BINARY: &str = "application/x-rga-ops";
/// The header that carries a binary page's `next_cursor` (absent on the last page).
pub const NEXT_CURSOR: &str = "x-next-cursor";

#[derive(Serialize)]
struct SnapshotList {
    snapshots: Vec<SnapshotMeta>,
}

async fn snapshots<P: EventPublisher + 'static>(
    State(app): State<Arc<App<P>>>,
    Caller(user): Caller,
    p: Params,
) -> Result<Response> {
    let snapshots = app.service.snapshots(p.doc()?, &user).await?;
    Ok(json(StatusCode::OK, &SnapshotList { snapshots }))
}

#[derive(Serialize)]
struct SnapshotText {
    version: i32,
    text: String,
}

async fn snapshot<P: EventPublisher + 'static>(
    State(app): State<Arc<App<P>>>,
    Caller(user): Caller,
    p: Params,
) -> Result<Response> {
    let n: i32 = p.second().parse().map_err(|_| {
        ApiError(AppError::BadRequest(
            "the snapshot number must be an integer".into(),
        ))
    })?;
    let text = app.service.snapshot_text(p.doc()?, &user, n).await?;
    Ok(json(StatusCode::OK, &SnapshotText { version: n, text }))
}

#[derive(Serialize)]
struct CollaboratorList {
    collaborators: Vec<Collaborator>,
}

async fn collaborators<P: EventPublisher + 'static>(
    State(app): State<Arc<App<P>>>,
    Caller(user): Caller,
    p: Params,
) -> Result<Response> {
    let collaborators = app.service.collaborators(p.doc()?, &user).await?;
    Ok(json(StatusCode::OK, &CollaboratorList { collaborators }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: Role,
}

async fn set_collaborator<P: EventPublisher + 'static>(
    State(app): State<Arc<App<P>>>,
    Caller(user): Caller,
    p: Params,
    Json(b): Json<RoleBody>,
) -> Result<Response> {
    let target = UserId(p.second().to_owned());
    let collaborators = app
        .service
        .set_collaborator(p.doc()?, &user, &target, Some(b.role))
        .await?;
    Ok(json(StatusCode::OK, &CollaboratorList { collaborators }))
}

async fn remove_collaborator<P: EventPublisher + 'static>(
    State(app): State<Arc<App<P>>>,
    Caller(user): Caller,
    p: Params,
) -> Result<Response> {
    let target = UserId(p.second().to_owned());
    let collaborators = app
        .service
        .set_collaborator(p.doc()?, &user, &target, None)
        .await?;
    Ok(json(StatusCode::OK, &CollaboratorList { collaborators }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_the_compact_and_the_json_forms() {
        let v = parse_since(Some("1099511627777:5, 7:2")).unwrap();
        assert_eq!(v.get(SiteId(1099511627777)), 5);
        assert_eq!(v.get(SiteId(7)), 2);
        assert_eq!(parse_since(Some(r#"{"7":2}"#)).unwrap().get(SiteId(7)), 2);
        assert!(parse_since(None).unwrap().is_empty());
        for bad in [
            "7",
            "x:1",
            "1:-1",
            "{",
            "7:9223372036854775808",
            r#"{"7":9007199254740993}"#,
        ] {
            assert!(parse_since(Some(bad)).is_err(), "{bad}");
        }
    }
}
