//! Operations that arrived before their causes (Roh et al.'s causal readiness): an operation
//! waits until its site's previous operation and the character it refers to (reference, delete
//! targets, update target) have been applied. Each waits under the first cause found missing and
//! is re-examined when an operation covering that identifier is applied.
//!
//! The buffer is bounded, since anything from outside may land here: in operations and in bytes,
//! in total, per site (so one site flooding it cannot keep another's operations out) and, when
//! the limits define site groups, per group (so one origin's sites together cannot either), and
//! in age (counted in operations applied since arrival). What is dropped is reported by the
//! caller.
//!
//! Invariants (checked by [`Pending::check`]): every waiting op is listed once under its cause
//! and once in arrival order; the quotas (total, per site, per group) are the sums over the
//! waiting ops.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;

use crate::error::BufferLimit;
use crate::id::{CharId, SiteId};
use crate::limits::Limits;
use crate::op::Op;

#[derive(Clone, Debug)]
struct Waiting {
    op: Op,
    cause: CharId,
    arrival: u64,
    bytes: usize,
    /// Its site's group, when the limits define groups at admission.
    group: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Quota {
    ops: usize,
    bytes: usize,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Pending {
    /// Missing cause → the ids of the ops waiting for it.
    by_cause: BTreeMap<CharId, Vec<CharId>>,
    /// Each waiting op by its id.
    ops: FxHashMap<CharId, Waiting>,
    /// `(arrival, id)` of every waiting op, oldest first.
    arrivals: BTreeSet<(u64, CharId)>,
    sites: FxHashMap<SiteId, Quota>,
    groups: FxHashMap<u64, Quota>,
    total: Quota,
}

/// The group of `site` under `limits`, if they define groups.
fn group_of(site: SiteId, limits: &Limits) -> Option<u64> {
    (limits.pending_group_shift > 0)
        .then(|| site.0.checked_shr(limits.pending_group_shift).unwrap_or(0))
}

/// What an op costs the buffer: its payload plus a fixed overhead.
fn cost(op: &Op) -> usize {
    64 + match op {
        Op::Insert { text, .. } => text.len(),
        Op::Delete { targets, .. } => targets.len() * 24,
        Op::Update { .. } => 0,
    }
}

impl Pending {
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The waiting operation with identifier `id`, if any.
    pub fn get(&self, id: CharId) -> Option<&Op> {
        self.ops.get(&id).map(|w| &w.op)
    }

    /// Adds `op`, waiting for `cause`, if the limits allow.
    pub fn admit(
        &mut self,
        op: Op,
        cause: CharId,
        arrival: u64,
        limits: &Limits,
    ) -> Result<(), BufferLimit> {
        let bytes = cost(&op);
        let site = op.site();
        let quota = self.sites.get(&site).copied().unwrap_or_default();
        if self.total.ops >= limits.max_pending {
            return Err(BufferLimit::Ops(limits.max_pending));
        }
        if self.total.bytes + bytes > limits.max_pending_bytes {
            return Err(BufferLimit::Bytes(limits.max_pending_bytes));
        }
        if quota.ops >= limits.max_pending_per_site {
            return Err(BufferLimit::SiteOps(limits.max_pending_per_site));
        }
        if quota.bytes + bytes > limits.max_pending_bytes_per_site {
            return Err(BufferLimit::SiteBytes(limits.max_pending_bytes_per_site));
        }
        let group = group_of(site, limits);
        if let Some(g) = group {
            let q = self.groups.get(&g).copied().unwrap_or_default();
            if q.ops >= limits.max_pending_per_group {
                return Err(BufferLimit::GroupOps(limits.max_pending_per_group));
            }
            if q.bytes + bytes > limits.max_pending_bytes_per_group {
                return Err(BufferLimit::GroupBytes(limits.max_pending_bytes_per_group));
            }
        }
        let id = op.id().id();
        self.by_cause.entry(cause).or_default().push(id);
        self.arrivals.insert((arrival, id));
        self.add_quota(site, group, bytes as isize, 1);
        self.ops.insert(
            id,
            Waiting {
                op,
                cause,
                arrival,
                bytes,
                group,
            },
        );
        Ok(())
    }

    /// Replaces the waiting op `id` by `op` (a longer run with the same start), if the limits
    /// allow the extra bytes; `false` if they do not.
    pub fn replace(&mut self, op: Op, limits: &Limits) -> bool {
        let id = op.id().id();
        let site = op.site();
        let Some(w) = self.ops.get(&id) else {
            return false;
        };
        let bytes = cost(&op);
        let extra = bytes.saturating_sub(w.bytes);
        let group = w.group;
        let quota = self.sites.get(&site).copied().unwrap_or_default();
        let group_bytes = group.map_or(0, |g| self.groups.get(&g).map_or(0, |q| q.bytes));
        if self.total.bytes + extra > limits.max_pending_bytes
            || quota.bytes + extra > limits.max_pending_bytes_per_site
            || (group.is_some() && group_bytes + extra > limits.max_pending_bytes_per_group)
        {
            return false;
        }
        let delta = bytes as isize - w.bytes as isize;
        if let Some(w) = self.ops.get_mut(&id) {
            w.op = op;
            w.bytes = bytes;
        }
        self.add_quota(site, group, delta, 0);
        true
    }

    fn add_quota(&mut self, site: SiteId, group: Option<u64>, bytes: isize, ops: isize) {
        let q = self.sites.entry(site).or_default();
        q.ops = q.ops.wrapping_add_signed(ops);
        q.bytes = q.bytes.wrapping_add_signed(bytes);
        let empty = q.ops == 0;
        if empty {
            self.sites.remove(&site);
        }
        if let Some(g) = group {
            let q = self.groups.entry(g).or_default();
            q.ops = q.ops.wrapping_add_signed(ops);
            q.bytes = q.bytes.wrapping_add_signed(bytes);
            if q.ops == 0 {
                self.groups.remove(&g);
            }
        }
        self.total.ops = self.total.ops.wrapping_add_signed(ops);
        self.total.bytes = self.total.bytes.wrapping_add_signed(bytes);
    }

    /// Removes the waiting op `id`; returns it with the cause it waited for.
    fn remove(&mut self, id: CharId) -> Option<(Op, CharId)> {
        let w = self.ops.remove(&id)?;
        self.arrivals.remove(&(w.arrival, id));
        if let Some(list) = self.by_cause.get_mut(&w.cause) {
            list.retain(|x| *x != id);
            if list.is_empty() {
                self.by_cause.remove(&w.cause);
            }
        }
        self.add_quota(w.op.site(), w.group, -(w.bytes as isize), -1);
        Some((w.op, w.cause))
    }

    /// Removes and returns the operations waiting for any of `site`'s `from .. to`.
    pub fn take(&mut self, site: SiteId, from: u64, to: u64) -> Vec<Op> {
        if self.by_cause.is_empty() || from >= to {
            return Vec::new();
        }
        let ids: Vec<CharId> = self
            .by_cause
            .range(
                CharId {
                    sid: site,
                    seq: from,
                }..CharId { sid: site, seq: to },
            )
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        ids.into_iter()
            .filter_map(|id| self.remove(id).map(|(op, _)| op))
            .collect()
    }

    /// Removes the oldest op if it waited longer than `max_age` at tick `now`, with what it
    /// waited for.
    pub fn expire_one(&mut self, now: u64, max_age: u64) -> Option<(Op, CharId)> {
        let &(arrival, id) = self.arrivals.first()?;
        if now.saturating_sub(arrival) <= max_age {
            return None;
        }
        self.remove(id)
    }

    /// The waiting operations, by cause.
    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        self.by_cause
            .values()
            .flatten()
            .filter_map(|id| self.ops.get(id).map(|w| &w.op))
    }

    /// How many operations of `site` wait.
    pub fn of_site(&self, site: SiteId) -> usize {
        self.sites.get(&site).map_or(0, |q| q.ops)
    }

    /// Bytes held by waiting operations (by the buffer's own measure).
    pub fn bytes(&self) -> usize {
        self.total.bytes
    }

    /// Checks the module invariants.
    pub fn check(&self) {
        let listed: usize = self.by_cause.values().map(Vec::len).sum();
        assert_eq!(
            listed,
            self.ops.len(),
            "each waiting op listed once by cause"
        );
        assert_eq!(
            self.arrivals.len(),
            self.ops.len(),
            "each waiting op has an arrival"
        );
        let mut total = Quota::default();
        let mut sites: FxHashMap<SiteId, Quota> = FxHashMap::default();
        let mut groups: FxHashMap<u64, Quota> = FxHashMap::default();
        for (id, w) in &self.ops {
            assert_eq!(w.op.id().id(), *id);
            assert!(self.by_cause[&w.cause].contains(id));
            assert!(self.arrivals.contains(&(w.arrival, *id)));
            total.ops += 1;
            total.bytes += w.bytes;
            let q = sites.entry(w.op.site()).or_default();
            q.ops += 1;
            q.bytes += w.bytes;
            if let Some(g) = w.group {
                let q = groups.entry(g).or_default();
                q.ops += 1;
                q.bytes += w.bytes;
            }
        }
        assert_eq!(total, self.total, "total quota");
        assert_eq!(sites, self.sites, "per-site quotas");
        assert_eq!(groups, self.groups, "per-group quotas");
    }
}
