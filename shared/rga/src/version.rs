//! Version vectors: for each site, the highest sequence number received from it.
//!
//! A replica applies each site's operations in sequence order (an operation waits for its site's
//! previous one), so a version vector describes exactly the set of operations received: site `s`
//! contributes `s:1 ..= s:v[s]`. Versions merge by taking the larger entry per site. In JSON a
//! version is an object `{"<site id>": <highest seq>, ...}`; absent sites count as 0.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::{CharId, SiteId};

/// A version vector (site → highest sequence number seen). Zero entries are never stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "BTreeMap<SiteId, u64>", into = "BTreeMap<SiteId, u64>")]
pub struct VersionVector(BTreeMap<SiteId, u64>);

impl From<BTreeMap<SiteId, u64>> for VersionVector {
    fn from(mut map: BTreeMap<SiteId, u64>) -> Self {
        map.retain(|_, q| *q > 0);
        VersionVector(map)
    }
}

impl From<VersionVector> for BTreeMap<SiteId, u64> {
    fn from(v: VersionVector) -> Self {
        v.0
    }
}

impl VersionVector {
    /// The empty version (nothing received).
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest sequence number of `site` (0 when none).
    pub fn get(&self, site: SiteId) -> u64 {
        self.0.get(&site).copied().unwrap_or(0)
    }

    /// Sets the entry of `site`; 0 removes it.
    pub fn set(&mut self, site: SiteId, seq: u64) {
        if seq == 0 {
            self.0.remove(&site);
        } else {
            self.0.insert(site, seq);
        }
    }

    /// Whether the operation `id` is included.
    pub fn contains(&self, id: CharId) -> bool {
        id.seq >= 1 && id.seq <= self.get(id.sid)
    }

    /// Whether every operation of `other` is included in `self`.
    pub fn includes(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(&site, &seq)| self.get(site) >= seq)
    }

    /// Takes the larger entry per site.
    pub fn merge(&mut self, other: &VersionVector) {
        for (&site, &seq) in &other.0 {
            if seq > self.get(site) {
                self.0.insert(site, seq);
            }
        }
    }

    /// The entries, by site.
    pub fn iter(&self) -> impl Iterator<Item = (SiteId, u64)> + '_ {
        self.0.iter().map(|(&s, &q)| (s, q))
    }

    /// Number of sites with a non-zero entry.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is included.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Σ v[k]: the number of operations included.
    pub fn total(&self) -> u64 {
        self.0.values().fold(0u64, |a, &b| a.saturating_add(b))
    }
}

impl FromIterator<(SiteId, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (SiteId, u64)>>(iter: I) -> Self {
        let mut v = VersionVector::new();
        for (site, seq) in iter {
            if seq > v.get(site) {
                v.set(site, seq);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_is_an_object_keyed_by_site_id() {
        let v: VersionVector = [(SiteId(7), 3), (SiteId(1099511627776), 12)]
            .into_iter()
            .collect();
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, r#"{"7":3,"1099511627776":12}"#);
        let back: VersionVector = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn merge_takes_the_larger_entry_and_includes_checks_every_site() {
        let mut a: VersionVector = [(SiteId(1), 3), (SiteId(2), 1)].into_iter().collect();
        let b: VersionVector = [(SiteId(2), 5), (SiteId(3), 1)].into_iter().collect();
        assert!(!a.includes(&b));
        a.merge(&b);
        assert_eq!(a.get(SiteId(1)), 3);
        assert_eq!(a.get(SiteId(2)), 5);
        assert!(a.includes(&b));
        assert_eq!(a.total(), 9);
        assert!(a.contains(CharId {
            sid: SiteId(3),
            seq: 1
        }));
        assert!(!a.contains(CharId {
            sid: SiteId(3),
            seq: 2
        }));
    }
}
