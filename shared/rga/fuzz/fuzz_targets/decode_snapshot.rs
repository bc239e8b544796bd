//! Arbitrary bytes as a snapshot: an error or a replica whose invariants hold, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = rga::Rga::decode(data) {
        doc.assert_invariants();
        let _ = doc.text();
        let _ = doc.encode();
    }
});
