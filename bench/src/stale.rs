//! The `stale` case of `bench traces`: what an index-based edit against a past version costs,
//! next to the same edit against the current one. A server gets such edits from every client
//! whose last acknowledgement is behind (its base): `Rga::splice` with a base resolves indexes in
//! the text as it was, from the operations outside the base.
//!
//! On the final document of [`TRACE`] (replayed as site 1's local edits), site 2 makes
//! [`SPLICES`] splices (a one-char delete and a two-char insert at a random place), each against
//! the version [`BEHIND`] of site 1's operations before the current one; then, on a fresh copy,
//! the very same splices against the current version. Both are timed in this process, in this
//! run, and the ratio reported.

use std::time::Instant;

use anyhow::{Result, ensure};
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use rga::{Rga, SiteId, Splice, VersionVector};
use serde::Serialize;

use crate::impls::Trace;

/// The trace whose final document the splices edit.
pub const TRACE: &str = "automerge-paper";
/// Splices per run.
pub const SPLICES: usize = 1000;
/// How many of site 1's operations each base lacks.
pub const BEHIND: u64 = 100;

/// The medians of both variants.
#[derive(Debug, Serialize)]
pub struct Report {
    case: &'static str,
    splices: usize,
    behind: u64,
    stale_ms: f64,
    current_ms: f64,
    ratio: f64,
}

impl Report {
    /// Prints the table.
    pub fn print(&self) {
        println!(
            "\nstale: {} splices on {TRACE}'s final document, each against a base {} ops behind, \
             beside the same splices against the current version",
            self.splices, self.behind
        );
        println!("{:<24} {:>10} {:>8}", "case", "ms", "×current");
        println!(
            "{:<24} {:>10.2} {:>8.2}",
            "stale base", self.stale_ms, self.ratio
        );
        println!(
            "{:<24} {:>10.2} {:>8.2}",
            "current version", self.current_ms, 1.0
        );
    }
}

fn replay(trace: &Trace) -> Result<Rga> {
    let mut doc = Rga::new();
    for e in trace.edits() {
        if e.del > 0 {
            doc.delete(SiteId(1), e.pos, e.del)?;
        }
        if !e.ins.is_empty() {
            doc.insert(SiteId(1), e.pos, &e.ins)?;
        }
    }
    Ok(doc)
}

/// Runs both variants `runs` times; the medians.
pub fn run(trace: &Trace, runs: u16) -> Result<Report> {
    let doc = replay(trace)?;
    let head = doc.version().get(SiteId(1));
    ensure!(head > BEHIND, "the trace is too short");
    let mut base = VersionVector::new();
    base.set(SiteId(1), head - BEHIND);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let len = doc.len();
    let splices: Vec<Splice> = (0..SPLICES)
        .map(|_| Splice {
            index: rng.random_range(0..len - 2 * SPLICES),
            delete: 1,
            insert: "ab".into(),
        })
        .collect();
    let mut stale = Vec::new();
    let mut current = Vec::new();
    for _ in 0..runs {
        for (with_base, times) in [(true, &mut stale), (false, &mut current)] {
            let mut d = doc.clone();
            let start = Instant::now();
            for s in &splices {
                let b = with_base.then_some(&base);
                d.splice(SiteId(2), b, std::slice::from_ref(s))?;
            }
            times.push(start.elapsed().as_secs_f64() * 1e3);
            ensure!(d.len() == len + SPLICES, "every splice applied");
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (stale_ms, current_ms) = (median(&mut stale), median(&mut current));
    Ok(Report {
        case: "stale",
        splices: SPLICES,
        behind: BEHIND,
        stale_ms,
        current_ms,
        ratio: stale_ms / current_ms,
    })
}
