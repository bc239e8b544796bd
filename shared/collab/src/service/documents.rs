//! Documents: create, list, rename, delete, and who may use them (owner and collaborators).
//! Every change is written with its broadcast in one transaction and published after commit.

use chrono::Utc;
use rga::{Rga, VersionVector};

use super::{DocumentView, Service, check_storable, now_ms};
use crate::error::AppError;
use crate::ids::{DocumentId, UserId};
use crate::model::{Collaborator, CollaboratorChange, Document, DocumentInfo, Role};
use crate::ports::NewDocument;
use crate::ports::{DocumentStore, EventPublisher};
use crate::wire::{Broadcast, Envelope};

impl<S: DocumentStore, P: EventPublisher> Service<S, P> {
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

    pub(super) fn check_title(title: &str) -> Result<String, AppError> {
        check_storable("the title", title)?;
        let t = title.trim();
        if t.is_empty() || t.chars().count() > 512 {
            return Err(AppError::BadRequest(
                "title must have 1 to 512 characters".into(),
            ));
        }
        Ok(t.to_owned())
    }
}
