//! Bad bytes never panic and never make decoding allocate beyond its bound: random, mutated and
//! hand-made hostile snapshots decode to an error or to a replica whose invariants hold, and
//! decoding `n` bytes allocates at most `DECODE_ALLOC_FACTOR * n + DECODE_ALLOC_BASE` bytes
//! (measured by a counting allocator); random and mutated JSON operations parse to an error or
//! apply (or are refused) without panicking. `RGA_DECODE_CASES` sets how many snapshot cases run
//! (default 20,000); the `fuzz/` targets run the same checks coverage-guided for longer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use rga::{DECODE_ALLOC_BASE, DECODE_ALLOC_FACTOR, Op, Rga, SiteId, VersionVector};

/// The system allocator, counting each thread's live bytes and their high-water mark.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    /// The highest allocated/input ratio seen on this thread (reported by the tests).
    static WORST: Cell<f64> = const { Cell::new(0.0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

// SAFETY: every call is forwarded unchanged to `System`; the wrapper only updates counters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // A moving realloc holds both blocks for a moment.
            count(new_size as isize);
            count(-(layout.size() as isize));
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Decodes `bytes`, asserting the allocation bound; returns the result.
fn decode_within_bound(bytes: &[u8]) -> Result<Rga, rga::DecodeError> {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let result = Rga::decode(bytes);
    let peak = (PEAK.with(Cell::get) - start) as usize;
    let bound = DECODE_ALLOC_FACTOR * bytes.len() + DECODE_ALLOC_BASE;
    WORST.with(|w| w.set(w.get().max(peak as f64 / bytes.len().max(1) as f64)));
    assert!(
        peak <= bound,
        "decoding {} bytes allocated {peak} bytes (bound {bound}): {:?}",
        bytes.len(),
        result.as_ref().err()
    );
    result
}

fn cases() -> usize {
    std::env::var("RGA_DECODE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
}

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
    // A larger, real snapshot too: the first 3,000 edits of a trace.
    let trace = editing_traces::sequential("rustcode").expect("trace readable");
    let mut big = Rga::new();
    for p in trace.patches().take(3000) {
        if p.del() > 0 {
            big.delete(SiteId(1), p.pos(), p.del()).unwrap();
        }
        if !p.ins().is_empty() {
            big.insert(SiteId(1), p.pos(), p.ins()).unwrap();
        }
    }
    let big = big.encode();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut accepted = 0;
    let n = cases();
    for round in 0..n {
        let mut bytes = match round % 10 {
            0 => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
            1 => big.clone(),
            _ => good.clone(),
        };
        for _ in 0..rng.random_range(1..4) {
            mutate(&mut rng, &mut bytes);
        }
        if let Ok(r) = decode_within_bound(&bytes) {
            if bytes.len() < 4096 {
                r.assert_invariants();
            }
            let _ = r.text();
            accepted += 1;
        }
    }
    assert!(accepted < n, "mutations must be noticed");
    println!(
        "{n} cases, {accepted} decoded; worst allocation {:.1} x the input",
        WORST.with(Cell::get)
    );
}

/// Appends a LEB128 varint.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A snapshot header with one site, the given char count and text block bytes.
fn header(chars: u64, text_block: &[u8]) -> Vec<u8> {
    let mut b = b"RGA\x03".to_vec();
    varint(&mut b, 1); // ssn
    varint(&mut b, 1); // one site
    varint(&mut b, 7);
    varint(&mut b, chars);
    b.extend_from_slice(text_block);
    b
}

#[test]
fn hand_made_bombs_are_refused_or_stay_within_the_bound() {
    // Claims 2^31 - 1 chars with one byte of text (before, records claiming that many chars
    // resized a table of 8 GiB).
    let mut one = Vec::new();
    varint(&mut one, 1);
    one.push(0);
    one.push(b'x');
    let mut bomb = header((1 << 31) - 1, &one);
    let mut records = Vec::new();
    varint(&mut records, 1);
    records.extend_from_slice(&[1 << 5, 0xff, 0xff, 0xff, 0xff, 0x07, 0]);
    varint(&mut bomb, records.len() as u64);
    bomb.push(0);
    bomb.extend_from_slice(&records);
    bomb.push(0);
    assert!(decode_within_bound(&bomb).is_err());
    // An LZ4 text block claiming far more than its compressed form allows.
    let packed = lz4_flex::block::compress(&[b'a'; 100_000]);
    let mut block = Vec::new();
    varint(&mut block, 100_000);
    block.push(1);
    varint(&mut block, packed.len() as u64);
    block.extend_from_slice(&packed);
    assert!(decode_within_bound(&header(100_000, &block)).is_err());
    // A legitimate but extremely compressible document: stored so that it decodes in bound.
    let mut doc = Rga::new();
    doc.insert(SiteId(1), 0, &"a".repeat(1 << 20)).unwrap();
    for i in 0..2000 {
        doc.delete(SiteId(1), i * 3, 1).unwrap();
    }
    let bytes = doc.encode();
    let back = decode_within_bound(&bytes).unwrap();
    assert_eq!(back.text(), doc.text());
    // Many delete records of the same char (each one is valid: deleting twice is allowed).
    let mut d = Rga::new();
    d.insert(SiteId(1), 0, "ab").unwrap();
    let ops = d.ops_since(&VersionVector::new());
    let mut r = Rga::new();
    r.apply_all(ops).unwrap();
    for k in 0..20_000u64 {
        r.apply(Op::Delete {
            id: rga::S4Vector {
                ssn: 1,
                sum: 3 + k,
                sid: SiteId(9),
                seq: 1 + k,
            },
            targets: vec![rga::IdRange {
                sid: SiteId(1),
                seq: 1,
                len: 1,
            }],
        })
        .unwrap();
    }
    let bytes = r.encode();
    let back = decode_within_bound(&bytes).unwrap();
    back.assert_invariants();
    println!(
        "hostile snapshots: worst allocation {:.1} x the input",
        WORST.with(Cell::get)
    );
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
