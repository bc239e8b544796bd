//! Sessions: an editor's site id on this replica, with the document's state to start from.
//! A session's ops are accepted only on the replica that opened it (its id carries the replica).

use rga::SiteId;

use super::write::apply_tail;
use super::{Service, SessionView};
use crate::error::AppError;
use crate::ids::ReplicaId;
use crate::ids::{DocumentId, UserId};
use crate::model::{Document, Role, Session};
use crate::ports::{DocumentStore, EventPublisher};
use crate::wire::{Broadcast, Envelope};

impl<S: DocumentStore, P: EventPublisher> Service<S, P> {
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
    /// and the document, with the cached replica brought up to the log: one round trip (two
    /// when another container wrote the document since and none was seen doing so lately).
    pub(super) async fn authorize_session(
        &self,
        id: DocumentId,
        user: &UserId,
        site: SiteId,
    ) -> Result<Document, AppError> {
        // The edit is planned on the state as of the request's start (see `write.rs`): the
        // cache is brought up to the log as the session check sees it.
        let slot = self.cache.slot(id);
        let (from, contended) = match slot.lock().await.as_ref() {
            Some(c) => (Some(c.next_pos), c.contended()),
            None => (None, false),
        };
        let (access, tail) = self
            .store
            .access_with_session_and_tail(id, user, site, from.filter(|_| contended))
            .await?;
        let (doc, session, log_len) = match access {
            Some(((doc, Some(role), session), log_len))
                if doc.deleted_at.is_none() && role >= Role::Editor =>
            {
                (doc, session, log_len)
            }
            _ => return Err(AppError::not_found(format!("document {id}"))),
        };
        check_session(id, user, site, session, self.settings.replica)?;
        let Some(from) = from else {
            return Ok(doc);
        };
        let tail = match tail {
            Some(tail) => tail,
            None if log_len == from => return Ok(doc),
            // Another container wrote since this one's last look: read what it wrote.
            None => self.store.tail(id, from).await?,
        };
        let mut guard = slot.lock().await;
        if let Some(c) = guard.as_mut()
            && c.next_pos >= from
        {
            if !tail.ops.is_empty() {
                c.saw_other_writers();
            }
            if apply_tail(id, c, tail).is_err() {
                *guard = None;
            }
        }
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
