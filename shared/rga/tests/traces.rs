//! Real editing traces (josephg/editing-traces, read in place from `../shared/traces`): every
//! sequential trace replayed as local edits, then as remote operations on a second replica, then
//! through a snapshot; and the concurrent `friendsforever` trace replayed by two replicas that
//! each see exactly what the trace's parent transactions had seen.

use editing_traces::{ConcurrentTxn, Patch};
use rga::{Op, Rga, SiteId, Splice, VersionVector};

fn splices(patches: &[Patch]) -> Vec<Splice> {
    patches
        .iter()
        .map(|p| Splice {
            index: p.pos(),
            delete: p.del(),
            insert: p.ins().to_owned(),
        })
        .collect()
}

#[test]
fn every_sequential_trace_replays_locally_remotely_and_through_a_snapshot() {
    let paths = editing_traces::sequential_trace_paths()
        .expect("traces folder (../shared/traces) readable");
    assert!(!paths.is_empty());
    for path in paths {
        let name = editing_traces::trace_name(&path);
        let trace = editing_traces::load_sequential(&path).expect("trace parses");
        let site = SiteId(1);
        let mut local = Rga::new();
        for patch in trace.patches() {
            if patch.del() > 0 {
                local.delete(site, patch.pos(), patch.del()).unwrap();
            }
            if !patch.ins().is_empty() {
                local.insert(site, patch.pos(), patch.ins()).unwrap();
            }
        }
        assert_eq!(local.text(), trace.end_content, "{name}: local replay");
        local.assert_invariants();

        let mut remote = Rga::new();
        let ops = local.ops_since(&VersionVector::new());
        let applied = remote.apply_all(ops).unwrap();
        assert_eq!(remote.text(), trace.end_content, "{name}: remote replay");
        assert_eq!(remote.version(), local.version());
        assert_eq!(applied.rejected, vec![]);

        // The same ops as one batch into an empty replica take the bulk path: the same state,
        // byte for byte, and one change holding the whole text.
        let mut bulk = Rga::new();
        let report = bulk.apply_batch(local.ops_since(&VersionVector::new()));
        bulk.assert_invariants();
        assert_eq!(bulk.text(), trace.end_content, "{name}: bulk replay");
        assert_eq!(bulk.encode(), remote.encode(), "{name}: bulk state");
        assert_eq!(report.errors, vec![], "{name}: bulk errors");
        assert_eq!(
            report.changes,
            vec![rga::Change::Insert {
                index: 0,
                text: trace.end_content.clone()
            }],
            "{name}: bulk changes"
        );

        let bytes = local.encode();
        let decoded = Rga::decode(&bytes).unwrap();
        assert_eq!(decoded.text(), trace.end_content, "{name}: snapshot");
        decoded.assert_invariants();
        assert_eq!(
            decoded.ops_since(&VersionVector::new()),
            local.ops_since(&VersionVector::new()),
            "{name}: log survives"
        );
        println!(
            "{name}: {} patches, {} ops, snapshot {} bytes",
            trace.patch_count(),
            local.ops_since(&VersionVector::new()).len(),
            bytes.len()
        );
    }
}

/// The operations of `src` that are in `to` but not in `from` (runs cut at `to`).
fn ops_between(src: &Rga, from: &VersionVector, to: &VersionVector) -> Vec<Op> {
    src.ops_since(from)
        .into_iter()
        .filter_map(|op| {
            let limit = to.get(op.site());
            let id = *op.id();
            if id.seq > limit {
                return None;
            }
            Some(match op {
                Op::Insert { id, after, text } => {
                    let keep = (limit - id.seq + 1) as usize;
                    Op::Insert {
                        id,
                        after,
                        text: text.chars().take(keep).collect(),
                    }
                }
                other => other,
            })
        })
        .collect()
}

#[test]
fn friendsforever_replayed_by_two_agents_following_the_parent_graph_converges() {
    let trace = editing_traces::concurrent("friendsforever").expect("concurrent trace readable");
    let sites: Vec<SiteId> = (0..trace.num_agents)
        .map(|a| SiteId(a as u64 + 1))
        .collect();
    let mut replicas: Vec<Rga> = (0..trace.num_agents).map(|_| Rga::new()).collect();
    let mut versions: Vec<VersionVector> = Vec::with_capacity(trace.txns.len());
    let mut concurrent = 0;
    for (
        i,
        ConcurrentTxn {
            parents,
            agent,
            patches,
            ..
        },
    ) in trace.txns.iter().enumerate()
    {
        let mut target = VersionVector::new();
        for &p in parents {
            target.merge(&versions[p]);
        }
        let a = *agent;
        let have = replicas[a].version();
        assert!(
            target.includes(&have),
            "txn {i}: agent {a} saw more than its parents"
        );
        if target != have {
            concurrent += 1;
            let missing: Vec<Op> = (0..replicas.len())
                .filter(|&o| o != a)
                .flat_map(|o| ops_between(&replicas[o], &have, &target))
                .collect();
            replicas[a].apply_all(missing).unwrap();
            assert_eq!(
                replicas[a].version(),
                target,
                "txn {i}: merged exactly the parents"
            );
        }
        replicas[a]
            .splice(sites[a], None, &splices(patches))
            .unwrap();
        versions.push(replicas[a].version());
    }
    assert!(
        concurrent > 1000,
        "the trace really is concurrent ({concurrent} merges)"
    );
    let (r0, r1) = replicas.split_at_mut(1);
    let (a, b) = (&mut r0[0], &mut r1[0]);
    let (va, vb) = (a.version(), b.version());
    a.apply_all(b.ops_since(&va)).unwrap();
    b.apply_all(a.ops_since(&vb)).unwrap();
    assert_eq!(a.text(), trace.end_content);
    assert_eq!(b.text(), trace.end_content);
    a.assert_invariants();
}
