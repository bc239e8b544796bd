//! Typed identifiers.

use std::fmt;
use std::str::FromStr;

use rga::SiteId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DocumentId(pub Uuid);

impl DocumentId {
    /// A fresh random id.
    pub fn new() -> Self {
        DocumentId(Uuid::new_v4())
    }
}

impl Default for DocumentId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for DocumentId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(DocumentId)
    }
}

/// A user, as named by the identity provider (the JWT `sub` claim).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub String);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One deployed stack (its API, integrate function and database): 0 ..= 8191.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReplicaId(pub u16);

impl ReplicaId {
    /// The highest replica id: the site id keeps it in bits 40..53.
    pub const MAX: u16 = (1 << 13) - 1;
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Bits of a site id below the replica id.
pub const SITE_COUNTER_BITS: u32 = 40;

/// The site id of session `counter` (from 1) of `replica`: unique across replicas without
/// coordination, and below 2^53 so that JavaScript clients read it exactly.
pub fn site_id(replica: ReplicaId, counter: u64) -> SiteId {
    SiteId(((replica.0 as u64) << SITE_COUNTER_BITS) | (counter & ((1 << SITE_COUNTER_BITS) - 1)))
}

/// The replica that allocated a site id.
pub fn replica_of(site: SiteId) -> ReplicaId {
    ReplicaId((site.0 >> SITE_COUNTER_BITS) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_ids_carry_their_replica_and_stay_below_2_pow_53() {
        let s = site_id(ReplicaId(ReplicaId::MAX), (1 << 40) - 1);
        assert!(s.0 < 1 << 53);
        assert_eq!(replica_of(s), ReplicaId(ReplicaId::MAX));
        assert_ne!(site_id(ReplicaId(1), 7), site_id(ReplicaId(2), 7));
    }
}
