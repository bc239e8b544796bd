//! Replays a sequential trace as local edits (or, with `remote`, as remote ops one by one; with
//! `bulk`, as one batch into an empty replica; with `decode_ops`, that batch from its binary form; with `decode`,
//! through a snapshot) many times: a target for profilers (`perf record`, callgrind).
//!
//! `cargo run --release -p rga --example replay -- [local|remote|bulk|decode_ops|decode|stale] [trace name] [runs]`

use std::time::Instant;

use rga::{Rga, SiteId, VersionVector};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let phase = args.get(1).map_or("local", String::as_str);
    let name = args.get(2).map_or("automerge-paper", String::as_str);
    let runs: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20);
    let trace = editing_traces::sequential(name).expect("trace readable");
    let local = || {
        let mut doc = Rga::new();
        for p in trace.patches() {
            if p.del() > 0 {
                doc.delete(SiteId(1), p.pos(), p.del())
                    .expect("valid delete");
            }
            if !p.ins().is_empty() {
                doc.insert(SiteId(1), p.pos(), p.ins())
                    .expect("valid insert");
            }
        }
        doc
    };
    let doc = local();
    let ops = doc.ops_since(&VersionVector::new());
    let bytes = doc.encode();
    let batch = rga::encode_ops(&ops);
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let input = if phase == "remote" || phase == "bulk" {
            ops.clone()
        } else {
            Vec::new()
        };
        let start = Instant::now();
        let out = match phase {
            "remote" => {
                let mut fresh = Rga::new();
                let mut applied = rga::Applied::default();
                for op in input {
                    applied.clear();
                    fresh.apply_into(op, &mut applied).expect("valid op");
                }
                fresh
            }
            "bulk" => {
                let mut fresh = Rga::new();
                let report = fresh.apply_batch(input);
                assert!(report.errors.is_empty());
                fresh
            }
            "decode_ops" => {
                let mut fresh = Rga::new();
                fresh.apply_batch(rga::decode_ops(&batch).expect("valid batch"));
                fresh
            }
            "decode" => Rga::decode(&bytes).expect("valid snapshot"),
            "stale" => {
                // 1000 splices against a base 100 of site 1's ops behind (bench -- traces).
                let mut d = doc.clone();
                let mut base = VersionVector::new();
                base.set(SiteId(1), doc.version().get(SiteId(1)) - 100);
                for i in 0..1000 {
                    let s = rga::Splice {
                        index: (i * 7919) % (doc.len() - 3000),
                        delete: 1,
                        insert: "ab".into(),
                    };
                    d.splice(SiteId(2), Some(&base), &[s])
                        .expect("valid splice");
                }
                d
            }
            _ => local(),
        };
        if phase != "stale" {
            assert_eq!(out.len(), trace.end_content.chars().count());
        }
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{phase} {name}: min {:.2} ms, median {:.2} ms over {runs} runs",
        times[0],
        times[runs / 2]
    );
}
