//! Identifiers: site ids, S4Vectors, and the precedence order between them.
//!
//! Roh et al. ("Replicated abstract data types", JPDC 2011) identify every operation by an
//! S4Vector computed from the issuing site's vector clock `v` after incrementing `v[sid]`:
//! `ssn` is the global session number, `sid` the site, `sum` = Σ v[k] and `seq` = v[sid].
//! Precedence `a ≺ b` compares `(ssn, sum, sid)` lexicographically; `seq` is not compared, and
//! `(sid, seq)` alone identifies an operation. Because a site's sums strictly increase, the
//! precedence order is a strict total order on operations.
//!
//! A run of `n` characters typed by one site is one operation: its character `k` has the S4Vector
//! `(ssn, sum + k, sid, seq + k)`, exactly as if each character had been its own operation.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A site: one replica of the document that issues operations (an editing session).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct SiteId(pub u64);

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The identifier of an operation, and of the character an insert created: `(sid, seq)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CharId {
    /// The site that issued it.
    pub sid: SiteId,
    /// Its sequence number at that site, from 1.
    pub seq: u64,
}

impl fmt::Display for CharId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.sid, self.seq)
    }
}

/// A range of consecutive identifiers of one site: `(sid, seq..seq + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdRange {
    /// The site.
    pub sid: SiteId,
    /// The first sequence number.
    pub seq: u64,
    /// How many identifiers, at least 1.
    pub len: u64,
}

impl IdRange {
    /// The identifier of the first element.
    pub fn first(&self) -> CharId {
        CharId {
            sid: self.sid,
            seq: self.seq,
        }
    }
}

/// The S4Vector of an operation (Roh et al. 2011).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct S4Vector {
    /// Global session number.
    pub ssn: u32,
    /// Sum of the issuing site's vector clock after the operation.
    pub sum: u64,
    /// The issuing site.
    pub sid: SiteId,
    /// The issuing site's own clock entry after the operation.
    pub seq: u64,
}

impl S4Vector {
    /// `(sid, seq)`, which identifies the operation.
    pub fn id(&self) -> CharId {
        CharId {
            sid: self.sid,
            seq: self.seq,
        }
    }

    /// The precedence key `(ssn, sum, sid)`.
    pub fn precedence(&self) -> Precedence {
        Precedence {
            ssn: self.ssn,
            sum: self.sum,
            sid: self.sid,
        }
    }

    /// `self ≺ other`.
    pub fn precedes(&self, other: &S4Vector) -> bool {
        self.precedence() < other.precedence()
    }

    /// Compares by precedence only (`seq` is ignored).
    pub fn cmp_precedence(&self, other: &S4Vector) -> Ordering {
        self.precedence().cmp(&other.precedence())
    }

    /// The S4Vector of character `k` of a run that starts with `self`, or `None` on overflow.
    pub fn offset(&self, k: u64) -> Option<S4Vector> {
        Some(S4Vector {
            ssn: self.ssn,
            sum: self.sum.checked_add(k)?,
            sid: self.sid,
            seq: self.seq.checked_add(k)?,
        })
    }
}

impl fmt::Display for S4Vector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{},{},{},{}>", self.ssn, self.sum, self.sid, self.seq)
    }
}

/// The part of an S4Vector that orders operations: `(ssn, sum, sid)`, compared lexicographically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Precedence {
    /// Global session number.
    pub ssn: u32,
    /// Vector-clock sum.
    pub sum: u64,
    /// Site, the final tie-break.
    pub sid: SiteId,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An S4Vector from its fields (also for other modules' tests).
    pub(crate) fn s4(ssn: u32, sum: u64, sid: u64, seq: u64) -> S4Vector {
        S4Vector {
            ssn,
            sum,
            sid: SiteId(sid),
            seq,
        }
    }

    #[test]
    fn precedence_compares_session_then_sum_then_site_and_ignores_seq() {
        assert!(s4(1, 9, 9, 9).precedes(&s4(2, 1, 1, 1)), "ssn first");
        assert!(s4(1, 3, 9, 1).precedes(&s4(1, 4, 1, 1)), "then sum");
        assert!(s4(1, 4, 1, 7).precedes(&s4(1, 4, 2, 1)), "then sid");
        assert_eq!(
            s4(1, 4, 2, 1).cmp_precedence(&s4(1, 4, 2, 8)),
            Ordering::Equal,
            "seq ignored"
        );
        assert!(!s4(1, 4, 2, 1).precedes(&s4(1, 4, 2, 8)));
    }

    #[test]
    fn run_offsets_advance_sum_and_seq_together() {
        assert_eq!(s4(1, 10, 3, 4).offset(2), Some(s4(1, 12, 3, 6)));
        assert_eq!(s4(1, u64::MAX, 3, 4).offset(1), None);
    }
}
