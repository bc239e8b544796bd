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
    /// An identifier field is larger than [`Limits::max_id`](crate::Limits::max_id) allows.
    #[error("op {id}: {field} {value} exceeds the largest identifier, {max}")]
    IdOutOfRange {
        /// The operation.
        id: CharId,
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The limit.
        max: u64,
    },
    /// The sum jumps further above the op's causes than
    /// [`Limits::max_sum_step`](crate::Limits::max_sum_step) allows: no site saw that many
    /// operations, and accepting it would use up the precedence space.
    #[error("op {id}: sum {sum} exceeds its causes' highest sum {causes} by more than {max}")]
    SumJump {
        /// The operation.
        id: CharId,
        /// Its sum.
        sum: u64,
        /// The highest sum among its causes (its site's previous op, reference, targets).
        causes: u64,
        /// The limit on the difference.
        max: u64,
    },
    /// The waiting buffer is full (in total or for the op's site).
    #[error("op {id} cannot wait for its causes: {limit}")]
    BufferFull {
        /// The operation.
        id: CharId,
        /// Which limit it hit.
        limit: BufferLimit,
    },
    /// The op waited for its causes longer than
    /// [`Limits::max_pending_age`](crate::Limits::max_pending_age) and was dropped.
    #[error("op {id} waited too long for {cause} and was dropped")]
    Expired {
        /// The operation.
        id: CharId,
        /// The cause it waited for.
        cause: CharId,
    },
    /// The op waited for a cause that was refused (or itself dropped), so it can never apply.
    #[error("op {id} waited for {cause}, which was refused; dropped")]
    CauseRefused {
        /// The operation.
        id: CharId,
        /// The refused cause.
        cause: CharId,
    },
}

impl OpError {
    /// Whether the same op may succeed later (only a full waiting buffer is temporary).
    pub fn is_transient(&self) -> bool {
        matches!(self, OpError::BufferFull { .. })
    }
}

/// Which limit of the waiting buffer an op hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BufferLimit {
    /// Operations waiting in total.
    #[error("{0} operations are waiting already")]
    Ops(usize),
    /// Bytes of waiting operations in total.
    #[error("waiting operations already hold {0} bytes")]
    Bytes(usize),
    /// Operations of the op's site waiting.
    #[error("{0} operations of its site are waiting already")]
    SiteOps(usize),
    /// Bytes of the op's site's waiting operations.
    #[error("waiting operations of its site already hold {0} bytes")]
    SiteBytes(usize),
    /// Operations of the op's site group waiting ([`crate::Limits::pending_group_shift`]).
    #[error("{0} operations of its site group are waiting already")]
    GroupOps(usize),
    /// Bytes of the op's site group's waiting operations.
    #[error("waiting operations of its site group already hold {0} bytes")]
    GroupBytes(usize),
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
