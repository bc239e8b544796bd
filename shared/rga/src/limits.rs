//! Limits that keep a replica's memory and identifier space bounded against hostile input.

/// Limits applied to operations from outside and to local edits. Every field has a default
/// (`Limits::default()`); change fields on a default value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Most characters (or deleted characters plus target ranges) one operation may carry.
    /// Local edits and catch-up split larger ones into several operations.
    pub max_op_len: u64,
    /// The largest value of any identifier field (`sum`, `seq`, `sid`, and those of references
    /// and targets). The default, 2^53 − 1, is the largest integer a JavaScript number holds
    /// exactly, so every id survives JSON in a browser.
    pub max_id: u64,
    /// How far an operation's `sum` may exceed the highest sum among its causes (its site's
    /// previous operation, its reference, its targets). A sum is a count of operations the
    /// issuer had seen, so a legitimate jump beyond 2^32 would need billions of operations; a
    /// hostile one would otherwise use up the identifier space in one op. The rule depends only
    /// on the op and its causes, which every replica holds when it applies the op, so all
    /// replicas accept or refuse alike. Local edits never exceed it.
    pub max_sum_step: u64,
    /// Most elements (characters including tombstones) in the document.
    pub max_elements: u64,
    /// Most operations waiting for their causes at once.
    pub max_pending: usize,
    /// Most bytes (text and targets, roughly) of waiting operations at once.
    pub max_pending_bytes: usize,
    /// Most operations of one site waiting at once.
    pub max_pending_per_site: usize,
    /// Most bytes of one site's waiting operations at once.
    pub max_pending_bytes_per_site: usize,
    /// How long an operation may wait, counted in operations applied since it arrived; older
    /// ones are dropped and reported.
    pub max_pending_age: u64,
    /// Sites whose ids agree above this bit form a group with its own waiting quota (`0`: no
    /// groups). A system that puts a site's origin in the high bits of its id (collab puts the
    /// replica there) keeps one origin's waiting operations from crowding out another's: a
    /// flood from one replica's clients cannot fill the buffer that other replicas' operations
    /// need.
    pub pending_group_shift: u32,
    /// Most operations of one group waiting at once (with groups).
    pub max_pending_per_group: usize,
    /// Most bytes of one group's waiting operations at once (with groups).
    pub max_pending_bytes_per_group: usize,
}

/// The largest integer a JavaScript number (an IEEE double) holds exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_op_len: 1 << 24,
            max_id: MAX_SAFE_INTEGER,
            max_sum_step: 1 << 32,
            max_elements: (1 << 31) - 1,
            max_pending: 100_000,
            max_pending_bytes: 64 << 20,
            max_pending_per_site: 10_000,
            max_pending_bytes_per_site: 16 << 20,
            max_pending_age: 1 << 20,
            pending_group_shift: 0,
            max_pending_per_group: 50_000,
            max_pending_bytes_per_group: 32 << 20,
        }
    }
}
