//! Loads the editing traces of josephg/editing-traces (CC BY 4.0, see `../shared/traces/README.md`)
//! for tests and benchmarks.
//!
//! The data is read in place from the `shared/traces` folder beside the project and is never copied
//! into the repository. `TRACES_DIR` overrides the location. Positions in the traces count Unicode
//! scalar values, like the positions of the `rga` crate.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use serde::Deserialize;

/// One edit: at `pos`, delete `del` chars, then insert `ins` (the semantics of `Array.splice`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Patch(pub usize, pub usize, pub String);

impl Patch {
    /// Position in chars.
    pub fn pos(&self) -> usize {
        self.0
    }
    /// Number of chars deleted at `pos`.
    pub fn del(&self) -> usize {
        self.1
    }
    /// Text inserted at `pos` after the deletion.
    pub fn ins(&self) -> &str {
        &self.2
    }
}

/// A transaction of a sequential trace: patches applied one after another.
#[derive(Debug, Clone, Deserialize)]
pub struct Txn {
    /// The patches, each seeing the ones before it.
    pub patches: Vec<Patch>,
}

/// A single-user trace: apply every patch of every transaction in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SequentialTrace {
    /// Always empty in the published traces.
    pub start_content: String,
    /// The expected final text.
    pub end_content: String,
    /// The transactions in order.
    pub txns: Vec<Txn>,
}

impl SequentialTrace {
    /// Every patch of every transaction, in order.
    pub fn patches(&self) -> impl Iterator<Item = &Patch> {
        self.txns.iter().flat_map(|t| t.patches.iter())
    }

    /// Number of patches in the trace.
    pub fn patch_count(&self) -> usize {
        self.txns.iter().map(|t| t.patches.len()).sum()
    }
}

/// A transaction of a concurrent trace.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConcurrentTxn {
    /// Indexes of earlier transactions this one was made on top of (merged first).
    pub parents: Vec<usize>,
    /// Number of later transactions that name this one as a parent.
    pub num_children: usize,
    /// The agent (user) who made it; each agent's transactions are totally ordered.
    pub agent: usize,
    /// The patches, positions relative to the document at `parents` plus earlier patches.
    pub patches: Vec<Patch>,
}

/// A multi-user trace: a DAG of transactions.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConcurrentTrace {
    /// The expected final text once every transaction is merged.
    pub end_content: String,
    /// Number of agents.
    pub num_agents: usize,
    /// Transactions in an order where every parent comes first.
    pub txns: Vec<ConcurrentTxn>,
}

/// The folder holding the traces: `$TRACES_DIR`, else `shared/traces` beside the project.
pub fn traces_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TRACES_DIR") {
        return PathBuf::from(dir);
    }
    // This crate lives at <project>/shared/editing-traces; the data at <project>/../shared/traces.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/traces")
}

/// The sequential traces (`*.json.gz` directly in the traces folder), sorted by name.
pub fn sequential_trace_paths() -> io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(traces_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(".json.gz"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// The trace's name: its file name without `.json.gz`.
pub fn trace_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.trim_end_matches(".json.gz").to_owned()
}

fn read_gz(path: &Path) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    GzDecoder::new(BufReader::new(File::open(path)?)).read_to_end(&mut out)?;
    Ok(out)
}

/// Loads a sequential trace from a `.json.gz` file.
pub fn load_sequential(path: &Path) -> io::Result<SequentialTrace> {
    let bytes = read_gz(path)?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Loads a sequential trace by name (`automerge-paper`, ...) from the traces folder.
pub fn sequential(name: &str) -> io::Result<SequentialTrace> {
    load_sequential(&traces_dir().join(format!("{name}.json.gz")))
}

/// Loads a concurrent trace by name (`friendsforever`) from `concurrent/` in the traces folder.
pub fn concurrent(name: &str) -> io::Result<ConcurrentTrace> {
    let bytes = read_gz(
        &traces_dir()
            .join("concurrent")
            .join(format!("{name}.json.gz")),
    )?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Applies a patch to a plain `Vec<char>` (the reference semantics, used to check replays).
pub fn apply_patch(doc: &mut Vec<char>, patch: &Patch) {
    let end = patch.pos() + patch.del();
    doc.splice(patch.pos()..end, patch.ins().chars());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sequential_trace_replays_to_its_end_content_with_plain_splices() {
        let paths = sequential_trace_paths().expect("traces folder readable");
        assert!(
            paths.len() >= 5,
            "expected the five sequential traces, found {paths:?}"
        );
        for path in paths {
            let trace = load_sequential(&path).expect("trace parses");
            let mut doc: Vec<char> = trace.start_content.chars().collect();
            for patch in trace.patches() {
                apply_patch(&mut doc, patch);
            }
            assert_eq!(
                doc.iter().collect::<String>(),
                trace.end_content,
                "{}",
                path.display()
            );
        }
    }

    #[test]
    fn concurrent_trace_parents_precede_their_children() {
        let trace = concurrent("friendsforever").expect("concurrent trace parses");
        assert_eq!(trace.num_agents, 2);
        for (i, txn) in trace.txns.iter().enumerate() {
            assert!(
                txn.parents.iter().all(|&p| p < i),
                "txn {i} names a later parent"
            );
        }
    }
}
