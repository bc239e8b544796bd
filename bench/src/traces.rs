//! The `traces` benchmark: replays the sequential editing traces in every implementation of
//! [`crate::impls::ALL`], all in this process and run, and reports per (trace, implementation,
//! phase) the median time, the heap growth and, for `encode`, the encoded size; times are also
//! given as ratios to `rga`'s same phase, the number the benchmark is for (see STYLE.md).
//!
//! Phases, each run `--runs` times: `local` (replay the edits as local edits on an empty document),
//! `remote` (apply what the local replay ships to peers, produced outside the timer, to a fresh
//! replica), `encode` (snapshot a local result) and `decode` (load that snapshot into a replica).
//! They are measured in the order local, encode, remote, decode, so that every encode run gets a
//! document fresh from a local run. Only the phase itself is timed: inputs are made, and results
//! dropped, outside the clock. The results of `local`, `remote` and `decode` are checked against
//! the trace's `endContent`; any mismatch or error is reported after the tables and makes the
//! command fail.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::alloc::PeakWatch;
use crate::impls::{ALL, Content, Entry, Subject, Trace};

/// Options of `bench traces`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object per line per (trace, impl, phase) instead of tables.
    #[arg(long)]
    json: bool,
    /// A sequential trace (`.json.gz`) to replay; repeatable [default: every `*.json.gz` directly
    /// in the traces folder].
    #[arg(long = "trace", value_name = "PATH")]
    traces: Vec<PathBuf>,
    /// Only this implementation (repeatable) [default: all of them].
    #[arg(long = "impl", value_name = "NAME")]
    impls: Vec<String>,
    /// Rounds: each runs every implementation once, in turn; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    runs: u16,
}

/// Runs the benchmark; `Ok(false)` when some result did not match its trace's `endContent`.
pub fn run(args: &Args) -> Result<bool> {
    let started = Instant::now();
    warm_up_allocator();
    let paths = trace_paths(args)?;
    let selected = selected_impls(args)?;
    let mut problems = Vec::new();
    for path in &paths {
        let raw = editing_traces::load_sequential(path)
            .with_context(|| format!("loading {}", path.display()))?;
        let trace = Trace::new(editing_traces::trace_name(path), raw)?;
        let rows = interleaved(&trace, &selected, usize::from(args.runs));
        for row in &rows {
            problems.extend(
                row.problems
                    .iter()
                    .map(|p| format!("{} / {}: {p}", trace.name, row.name)),
            );
        }
        if args.json {
            print_json(&trace, &rows)?;
        } else {
            print_table(&trace, &rows, args.runs);
        }
    }
    if selected.iter().any(|e| e.name == BASELINE)
        && let Some(path) = paths
            .iter()
            .find(|p| editing_traces::trace_name(p) == crate::stale::TRACE)
    {
        let raw = editing_traces::load_sequential(path)
            .with_context(|| format!("loading {}", path.display()))?;
        let report = crate::stale::run(&Trace::new(crate::stale::TRACE.into(), raw)?, args.runs)?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            report.print();
        }
    }
    for problem in &problems {
        eprintln!("FAILED {problem}");
    }
    eprintln!(
        "{} traces in {:.1} s",
        paths.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(problems.is_empty())
}

/// Runs of one implementation in a row within a round: the median of three is a warm run (the
/// first of a phase pays cold caches and fresh pages, far more on some libraries than others).
const RUNS_PER_ROUND: usize = 3;

/// Measures every implementation in `runs` rounds, each running every implementation in turn
/// (three runs each), so that the machine's speed drifting during the benchmark (tens of percent
/// on a shared virtual machine) weighs on every implementation alike and the ratios stay fair.
/// Each cell is the median over the rounds of each round's median.
fn interleaved(trace: &Trace, selected: &[&'static Entry], runs: usize) -> Vec<Measured> {
    let mut rounds: Vec<Vec<Measured>> = selected.iter().map(|_| Vec::new()).collect();
    for round in 0..runs.max(1) {
        for (i, entry) in selected.iter().enumerate() {
            if round == 0 {
                eprintln!("{}: {}...", trace.name, entry.name);
            }
            rounds[i].push((entry.measure)(trace, RUNS_PER_ROUND));
        }
    }
    rounds.into_iter().map(Measured::combine).collect()
}

fn trace_paths(args: &Args) -> Result<Vec<PathBuf>> {
    if !args.traces.is_empty() {
        return Ok(args.traces.clone());
    }
    let dir = editing_traces::traces_dir();
    let paths = editing_traces::sequential_trace_paths()
        .with_context(|| format!("listing the traces in {}", dir.display()))?;
    anyhow::ensure!(
        !paths.is_empty(),
        "no *.json.gz traces in {}",
        dir.display()
    );
    Ok(paths)
}

fn selected_impls(args: &Args) -> Result<Vec<&'static Entry>> {
    if let Some(unknown) = args
        .impls
        .iter()
        .find(|name| !ALL.iter().any(|e| e.name == name.as_str()))
    {
        let known: Vec<&str> = ALL.iter().map(|e| e.name).collect();
        anyhow::bail!(
            "unknown implementation {unknown:?}; known: {}",
            known.join(", ")
        );
    }
    Ok(ALL
        .iter()
        .filter(|e| args.impls.is_empty() || args.impls.iter().any(|name| name == e.name))
        .collect())
}

/// A phase of the benchmark, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Local,
    Remote,
    Encode,
    Decode,
}

impl Phase {
    const ALL: [Phase; 4] = [Phase::Local, Phase::Remote, Phase::Encode, Phase::Decode];

    fn name(self) -> &'static str {
        match self {
            Phase::Local => "local",
            Phase::Remote => "remote",
            Phase::Encode => "encode",
            Phase::Decode => "decode",
        }
    }
}

/// One (trace, implementation, phase) result.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    /// The implementation has no such phase (`rope` has no remote).
    Absent,
    /// Not measured: the phase, or one it depends on, returned an error.
    Failed,
    /// Measured.
    Done(Timing),
}

/// The measurements of one phase.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Timing {
    /// Median over the runs.
    median: Duration,
    /// The largest heap growth above the cell's starting level over the runs.
    peak_heap_bytes: usize,
    /// What the result kept on the heap when the phase ended (the last run's); for `decode`, the
    /// size of a loaded replica.
    retained_heap_bytes: usize,
    /// The encoded size, for `encode`.
    bytes: Option<usize>,
    /// The result did not match `endContent`.
    mismatch: bool,
}

/// One implementation's results on one trace.
#[derive(Debug)]
pub struct Measured {
    /// The implementation's name.
    pub name: &'static str,
    cells: [Cell; 4],
    /// Mismatches and errors, each naming its phase.
    pub problems: Vec<String>,
}

impl Measured {
    /// One row from the same implementation's rounds: medians of the times, the largest peaks,
    /// the last round's retained heap and size, every problem once.
    fn combine(rounds: Vec<Measured>) -> Measured {
        let name = rounds.first().map_or("", |r| r.name);
        let mut out = Measured {
            name,
            cells: [Cell::Failed; 4],
            problems: Vec::new(),
        };
        for phase in Phase::ALL {
            let done: Vec<Timing> = rounds
                .iter()
                .filter_map(|r| match r.cell(phase) {
                    Cell::Done(t) => Some(t),
                    _ => None,
                })
                .collect();
            let cell = if rounds.iter().any(|r| r.cell(phase) == Cell::Absent) {
                Cell::Absent
            } else if done.len() < rounds.len() || done.is_empty() {
                Cell::Failed
            } else {
                let mut times: Vec<Duration> = done.iter().map(|t| t.median).collect();
                let last = done[done.len() - 1];
                Cell::Done(Timing {
                    median: median(&mut times),
                    peak_heap_bytes: done.iter().map(|t| t.peak_heap_bytes).max().unwrap_or(0),
                    mismatch: done.iter().any(|t| t.mismatch),
                    ..last
                })
            };
            out.set(phase, cell);
        }
        for r in rounds {
            for p in r.problems {
                if !out.problems.contains(&p) {
                    out.problems.push(p);
                }
            }
        }
        out
    }

    fn cell(&self, phase: Phase) -> Cell {
        self.cells[phase as usize]
    }

    fn set(&mut self, phase: Phase, cell: Cell) {
        self.cells[phase as usize] = cell;
    }

    /// Compares a phase's result with the trace's `endContent`.
    fn check<S: Subject>(&mut self, trace: &Trace, phase: Phase, doc: &S::Doc) {
        let problem = match S::content(doc) {
            Ok(Content::Text(text)) => describe_difference(&text, &trace.end_content),
            Ok(Content::Len(len)) => (len != trace.end_chars)
                .then(|| format!("length is {len} chars, endContent has {}", trace.end_chars)),
            Err(e) => Some(format!("cannot read the result: {e:#}")),
        };
        if let Some(problem) = problem {
            self.problems.push(format!("{}: {problem}", phase.name()));
            if let Cell::Done(timing) = &mut self.cells[phase as usize] {
                timing.mismatch = true;
            }
        }
    }
}

/// Where `got` first differs from `want`, or `None` when they are equal.
fn describe_difference(got: &str, want: &str) -> Option<String> {
    if got == want {
        return None;
    }
    let at = got
        .chars()
        .zip(want.chars())
        .take_while(|(g, w)| g == w)
        .count();
    let excerpt = |s: &str| s.chars().skip(at).take(20).collect::<String>();
    Some(format!(
        "text differs from endContent at char {at} (lengths {} and {} chars): {:?} instead of {:?}",
        got.chars().count(),
        want.chars().count(),
        excerpt(got),
        excerpt(want),
    ))
}

/// Measures every phase of `S` on `trace`, `runs` times each (the runner calls it once per round,
/// see [`interleaved`]).
pub fn measure<S: Subject>(trace: &Trace, runs: usize) -> Measured {
    let mut measured = Measured {
        name: S::NAME,
        cells: [Cell::Failed; 4],
        problems: Vec::new(),
    };
    if let Err(e) = measure_phases::<S>(trace, runs, &mut measured) {
        measured.problems.push(format!("{e:#}"));
    }
    measured
}

fn measure_phases<S: Subject>(trace: &Trace, runs: usize, out: &mut Measured) -> Result<()> {
    let (timing, docs) =
        time_runs(runs, Keep::All, || (), |()| S::local(trace)).context("local")?;
    out.set(Phase::Local, Cell::Done(timing));
    let last = docs.last().context("no local run")?;
    out.check::<S>(trace, Phase::Local, last);

    // Each encode run gets a document no earlier run encoded: some libraries cache their encoded
    // form (Loro keeps the blocks its first export encodes), which would time a warm cache.
    let mut pristine = docs.into_iter();
    let encode = |doc: Option<S::Doc>| {
        let mut doc = doc.context("fewer documents than runs")?;
        Ok((S::encode(&mut doc)?, doc))
    };
    let (mut timing, mut encoded) =
        time_runs(runs, Keep::All, || pristine.next(), encode).context("encode")?;
    let (encoded, mut doc) = encoded.pop().context("no encode run")?;
    timing.bytes = Some(encoded.as_ref().len());
    out.set(Phase::Encode, Cell::Done(timing));

    match S::updates(trace, &mut doc).context("remote: producing the updates")? {
        Some(updates) => {
            drop(doc);
            let (timing, remote) =
                time_runs(runs, Keep::Last, || updates.clone(), S::remote).context("remote")?;
            out.set(Phase::Remote, Cell::Done(timing));
            out.check::<S>(
                trace,
                Phase::Remote,
                remote.last().context("no remote run")?,
            );
        }
        None => out.set(Phase::Remote, Cell::Absent),
    }

    let (timing, decoded) =
        time_runs(runs, Keep::Last, || (), |()| S::decode(encoded.as_ref())).context("decode")?;
    out.set(Phase::Decode, Cell::Done(timing));
    out.check::<S>(
        trace,
        Phase::Decode,
        decoded.last().context("no decode run")?,
    );
    Ok(())
}

/// Brings the allocator to its steady state before anything is timed. glibc serves large blocks
/// with `mmap` until the first such block is freed, then raises its threshold and keeps freed
/// memory for reuse; without this the first implementation measured would pay page faults that
/// the later ones do not.
fn warm_up_allocator() {
    for mb in [1usize, 4, 16, 32] {
        let block = vec![1u8; mb << 20];
        std::hint::black_box(&block);
    }
}

/// Which results [`time_runs`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Every run's, in order.
    All,
    /// The last run's; each earlier one is dropped before the next run starts.
    Last,
}

/// Runs `phase` on a fresh `input()` `runs` times, timing only `phase`. Each run's input is made,
/// and with [`Keep::Last`] the previous result dropped, before the clock and the heap watch start.
fn time_runs<I, T>(
    runs: usize,
    keep: Keep,
    mut input: impl FnMut() -> I,
    mut phase: impl FnMut(I) -> Result<T>,
) -> Result<(Timing, Vec<T>)> {
    let mut times = Vec::with_capacity(runs);
    let mut peak_heap_bytes = 0;
    let mut retained_heap_bytes = 0;
    let mut results = Vec::with_capacity(runs);
    for _ in 0..runs {
        if keep == Keep::Last {
            results.clear();
        }
        let input = input();
        let heap = PeakWatch::start();
        let clock = Instant::now();
        let result = phase(input)?;
        times.push(clock.elapsed());
        peak_heap_bytes = peak_heap_bytes.max(heap.growth());
        retained_heap_bytes = heap.retained();
        results.push(result);
    }
    let timing = Timing {
        median: median(&mut times),
        peak_heap_bytes,
        retained_heap_bytes,
        bytes: None,
        mismatch: false,
    };
    Ok((timing, results))
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    let mid = times.len() / 2;
    if times.len() % 2 == 1 {
        times[mid]
    } else {
        (times[mid - 1] + times[mid]) / 2
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

#[derive(Serialize)]
struct JsonCell<'a> {
    trace: &'a str,
    #[serde(rename = "impl")]
    implementation: &'a str,
    phase: &'a str,
    median_ms: f64,
    bytes: Option<usize>,
    peak_heap_bytes: usize,
    retained_heap_bytes: usize,
}

fn print_json(trace: &Trace, rows: &[Measured]) -> Result<()> {
    for row in rows {
        for phase in Phase::ALL {
            if let Cell::Done(timing) = row.cell(phase) {
                let cell = JsonCell {
                    trace: &trace.name,
                    implementation: row.name,
                    phase: phase.name(),
                    median_ms: (ms(timing.median) * 1e3).round() / 1e3,
                    bytes: timing.bytes,
                    peak_heap_bytes: timing.peak_heap_bytes,
                    retained_heap_bytes: timing.retained_heap_bytes,
                };
                println!("{}", serde_json::to_string(&cell)?);
            }
        }
    }
    Ok(())
}

/// The name of the baseline the ratio columns divide by.
const BASELINE: &str = "rga";

fn print_table(trace: &Trace, rows: &[Measured], runs: u16) {
    println!(
        "\n{}: {} edits in {} txns, {} chars at the end; median of {runs} runs, peak = heap growth, \
         heap = what the decoded replica keeps (and per char of the final text)",
        trace.name,
        trace.edits().len(),
        trace.txn_count(),
        trace.end_chars,
    );
    let mut header = format!("{:<14}", "impl");
    for phase in Phase::ALL {
        header += &format!(
            " {:>10} {:>6} {:>9}",
            format!("{} ms", phase.name()),
            "×rga",
            "peak"
        );
        if phase == Phase::Encode {
            header += &format!(" {:>9}", "bytes");
        }
    }
    header += &format!(" {:>9} {:>6}", "heap", "B/char");
    println!("{header}");
    let baseline = rows.iter().find(|row| row.name == BASELINE);
    for row in rows {
        let mut line = format!("{:<14}", row.name);
        for phase in Phase::ALL {
            let base = baseline.and_then(|b| match b.cell(phase) {
                Cell::Done(timing) => Some(timing.median),
                Cell::Absent | Cell::Failed => None,
            });
            line += &match row.cell(phase) {
                Cell::Done(t) => format!(
                    " {:>10} {:>6} {:>9}",
                    format!("{:.2}{}", ms(t.median), if t.mismatch { "!" } else { "" }),
                    base.map_or("-".to_owned(), |base| format!(
                        "{:.2}",
                        ratio(t.median, base)
                    )),
                    human_bytes(t.peak_heap_bytes),
                ),
                Cell::Absent => format!(" {:>10} {:>6} {:>9}", "n/a", "-", "-"),
                Cell::Failed => format!(" {:>10} {:>6} {:>9}", "FAILED", "-", "-"),
            };
            if phase == Phase::Encode {
                let bytes = match row.cell(phase) {
                    Cell::Done(Timing {
                        bytes: Some(bytes), ..
                    }) => bytes.to_string(),
                    _ => "-".to_owned(),
                };
                line += &format!(" {bytes:>9}");
            }
        }
        line += &match row.cell(Phase::Decode) {
            Cell::Done(t) => format!(
                " {:>9} {:>6.1}",
                human_bytes(t.retained_heap_bytes),
                t.retained_heap_bytes as f64 / trace.end_chars.max(1) as f64
            ),
            _ => format!(" {:>9} {:>6}", "-", "-"),
        };
        println!("{line}");
    }
    if rows.iter().any(|row| !row.problems.is_empty()) {
        println!("(! = result differs from endContent; see the FAILED lines at the end)");
    }
}

fn ratio(time: Duration, base: Duration) -> f64 {
    time.as_secs_f64() / base.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn human_bytes(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_runs_is_the_middle_one_and_of_even_runs_the_mean_of_the_middle_two() {
        let d = Duration::from_millis;
        assert_eq!(median(&mut [d(9), d(1), d(5)]), d(5));
        assert_eq!(median(&mut [d(9), d(1), d(5), d(3)]), d(4));
    }

    #[test]
    fn difference_names_the_first_differing_char() {
        assert_eq!(describe_difference("abc", "abc"), None);
        let message = describe_difference("héllo", "hélp").expect("differs");
        assert!(message.contains("at char 3"), "{message}");
        assert!(message.contains("\"lo\" instead of \"p\""), "{message}");
    }

    #[test]
    fn human_bytes_switches_units_at_1024() {
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
    }

    #[test]
    fn time_runs_gives_each_run_its_own_input_and_keeps_what_it_is_told() {
        let mut made = 0;
        let mut next = || {
            made += 1;
            made
        };
        let (timing, all) =
            time_runs(3, Keep::All, &mut next, |input| Ok(vec![input; 1000])).expect("runs");
        assert_eq!(all, [vec![1; 1000], vec![2; 1000], vec![3; 1000]]);
        assert!(
            timing.peak_heap_bytes >= 1000 * size_of::<i32>(),
            "{timing:?}"
        );
        let (_, last) = time_runs(2, Keep::Last, &mut next, Ok).expect("runs");
        assert_eq!(last, [5]);
    }

    #[test]
    fn every_implementation_matches_a_small_trace_and_fills_its_cells() {
        let trace = crate::impls::tests::mixed_trace();
        for entry in ALL {
            let row = (entry.measure)(&trace, 1);
            assert_eq!(row.name, entry.name);
            assert!(row.problems.is_empty(), "{}: {:?}", row.name, row.problems);
            assert!(
                matches!(row.cell(Phase::Local), Cell::Done(_)),
                "{}",
                row.name
            );
            assert!(
                matches!(row.cell(Phase::Encode), Cell::Done(Timing { bytes: Some(b), .. }) if b > 0),
                "{}",
                row.name
            );
        }
    }
}
