//! Errors. Bad *data* (an operation from the network, a snapshot's bytes, an index from a client)
//! is reported through these enums and never panics.

use crate::id::{CharId, SiteId};

/// Why an operation was refused. Nothing is changed when an operation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The session number is newer than any this replica knows.
    #[error("op {id} uses session number {ssn}, but this replica knows sessions up to {known}")]
    UnknownSession {
        /// The operation.
        id: CharId,
        /// Its session number.
        ssn: u32,
        /// The highest known session number.
        known: u32,
    },
    /// An insert without text or a delete without targets.
    #[error("op {id} is empty")]
    Empty {
        /// The operation.
        id: CharId,
    },
    /// Sequence numbers start at 1.
    #[error("op {id} has sequence number 0; sequence numbers start at 1")]
    ZeroSeq {
        /// The operation.
        id: CharId,
    },
    /// `seq > sum`: the site's own clock entry cannot exceed the sum of its whole clock, so no
    /// site can have produced this S4Vector.
    #[error("op {id}: seq {seq} exceeds sum {sum}, which no site can have produced")]
    SeqExceedsSum {
        /// The operation.
        id: CharId,
        /// Its seq.
        seq: u64,
        /// Its sum.
        sum: u64,
    },
    /// A sequence number or sum overflows.
    #[error("op {id}: its identifiers overflow")]
    Overflow {
        /// The operation.
        id: CharId,
    },
    /// An operation must have higher precedence than the character it refers to (its reference,
    /// target), since it was issued after seeing it.
    #[error(
        "op {id} does not exceed {cause} in precedence, so it cannot have been issued after it"
    )]
    NotAfterCause {
        /// The operation.
        id: CharId,
        /// The character it refers to.
        cause: CharId,
    },
    /// A site's operations must increase in precedence with their sequence numbers.
    #[error("op {id} does not exceed the precedence of the previous op of site {site}")]
    NotIncreasing {
        /// The operation.
        id: CharId,
        /// Its site.
        site: SiteId,
    },
    /// The identifier is taken by an operation with different content.
    #[error("op {id} reuses an existing identifier with different content")]
    ConflictingDuplicate {
        /// The identifier.
        id: CharId,
    },
    /// The reference's S4Vector differs from the stored character with that `(sid, seq)`.
    #[error("op {id} refers to {reference} with an S4Vector that does not match the stored one")]
    ReferenceMismatch {
        /// The operation.
        id: CharId,
        /// The reference.
        reference: CharId,
    },
    /// A reference or target names an operation that is not an inserted character.
    #[error("op {id} refers to {target}, which is not an inserted character")]
    NotACharacter {
        /// The operation.
        id: CharId,
        /// What it refers to.
        target: CharId,
    },
    /// More characters or targets than one operation may carry.
    #[error("op {id} is too large: {len} elements, at most {max}")]
    TooLarge {
        /// The operation.
        id: CharId,
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The document would grow past what a replica can hold.
    #[error("the document would exceed {max} characters including tombstones")]
    DocumentTooLarge {
        /// The limit.
        max: u64,
    },
    /// Too many operations are waiting for their causes.
    #[error("op {id} cannot wait for its causes: {max} operations are already waiting")]
    BufferFull {
        /// The operation.
        id: CharId,
        /// The limit.
        max: usize,
    },
}

/// Why a local (index-based) edit was refused. Nothing is changed when an edit is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The index is past the end of the text.
    #[error("index {index} is out of bounds for a text of {len} chars")]
    IndexOutOfBounds {
        /// The index.
        index: usize,
        /// The text length, in chars.
        len: usize,
    },
    /// The deleted range runs past the end of the text.
    #[error("deleting {delete} chars at {index} runs past the end of a text of {len} chars")]
    RangeOutOfBounds {
        /// The index.
        index: usize,
        /// Number of chars to delete.
        delete: usize,
        /// The text length, in chars.
        len: usize,
    },
    /// The base version names operations this replica has not received.
    #[error("the base version includes {site}:{seq}, which this replica has not received yet")]
    NotReceived {
        /// The site.
        site: SiteId,
        /// Its sequence number in the base.
        seq: u64,
    },
    /// The edit would break a limit.
    #[error(transparent)]
    Op(#[from] OpError),
}

/// Why a snapshot could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a snapshot of this format.
    #[error("not an RGA snapshot (bad magic bytes)")]
    BadMagic,
    /// A format version this build does not read.
    #[error("unsupported snapshot format version {0}")]
    UnsupportedVersion(u8),
    /// The bytes end early.
    #[error("snapshot truncated")]
    Truncated,
    /// The bytes decode to an inconsistent replica.
    #[error("malformed snapshot: {0}")]
    Malformed(&'static str),
}
