//! Records of the domain: documents, sessions, snapshots, pages of operations.

use chrono::{DateTime, Utc};
use rga::{Op, SiteId, VersionVector};
use serde::{Deserialize, Serialize};

use crate::ids::{DocumentId, ReplicaId, UserId};

/// A document's metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Its id.
    pub id: DocumentId,
    /// Its title.
    pub title: String,
    /// The user who created it.
    pub owner_id: UserId,
    /// When it was created (at its origin replica).
    pub created_at: DateTime<Utc>,
    /// Last change on this replica.
    pub updated_at: DateTime<Utc>,
    /// When it was deleted; deleted documents answer 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// The replica where it was created.
    pub origin_replica: ReplicaId,
    /// Last-writer-wins stamp of the title: (milliseconds, replica).
    pub title_stamp: (i64, ReplicaId),
}

impl Document {
    /// What another replica needs to create or update its copy of the metadata.
    pub fn info(&self) -> DocumentInfo {
        DocumentInfo {
            id: self.id,
            title: self.title.clone(),
            owner_id: self.owner_id.clone(),
            created_at: self.created_at,
            origin_replica: self.origin_replica,
            title_stamp: self.title_stamp.0,
            title_replica: self.title_stamp.1,
            deleted: self.deleted_at.is_some(),
        }
    }
}

/// Replicated document metadata, carried by every broadcast about the document so that a replica
/// can create the document before its first op arrives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentInfo {
    /// Its id.
    pub id: DocumentId,
    /// Its title.
    pub title: String,
    /// Its owner.
    pub owner_id: UserId,
    /// Creation time at the origin.
    pub created_at: DateTime<Utc>,
    /// The replica that created it.
    pub origin_replica: ReplicaId,
    /// Title stamp, milliseconds.
    pub title_stamp: i64,
    /// Title stamp, replica (tie-break).
    pub title_replica: ReplicaId,
    /// Whether it was deleted (deletion wins over everything).
    pub deleted: bool,
}

/// An editing session: an RGA site owned by one user on one document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The site id (also the session id).
    pub site: SiteId,
    /// The document.
    pub document_id: DocumentId,
    /// The user who opened it.
    pub user_id: UserId,
    /// The replica that allocated it.
    pub replica: ReplicaId,
}

/// One snapshot in a document's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Its number, from 1.
    pub version: i32,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// The version vector it covers.
    pub version_vector: VersionVector,
    /// Log position where the tail after it starts.
    pub log_pos: i64,
}

/// Most bytes of op JSON one catch-up page holds (more ops go in the next page; the first op
/// of a page always comes). The binary form is smaller still, and base64 of it stays under
/// Lambda's 6 MB response limit.
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// A page of operations for catch-up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpsPage {
    /// Operations in an order in which they can be applied.
    pub ops: Vec<Op>,
    /// Pass as `cursor` to get the next page; `None` when this was the last.
    pub next_cursor: Option<i64>,
}

/// What a user may do with a document. Ordered: each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Reads and writes.
    Editor,
    /// Everything, including renaming, deleting and managing collaborators.
    Owner,
}

impl Role {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Owner => "owner",
        }
    }

    /// Parses a stored role name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

/// A collaborator of a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collaborator {
    /// The user.
    pub user_id: UserId,
    /// Their role (`viewer` or `editor`; the owner is listed as `owner`).
    pub role: Role,
}

/// A replicated change of a collaborator's role; `role: None` removes them. The newest stamp
/// (milliseconds, then replica) wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollaboratorChange {
    /// The document.
    pub document_id: DocumentId,
    /// The user.
    pub user_id: UserId,
    /// The new role, or `None` for removal.
    pub role: Option<Role>,
    /// Stamp, milliseconds.
    pub stamp: i64,
    /// Stamp, replica.
    pub replica: ReplicaId,
}

/// A WebSocket connection to a document on this replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// API Gateway's connection id.
    pub id: String,
    /// The document.
    pub document_id: DocumentId,
    /// The authenticated user.
    pub user_id: UserId,
    /// When it connected.
    pub connected_at: DateTime<Utc>,
    /// When the token it was opened with expires (`None`: it does not, as with an
    /// authorizer's principal); the connection is closed then.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Whether a connection may still receive its document's pushes and send to it, as read with
/// the connection (so a collaborator removed, a document deleted or a token expired since
/// `$connect` is noticed on the next message or push).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Its user reads the document with this role.
    Reads(Role),
    /// Its user no longer has access.
    Revoked,
    /// The document was deleted.
    DocumentDeleted,
    /// Its token expired.
    Expired,
}

impl Standing {
    /// Parses the `standing` column of the store's connection queries.
    pub fn parse(s: &str) -> Standing {
        match s {
            "deleted" => Standing::DocumentDeleted,
            "expired" => Standing::Expired,
            other => Role::parse(other).map_or(Standing::Revoked, Standing::Reads),
        }
    }

    /// Its role, if it still reads.
    pub fn role(self) -> Option<Role> {
        match self {
            Standing::Reads(r) => Some(r),
            _ => None,
        }
    }

    /// Why a connection that no longer reads is closed: the `error` code sent before closing.
    pub fn reason(self) -> Option<(&'static str, &'static str)> {
        match self {
            Standing::Reads(_) => None,
            Standing::Revoked => {
                Some(("access_revoked", "your access to this document was removed"))
            }
            Standing::DocumentDeleted => Some(("document_deleted", "the document was deleted")),
            Standing::Expired => Some((
                "token_expired",
                "the token this connection was opened with has expired; reconnect with a fresh one",
            )),
        }
    }
}
