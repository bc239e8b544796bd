//! The concurrent `friendsforever` trace (../shared/traces/concurrent, CC BY 4.0) replayed through
//! the api: its two agents edit on two different replicas, each transaction made against exactly
//! what its parent transactions had seen (the `base` of an index-based edit), and all three
//! replicas end at `endContent`. A replica that has not yet received a base answers 409; the
//! harness then delivers it more messages and retries.
//!
//! Consecutive transactions of one agent that simply continue each other go in one request (the
//! edits of a request apply in sequence, each seeing the ones before, so this is the same
//! history); the version after each of them is still known, because every edit's ops take a known
//! number of sequence numbers (a delete one, an insert one per char).

use editing_traces::{ConcurrentTxn, Patch};
use harness::Cluster;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

fn merge(into: &mut Map<String, Value>, v: &Value) {
    for (site, seq) in v.as_object().expect("a version object") {
        let seq = seq.as_u64().expect("a seq");
        let cur = into.get(site).and_then(Value::as_u64).unwrap_or(0);
        if seq > cur {
            into.insert(site.clone(), json!(seq));
        }
    }
}

/// Sequence numbers the ops of `patch` take.
fn seqs(patch: &Patch) -> u64 {
    (patch.del() > 0) as u64 + patch.ins().chars().count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friendsforever_two_agents_on_two_replicas_reach_the_end_content() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let trace = editing_traces::concurrent("friendsforever")
        .expect("../shared/traces/concurrent/friendsforever.json.gz");
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut cl = Cluster::new(3).await.expect("three replicas on PostgreSQL");
    let users = ["alice", "bob"];
    let (s, doc) = cl
        .request(
            0,
            "alice",
            "POST",
            "/documents",
            "",
            Some(json!({"title": "friends.md"})),
        )
        .await;
    assert_eq!(s, 201, "{doc}");
    let path = format!("/documents/{}", doc["id"].as_str().unwrap());
    cl.request(
        0,
        "alice",
        "PUT",
        &format!("{path}/collaborators/bob"),
        "",
        Some(json!({"role": "editor"})),
    )
    .await;
    cl.quiesce(&mut rng).await;
    let mut sites = Vec::new();
    for (agent, user) in users.iter().enumerate() {
        let (s, sess) = cl
            .request(agent, user, "POST", &format!("{path}/sessions"), "", None)
            .await;
        assert_eq!(s, 201, "{sess}");
        sites.push(sess["session"].as_u64().unwrap());
    }
    let txns = &trace.txns;
    let mut versions: Vec<Value> = Vec::with_capacity(txns.len());
    let mut requests = 0;
    let mut i = 0;
    while i < txns.len() {
        let ConcurrentTxn { agent, parents, .. } = &txns[i];
        let agent = *agent;
        let mut end = i + 1;
        while end < txns.len() && txns[end].agent == agent && txns[end].parents == [end - 1] {
            end += 1;
        }
        let mut base = Map::new();
        for &p in parents {
            merge(&mut base, &versions[p]);
        }
        let edits: Vec<Value> = txns[i..end]
            .iter()
            .flat_map(|t| &t.patches)
            .map(|p| json!({"index": p.pos(), "delete": p.del(), "insert": p.ins()}))
            .collect();
        let body = json!({"session": sites[agent], "base": base, "edits": edits});
        let out = loop {
            let (s, out) = cl
                .request(
                    agent,
                    users[agent],
                    "POST",
                    &format!("{path}/edits"),
                    "",
                    Some(body.clone()),
                )
                .await;
            requests += 1;
            match s {
                200 => break out,
                409 => {
                    if !cl.deliver_to(&mut rng, agent, 0.05, 0.0).await {
                        let (_, here) = cl
                            .request(agent, users[agent], "GET", &path, "", None)
                            .await;
                        let (_, there) = cl
                            .request(1 - agent, users[1 - agent], "GET", &path, "", None)
                            .await;
                        panic!(
                            "txn {i} (parents {parents:?}, base {base:?}): not received, nothing in flight: {out}; here {}, there {}, parent versions {:?}",
                            here["version"],
                            there["version"],
                            parents.iter().map(|&p| &versions[p]).collect::<Vec<_>>()
                        );
                    }
                }
                _ => panic!("txn {i}: {s} {out}"),
            }
        };
        // The version after each transaction of the request: the base plus the agent's own ops.
        let site = sites[agent].to_string();
        let last = out["version"][&site]
            .as_u64()
            .expect("the session's seq in the answer");
        let mut seq = last
            - txns[i..end]
                .iter()
                .flat_map(|t| &t.patches)
                .map(seqs)
                .sum::<u64>();
        for t in &txns[i..end] {
            seq += t.patches.iter().map(seqs).sum::<u64>();
            let mut v = base.clone();
            v.insert(site.clone(), json!(seq));
            versions.push(Value::Object(v));
        }
        // Let the network make some progress in the meantime.
        for _ in 0..2 {
            cl.deliver_one(&mut rng, 0.05, 0.02).await;
        }
        i = end;
    }
    cl.quiesce(&mut rng).await;
    for r in 0..3 {
        let (_, d) = cl.request(r, "alice", "GET", &path, "", None).await;
        assert_eq!(
            d["text"].as_str(),
            Some(trace.end_content.as_str()),
            "replica {} differs from endContent",
            r + 1
        );
        assert_eq!(cl.leftovers(r).await, (0, 0));
    }
    println!(
        "friendsforever: {} txns in {requests} requests, {:?}",
        txns.len(),
        cl.stats
    );
}
