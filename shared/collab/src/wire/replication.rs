//! Messages between replicas (the SNS payload) and their splitting under SNS's size limit.
//!
//! JSON: `{"origin": 1, "type": "ops", "document": {...}, "ops": [...]}`; `type` is `ops`,
//! `document` (created, renamed or deleted) or `session` (opened). Every message about a document
//! carries its metadata, so a replica can create the document whatever order messages arrive in.
//! SNS caps a message at 256 KiB including attributes: an `ops` message is split into several,
//! and an insert run too long for one message is cut into shorter runs (a run's chars can be
//! sent as separate inserts, each after the previous char).

use rga::Op;
use serde::{Deserialize, Serialize};

use crate::ids::{DocumentId, ReplicaId};
use crate::model::{CollaboratorChange, DocumentInfo, Session};

/// SNS's limit for message plus attributes.
pub const SNS_MAX_BYTES: usize = 256 * 1024;

/// What a replica broadcasts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Broadcast {
    /// New operations of a document.
    Ops {
        /// The document's metadata.
        document: DocumentInfo,
        /// The operations, in an order in which they can be applied.
        ops: Vec<Op>,
    },
    /// A document was created, renamed or deleted.
    Document {
        /// The document's metadata.
        document: DocumentInfo,
    },
    /// A collaborator was added, changed or removed.
    Collaborator {
        /// The document's metadata.
        document: DocumentInfo,
        /// The change.
        change: CollaboratorChange,
    },
    /// A session was opened (so other replicas know whose site it is).
    Session {
        /// The document's metadata.
        document: DocumentInfo,
        /// The session.
        session: Session,
    },
}

/// A broadcast with its origin replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The replica that sent it.
    pub origin: ReplicaId,
    /// The content.
    #[serde(flatten)]
    pub body: Broadcast,
}

impl Envelope {
    /// Why the message's claims do not match its origin, if they do not (issue 16): a
    /// replica sends only its own sessions' ops and sessions (whose site ids carry it in
    /// their high bits, [`crate::ids::replica_of`]) and only collaborator changes it stamped.
    /// A forged message is dropped and counted, never applied. `document` messages carry the
    /// metadata's own stamps and are merged by them.
    pub fn forged(&self) -> Option<String> {
        let origin = self.origin;
        match &self.body {
            Broadcast::Ops { ops, .. } => ops
                .iter()
                .find(|op| crate::ids::replica_of(op.site()) != origin)
                .map(|op| {
                    format!(
                        "op {} is of a site of replica {}, not of the origin {origin}",
                        op.id().id(),
                        crate::ids::replica_of(op.site())
                    )
                }),
            Broadcast::Session { session, .. } => (session.replica != origin
                || crate::ids::replica_of(session.site) != origin)
                .then(|| {
                    format!(
                        "session {} claims replica {} (its site: {}), not the origin {origin}",
                        session.site,
                        session.replica,
                        crate::ids::replica_of(session.site)
                    )
                }),
            Broadcast::Collaborator { change, .. } => (change.replica != origin).then(|| {
                format!(
                    "a collaborator change stamped by replica {}, not by the origin {origin}",
                    change.replica
                )
            }),
            Broadcast::Document { .. } => None,
        }
    }

    /// The document the message is about.
    pub fn document(&self) -> &DocumentInfo {
        match &self.body {
            Broadcast::Ops { document, .. }
            | Broadcast::Document { document }
            | Broadcast::Collaborator { document, .. }
            | Broadcast::Session { document, .. } => document,
        }
    }
}

/// One SNS message ready to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// Attribute `document_id`.
    pub document_id: DocumentId,
    /// Attribute `replica_id`.
    pub origin: ReplicaId,
    /// The JSON body.
    pub body: String,
}

impl Outbound {
    /// Bytes SNS counts: the body plus each attribute's name, type and value.
    pub fn sns_size(&self) -> usize {
        let attr = |name: &str, value: &str| name.len() + "String".len() + value.len();
        self.body.len()
            + attr("document_id", &self.document_id.to_string())
            + attr("replica_id", &self.origin.to_string())
    }
}

/// Splits an envelope into messages of at most `limit` bytes each (as SNS counts them).
pub fn split(envelope: &Envelope, limit: usize) -> Vec<Outbound> {
    let document_id = envelope.document().id;
    let origin = envelope.origin;
    let make = |body: Broadcast| Outbound {
        document_id,
        origin,
        body: serde_json::to_string(&Envelope { origin, body }).unwrap_or_default(),
    };
    let Broadcast::Ops { document, ops } = &envelope.body else {
        return vec![make(envelope.body.clone())];
    };
    let empty = make(Broadcast::Ops {
        document: document.clone(),
        ops: Vec::new(),
    });
    // Room for ops in one message: the limit minus the envelope, with a margin for commas.
    let room = limit.saturating_sub(empty.sns_size() + 16).max(1024);
    let mut out = Vec::new();
    let mut batch: Vec<Op> = Vec::new();
    let mut size = 0;
    for op in ops.iter().flat_map(|op| cut_run(op, room / 2)) {
        let len = serde_json::to_string(&op).map(|s| s.len() + 1).unwrap_or(0);
        if size + len > room && !batch.is_empty() {
            out.push(make(Broadcast::Ops {
                document: document.clone(),
                ops: std::mem::take(&mut batch),
            }));
            size = 0;
        }
        size += len;
        batch.push(op);
    }
    if !batch.is_empty() || out.is_empty() {
        out.push(make(Broadcast::Ops {
            document: document.clone(),
            ops: batch,
        }));
    }
    out
}

/// Cuts an insert whose JSON would exceed `max` bytes into consecutive shorter inserts.
fn cut_run(op: &Op, max: usize) -> Vec<Op> {
    let Op::Insert { id, after, text } = op else {
        return vec![op.clone()];
    };
    // JSON escaping can at most sextuple a char's bytes; keep pieces well under `max`.
    let piece_bytes = (max / 6).max(64);
    if text.len() * 6 + 200 <= max {
        return vec![op.clone()];
    }
    let mut out = Vec::new();
    let mut after = *after;
    let mut k = 0u64;
    let mut piece = String::new();
    let mut flush = |piece: &mut String, k: &mut u64, after: &mut Option<rga::S4Vector>| {
        let n = piece.chars().count() as u64;
        if let Some(first) = id.offset(*k) {
            out.push(Op::Insert {
                id: first,
                after: *after,
                text: std::mem::take(piece),
            });
            *after = id.offset(*k + n - 1);
        }
        *k += n;
    };
    for c in text.chars() {
        if piece.len() + c.len_utf8() > piece_bytes {
            flush(&mut piece, &mut k, &mut after);
        }
        piece.push(c);
    }
    if !piece.is_empty() {
        flush(&mut piece, &mut k, &mut after);
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use rga::{Rga, SiteId, VersionVector};

    use super::*;
    use crate::ids::UserId;

    fn info() -> DocumentInfo {
        DocumentInfo {
            id: DocumentId::new(),
            title: "t".into(),
            owner_id: UserId("u".into()),
            created_at: Utc::now(),
            origin_replica: ReplicaId(1),
            title_stamp: 0,
            title_replica: ReplicaId(1),
            deleted: false,
        }
    }

    #[test]
    fn large_batches_split_under_the_limit_and_reassemble_to_the_same_text() {
        let mut doc = Rga::new();
        let big: String = "héllo wörld \"quoted\" \n".repeat(30_000);
        doc.insert(SiteId(5), 0, &big).unwrap();
        for i in 0..2000 {
            doc.insert(SiteId(6), i * 7, "x").unwrap();
        }
        let envelope = Envelope {
            origin: ReplicaId(1),
            body: Broadcast::Ops {
                document: info(),
                ops: doc.ops_since(&VersionVector::new()),
            },
        };
        let parts = split(&envelope, SNS_MAX_BYTES);
        assert!(parts.len() > 3);
        let mut back = Rga::new();
        for p in &parts {
            assert!(p.sns_size() <= SNS_MAX_BYTES, "{} bytes", p.sns_size());
            let e: Envelope = serde_json::from_str(&p.body).unwrap();
            let Broadcast::Ops { ops, .. } = e.body else {
                panic!("not ops")
            };
            back.apply_all(ops).unwrap();
        }
        assert_eq!(back.text(), doc.text());
        assert_eq!(back.pending_len(), 0);
    }
}
