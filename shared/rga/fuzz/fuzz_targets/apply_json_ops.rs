//! Arbitrary bytes as a JSON array of operations applied to a fresh replica: no panic, and a
//! refused operation leaves the replica unchanged.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(ops) = serde_json::from_slice::<Vec<rga::Op>>(data) else { return };
    let mut doc = rga::Rga::new();
    for op in ops {
        let before = doc.encode();
        if doc.apply(op).is_err() {
            assert_eq!(doc.encode(), before);
        }
    }
    doc.assert_invariants();
});
