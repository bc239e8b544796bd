//! The operation log kept by a replica: insert runs (with their text), deletes and updates, each
//! site's operations in sequence order, and catch-up (`ops_since`).
//!
//! Every inserted character has a local version `lv`: its index in `Rga::content`, assigned in
//! arrival order. Insert runs cover consecutive lvs and are stored in lv order, so the run of an
//! lv is found by binary search. Each site's entries cover its sequence numbers `1..next_seq`
//! without gaps, because a replica applies a site's operations in order.

use crate::id::{CharId, IdRange, Precedence, S4Vector, SiteId};
use crate::op::Op;
use crate::replica::Rga;
use crate::tree::NONE;
use crate::version::VersionVector;

/// A run of characters inserted by one operation (or by consecutive operations that continue it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InsertRun {
    pub ssn: u32,
    pub agent: u32,
    pub sum: u64,
    pub seq: u64,
    pub lv: u32,
    pub len: u32,
    /// The lv of the character the run was inserted after, or `NONE` for the head.
    pub parent: u32,
    /// Position in this replica's application order.
    pub order: u32,
}

/// A contiguous range of lvs within one insert run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LvRange {
    pub start: u32,
    pub len: u32,
}

impl LvRange {
    pub fn end(self) -> u32 {
        self.start + self.len
    }
}

/// A delete, or a run of one-char deletes by one site with consecutive sequence numbers and
/// sums whose targets are adjacent (backspacing or forward-deleting): delete `k` of a run has
/// S4Vector `(ssn, sum + k, sid, seq + k)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeleteRec {
    pub ssn: u32,
    pub agent: u32,
    pub sum: u64,
    pub seq: u64,
    pub order: u32,
    pub targets: DelTargets,
}

/// The targets of a [`DeleteRec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DelTargets {
    /// One delete: targets `Rga::del_targets[first .. first + count]`.
    List { first: u32, count: u32 },
    /// `n` deletes; delete `k` targets the char `start - k` (backwards) or `start + k`.
    Run { start: u32, n: u32, backwards: bool },
}

impl DeleteRec {
    /// How many deletes the record holds.
    pub fn ops(&self) -> u32 {
        match self.targets {
            DelTargets::List { .. } => 1,
            DelTargets::Run { n, .. } => n,
        }
    }
}

/// The targets of one delete: a slice of `del_targets` or the single char of a run's delete.
pub(crate) enum Targets<'a> {
    Slice(&'a [LvRange]),
    One([LvRange; 1]),
}

impl Targets<'_> {
    pub fn as_slice(&self) -> &[LvRange] {
        match self {
            Targets::Slice(s) => s,
            Targets::One(a) => a,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UpdateRec {
    pub ssn: u32,
    pub agent: u32,
    pub sum: u64,
    pub seq: u64,
    pub target: u32,
    pub value: char,
    pub order: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Insert(u32),
    Delete(u32),
    Update(u32),
}

/// Operations `seq .. seq + len` of a site, all from one log record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub seq: u64,
    pub len: u32,
    pub kind: Kind,
}

impl Entry {
    pub fn end(&self) -> u64 {
        self.seq + self.len as u64
    }
}

/// A site known to the replica.
#[derive(Clone, Debug)]
pub(crate) struct Agent {
    pub sid: SiteId,
    /// The next sequence number expected from this site.
    pub next_seq: u64,
    /// Precedence of the site's latest operation (its last character for a run).
    pub last: Option<(u32, u64)>,
    pub entries: Vec<Entry>,
}

impl Rga {
    pub(crate) fn agent_of(&self, site: SiteId) -> Option<u32> {
        if let Some((s, a)) = self.last_agent
            && s == site
        {
            return Some(a);
        }
        self.sites.get(&site).copied()
    }

    pub(crate) fn agent_or_new(&mut self, site: SiteId) -> u32 {
        if let Some((s, a)) = self.last_agent
            && s == site
        {
            return a;
        }
        if let Some(&a) = self.sites.get(&site) {
            self.last_agent = Some((site, a));
            return a;
        }
        let a = self.agents.len() as u32;
        self.agents.push(Agent {
            sid: site,
            next_seq: 1,
            last: None,
            entries: Vec::new(),
        });
        self.sites.insert(site, a);
        self.last_agent = Some((site, a));
        a
    }

    /// The next sequence number this replica expects from `site`.
    pub fn next_seq(&self, site: SiteId) -> u64 {
        self.agent_of(site)
            .map_or(1, |a| self.agents[a as usize].next_seq)
    }

    /// Whether the operation `id` has been applied.
    pub fn contains(&self, id: CharId) -> bool {
        id.seq >= 1 && id.seq < self.next_seq(id.sid)
    }

    /// The log entry holding operation `seq` of `agent`, and the offset of `seq` in it.
    pub(crate) fn entry_at(&self, agent: u32, seq: u64) -> Option<(Entry, u64)> {
        let entries = &self.agents[agent as usize].entries;
        let i = entries.partition_point(|e| e.end() <= seq);
        entries
            .get(i)
            .filter(|e| e.seq <= seq)
            .map(|e| (*e, seq - e.seq))
    }

    /// The lv of the character `id`: `Ok(None)` if not received yet, `Err(())` if `id` is an
    /// operation that is not an insert.
    pub(crate) fn char_lv(&self, id: CharId) -> Result<Option<u32>, ()> {
        let Some(agent) = self.agent_of(id.sid) else {
            return Ok(None);
        };
        match self.entry_at(agent, id.seq) {
            None => Ok(None),
            Some((
                Entry {
                    kind: Kind::Insert(r),
                    ..
                },
                off,
            )) => Ok(Some(self.runs[r as usize].lv + off as u32)),
            Some(_) => Err(()),
        }
    }

    /// The insert run holding `lv`.
    #[inline]
    pub(crate) fn run_of(&self, lv: u32) -> u32 {
        (self.runs.partition_point(|r| r.lv + r.len <= lv)) as u32
    }

    /// The S4Vector of the character at `lv` of run `run`.
    #[inline]
    pub(crate) fn char_s4(&self, run: u32, lv: u32) -> S4Vector {
        let r = &self.runs[run as usize];
        let k = (lv - r.lv) as u64;
        S4Vector {
            ssn: r.ssn,
            sum: r.sum + k,
            sid: self.agents[r.agent as usize].sid,
            seq: r.seq + k,
        }
    }

    /// The precedence of the character at `lv` of run `run`.
    #[inline]
    pub(crate) fn char_prec(&self, run: u32, lv: u32) -> Precedence {
        let r = &self.runs[run as usize];
        Precedence {
            ssn: r.ssn,
            sum: r.sum + (lv - r.lv) as u64,
            sid: self.agents[r.agent as usize].sid,
        }
    }

    /// The lv the character at `lv` was inserted after (`NONE` for the head).
    pub(crate) fn parent_of(&self, run: u32, lv: u32) -> u32 {
        let r = &self.runs[run as usize];
        if lv == r.lv { r.parent } else { lv - 1 }
    }

    /// The S4Vector of operation `seq` of `agent` (which must have been applied).
    pub(crate) fn op_s4(&self, agent: u32, seq: u64) -> Option<S4Vector> {
        let (e, off) = self.entry_at(agent, seq)?;
        let sid = self.agents[agent as usize].sid;
        Some(match e.kind {
            Kind::Insert(r) => {
                let r = &self.runs[r as usize];
                S4Vector {
                    ssn: r.ssn,
                    sum: r.sum + off,
                    sid,
                    seq,
                }
            }
            Kind::Delete(d) => {
                let d = &self.deletes[d as usize];
                S4Vector {
                    ssn: d.ssn,
                    sum: d.sum + off,
                    sid,
                    seq,
                }
            }
            Kind::Update(u) => {
                let u = &self.updates[u as usize];
                S4Vector {
                    ssn: u.ssn,
                    sum: u.sum,
                    sid,
                    seq,
                }
            }
        })
    }

    /// The version vector: every site's highest applied sequence number.
    pub fn version(&self) -> VersionVector {
        self.agents
            .iter()
            .map(|a| (a.sid, a.next_seq - 1))
            .collect()
    }

    /// Whether every operation of `version` has been applied here.
    pub fn has_received(&self, version: &VersionVector) -> bool {
        version.iter().all(|(site, seq)| seq < self.next_seq(site))
    }

    /// Converts an lv range (within one run) to the identifiers of its characters.
    pub(crate) fn lv_range_ids(&self, r: LvRange) -> IdRange {
        let run = self.run_of(r.start);
        let s4 = self.char_s4(run, r.start);
        IdRange {
            sid: s4.sid,
            seq: s4.seq,
            len: r.len as u64,
        }
    }

    /// The operation of log entry `kind`, from its offset `off` on (a suffix of an insert run).
    pub(crate) fn op_of(&self, kind: Kind, off: u64) -> Op {
        match kind {
            Kind::Insert(r) => {
                let run = &self.runs[r as usize];
                let off32 = off as u32;
                let lv = run.lv + off32;
                let after = if off == 0 {
                    (run.parent != NONE).then(|| self.char_s4(self.run_of(run.parent), run.parent))
                } else {
                    Some(self.char_s4(r, lv - 1))
                };
                let text = self.content[lv as usize..(run.lv + run.len) as usize]
                    .iter()
                    .collect();
                Op::Insert {
                    id: self.char_s4(r, lv),
                    after,
                    text,
                }
            }
            Kind::Delete(d) => {
                let d = &self.deletes[d as usize];
                let targets = self
                    .delete_targets(d, off as u32)
                    .as_slice()
                    .iter()
                    .map(|&t| self.lv_range_ids(t))
                    .collect();
                let sid = self.agents[d.agent as usize].sid;
                Op::Delete {
                    id: S4Vector {
                        ssn: d.ssn,
                        sum: d.sum + off,
                        sid,
                        seq: d.seq + off,
                    },
                    targets,
                }
            }
            Kind::Update(u) => {
                let u = &self.updates[u as usize];
                let sid = self.agents[u.agent as usize].sid;
                let target = self.char_s4(self.run_of(u.target), u.target).id();
                Op::Update {
                    id: S4Vector {
                        ssn: u.ssn,
                        sum: u.sum,
                        sid,
                        seq: u.seq,
                    },
                    target,
                    value: u.value,
                }
            }
        }
    }

    /// The targets of delete `k` of record `d`.
    pub(crate) fn delete_targets(&self, d: &DeleteRec, k: u32) -> Targets<'_> {
        match d.targets {
            DelTargets::List { first, count } => {
                Targets::Slice(&self.del_targets[first as usize..(first + count) as usize])
            }
            DelTargets::Run {
                start, backwards, ..
            } => {
                let lv = if backwards { start - k } else { start + k };
                Targets::One([LvRange { start: lv, len: 1 }])
            }
        }
    }

    /// Appends the operations of log entry `kind` from offset `off` on (each delete of a delete
    /// run is an operation of its own).
    fn push_ops(&self, kind: Kind, off: u64, out: &mut Vec<Op>) {
        match kind {
            Kind::Delete(d) => {
                for k in off..self.deletes[d as usize].ops() as u64 {
                    out.push(self.op_of(kind, k));
                }
            }
            _ => out.push(self.op_of(kind, off)),
        }
    }

    pub(crate) fn order_of(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Insert(r) => self.runs[r as usize].order,
            Kind::Delete(d) => self.deletes[d as usize].order,
            Kind::Update(u) => self.updates[u as usize].order,
        }
    }

    /// Every applied operation that `version` lacks, in an order in which they can be applied
    /// (causes first), run-length merged. `ops_since(&VersionVector::new())` is the whole log.
    pub fn ops_since(&self, version: &VersionVector) -> Vec<Op> {
        let mut picks: Vec<(u32, Kind, u64)> = Vec::new();
        for agent in &self.agents {
            let from = version.get(agent.sid) + 1;
            if from >= agent.next_seq {
                continue;
            }
            let i = agent.entries.partition_point(|e| e.end() <= from);
            for e in &agent.entries[i..] {
                picks.push((self.order_of(e.kind), e.kind, from.saturating_sub(e.seq)));
            }
        }
        picks.sort_unstable_by_key(|p| p.0);
        let mut out = Vec::with_capacity(picks.len());
        for (_, kind, off) in picks {
            self.push_ops(kind, off, &mut out);
        }
        out
    }

    /// The operations of `site` from sequence number `from` on.
    pub fn ops_of_site_since(&self, site: SiteId, from: u64) -> Vec<Op> {
        let Some(agent) = self.agent_of(site) else {
            return Vec::new();
        };
        let entries = &self.agents[agent as usize].entries;
        let i = entries.partition_point(|e| e.end() <= from);
        let mut out = Vec::new();
        for e in &entries[i..] {
            self.push_ops(e.kind, from.saturating_sub(e.seq), &mut out);
        }
        out
    }

    /// `max(Σ v, highest sum of any operation in v) + 1`: the sum of an operation issued with
    /// exactly `v` as its causal past. For a causally closed `v` this is the paper's `Σ v + 1`;
    /// the max makes it exceed every operation in `v` even if `v` is not closed.
    pub(crate) fn sum_for(&self, v: &VersionVector) -> u64 {
        let mut max = v.total();
        for (site, seq) in v.iter() {
            if let Some(a) = self.agent_of(site)
                && let Some(s4) = self.op_s4(a, seq.min(self.agents[a as usize].next_seq - 1))
            {
                max = max.max(s4.sum);
            }
        }
        max.saturating_add(1)
    }
}
