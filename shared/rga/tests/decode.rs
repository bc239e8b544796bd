//! Bad bytes never panic: random and mutated snapshots decode to an error or to a replica whose
//! invariants hold; random and mutated JSON operations parse to an error or apply (or are
//! refused) without panicking. The `fuzz/` targets run the same checks coverage-guided.

use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use rga::{Op, Rga, SiteId, VersionVector};

fn sample_doc() -> Rga {
    let mut a = Rga::new();
    a.insert(SiteId(1), 0, "hello wörld\n").unwrap();
    a.delete(SiteId(1), 3, 2).unwrap();
    a.update(SiteId(1), 0, 'H').unwrap();
    let mut b = Rga::new();
    b.apply_all(a.ops_since(&VersionVector::new())).unwrap();
    b.insert(SiteId(2), 4, "→ 😀").unwrap();
    for _ in 0..3 {
        let len = b.len();
        b.delete(SiteId(2), len - 1, 1).unwrap();
    }
    a.apply_all(b.ops_since(&a.version())).unwrap();
    a.insert(SiteId(1), 1, "xyz").unwrap();
    // A waiting operation, so that the snapshot carries one.
    let mut c = a.clone();
    c.insert(SiteId(3), 0, "later").unwrap();
    c.insert(SiteId(3), 0, "pending").unwrap();
    let later = c.ops_since(&a.version());
    a.apply(later[1].clone()).unwrap();
    assert_eq!(a.pending_len(), 1);
    a
}

fn mutate(rng: &mut ChaCha8Rng, bytes: &mut Vec<u8>) {
    match rng.random_range(0..4) {
        0 if !bytes.is_empty() => {
            let i = rng.random_range(0..bytes.len());
            bytes[i] ^= 1 << rng.random_range(0..8);
        }
        1 if !bytes.is_empty() => {
            let i = rng.random_range(0..bytes.len());
            bytes[i] = rng.random();
        }
        2 => {
            let i = rng.random_range(0..=bytes.len());
            bytes.truncate(i);
        }
        _ => {
            let i = rng.random_range(0..=bytes.len());
            bytes.insert(i, rng.random());
        }
    }
}

#[test]
fn mutated_and_random_snapshots_decode_to_an_error_or_a_consistent_replica() {
    let doc = sample_doc();
    let good = doc.encode();
    let back = Rga::decode(&good).unwrap();
    back.assert_invariants();
    assert_eq!(back.text(), doc.text());
    assert_eq!(back.pending_len(), 1);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut accepted = 0;
    for round in 0..20_000 {
        let mut bytes = if round % 10 == 0 {
            (0..rng.random_range(0..64)).map(|_| rng.random()).collect()
        } else {
            good.clone()
        };
        for _ in 0..rng.random_range(1..4) {
            mutate(&mut rng, &mut bytes);
        }
        if let Ok(r) = Rga::decode(&bytes) {
            r.assert_invariants();
            let _ = r.text();
            accepted += 1;
        }
    }
    assert!(accepted < 20_000, "mutations must be noticed");
}

#[test]
fn mutated_json_ops_never_panic_and_refused_ones_change_nothing() {
    let doc = sample_doc();
    let ops: Vec<String> = doc
        .ops_since(&VersionVector::new())
        .iter()
        .map(|op| serde_json::to_string(op).unwrap())
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for _ in 0..5_000 {
        let mut target = Rga::new();
        let mut bytes = ops[rng.random_range(0..ops.len())].clone().into_bytes();
        mutate(&mut rng, &mut bytes);
        let Ok(op) = serde_json::from_slice::<Op>(&bytes) else {
            continue;
        };
        target
            .apply_all(
                doc.ops_since(&VersionVector::new())
                    .into_iter()
                    .take(rng.random_range(0..ops.len())),
            )
            .unwrap();
        let before = target.encode();
        if target.apply(op).is_err() {
            assert_eq!(target.encode(), before, "a refused op changed the replica");
        }
        target.assert_invariants();
    }
}
