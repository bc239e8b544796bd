//! The warm-container cache: documents loaded once stay in memory across invocations and are
//! refreshed from the log tail since their position. Correctness never depends on it: every
//! write refreshes under the document's database lock first, and any failure after the replica
//! was touched drops the entry, so the next use reloads from the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rga::Rga;

use crate::ids::DocumentId;

/// A cached replica of a document.
pub(crate) struct Cached {
    /// The replica: every op with log position below `next_pos`, plus the waiting ops.
    pub rga: Rga,
    /// The log position after what `rga` holds.
    pub next_pos: i64,
    /// Where the tail after the latest known snapshot starts.
    pub snapshot_pos: i64,
    /// An upper bound of `rga.encode().len()`: exact at load or compaction, plus
    /// [`op_bound`](crate::service::size::op_bound) of every op applied since.
    pub encoded: usize,
    /// Until when other containers are taken to be writing this document too (they were seen
    /// doing so lately): its edits then read the tail with their session check.
    pub contended_until: Option<std::time::Instant>,
}

impl Cached {
    /// Whether other containers were seen writing lately.
    pub fn contended(&self) -> bool {
        self.contended_until
            .is_some_and(|t| std::time::Instant::now() < t)
    }

    /// Another container's write was seen: read the tail with the next edits' checks.
    pub fn saw_other_writers(&mut self) {
        self.contended_until = Some(std::time::Instant::now() + CONTENDED_FOR);
    }
}

/// How long a document counts as written by several containers after one was seen.
const CONTENDED_FOR: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Slots by document with the tick of their last use.
#[derive(Default)]
struct Slots {
    map: HashMap<DocumentId, (Slot, u64)>,
    tick: u64,
}

/// Slots by document, least recently used evicted beyond `capacity`.
pub(crate) struct DocCache {
    slots: Mutex<Slots>,
    capacity: usize,
}

impl DocCache {
    pub fn new(capacity: usize) -> Self {
        DocCache {
            slots: Mutex::new(Slots::default()),
            capacity: capacity.max(1),
        }
    }

    /// The slot of `id` (created empty if absent). Holding its lock serializes this container's
    /// work on the document.
    pub fn slot(&self, id: DocumentId) -> Slot {
        let mut guard = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let Slots { map, tick } = &mut *guard;
        *tick += 1;
        let now = *tick;
        if let Some((slot, used)) = map.get_mut(&id) {
            *used = now;
            return slot.clone();
        }
        if map.len() >= self.capacity
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        let slot: Slot = Arc::default();
        map.insert(id, (slot.clone(), now));
        slot
    }

    /// Drops the entry of `id`.
    pub fn forget(&self, id: DocumentId) {
        let mut guard = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        guard.map.remove(&id);
    }
}
