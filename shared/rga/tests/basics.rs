//! Direct tests of local edits, remote application, duplicates and the waiting buffer.

use rga::{
    Change, CharId, EditError, IdRange, Op, OpError, Rga, S4Vector, SiteId, Splice, Status,
    VersionVector,
};

const A: SiteId = SiteId(1);
const B: SiteId = SiteId(2);

fn s4(sum: u64, sid: SiteId, seq: u64) -> S4Vector {
    S4Vector {
        ssn: 1,
        sum,
        sid,
        seq,
    }
}

#[test]
fn local_edits_by_index_produce_the_expected_text() {
    let mut d = Rga::new();
    d.insert(A, 0, "hello world").unwrap();
    d.delete(A, 5, 6).unwrap();
    d.insert(A, 0, "¡").unwrap();
    d.replace(A, 1, 1, "H").unwrap();
    d.update(A, 5, 'O').unwrap();
    d.assert_invariants();
    assert_eq!(d.text(), "¡HellO");
    assert_eq!(d.len(), 6);
    assert_eq!(
        d.insert(A, 7, "x").err(),
        Some(EditError::IndexOutOfBounds { index: 7, len: 6 })
    );
    assert_eq!(
        d.delete(A, 4, 3).err(),
        Some(EditError::RangeOutOfBounds {
            index: 4,
            delete: 3,
            len: 6
        })
    );
    assert_eq!(d.text(), "¡HellO", "refused edits change nothing");
}

#[test]
fn consecutive_typing_is_one_run_and_one_operation() {
    let mut d = Rga::new();
    for (i, c) in "typing".chars().enumerate() {
        d.insert(A, i, &c.to_string()).unwrap();
    }
    let ops = d.ops_since(&VersionVector::new());
    assert_eq!(
        ops,
        vec![Op::Insert {
            id: s4(1, A, 1),
            after: None,
            text: "typing".into()
        }]
    );
}

#[test]
fn ops_arriving_before_their_causes_wait_and_apply_when_the_causes_come() {
    let mut a = Rga::new();
    a.insert(A, 0, "ab").unwrap();
    a.insert(A, 1, "X").unwrap(); // aXb
    a.delete(A, 0, 1).unwrap(); // Xb
    let ops = a.ops_since(&VersionVector::new());
    assert_eq!(ops.len(), 3);
    let mut b = Rga::new();
    assert_eq!(b.apply(ops[2].clone()).unwrap().status, Status::Pending);
    assert_eq!(b.apply(ops[1].clone()).unwrap().status, Status::Pending);
    assert_eq!(b.pending_len(), 2);
    let done = b.apply(ops[0].clone()).unwrap();
    assert_eq!(done.status, Status::Applied);
    assert_eq!(done.released, 2);
    assert_eq!(b.text(), "Xb");
    assert_eq!(b.pending_len(), 0);
    let mut mirror = String::new();
    for c in &done.changes {
        match c {
            Change::Insert { index, text } => mirror.insert_str(
                mirror
                    .char_indices()
                    .nth(*index)
                    .map_or(mirror.len(), |x| x.0),
                text,
            ),
            Change::Delete { index, len } => {
                mirror = mirror
                    .chars()
                    .take(*index)
                    .chain(mirror.chars().skip(index + len))
                    .collect();
            }
        }
    }
    assert_eq!(mirror, "Xb");
}

#[test]
fn duplicates_are_no_ops_and_conflicting_reuse_of_an_id_is_refused() {
    let mut a = Rga::new();
    a.insert(A, 0, "abc").unwrap();
    let op = a.ops_since(&VersionVector::new()).remove(0);
    let mut b = Rga::new();
    b.apply(op.clone()).unwrap();
    assert_eq!(b.apply(op.clone()).unwrap().status, Status::Duplicate);
    let forged = Op::Insert {
        id: s4(1, A, 1),
        after: None,
        text: "abd".into(),
    };
    assert_eq!(
        b.apply(forged),
        Err(OpError::ConflictingDuplicate {
            id: s4(1, A, 1).id()
        })
    );
    // A run that extends a known one: only the suffix is new.
    let longer = Op::Insert {
        id: s4(1, A, 1),
        after: None,
        text: "abcde".into(),
    };
    assert_eq!(b.apply(longer).unwrap().status, Status::Applied);
    assert_eq!(b.text(), "abcde");
    b.assert_invariants();
}

#[test]
fn ops_that_break_the_s4vector_rules_are_refused_with_typed_errors() {
    let mut d = Rga::new();
    d.insert(A, 0, "ab").unwrap();
    let a1 = s4(1, A, 1);
    type Case = (Op, &'static str, fn(&OpError) -> bool);
    let cases: [Case; 9] = [
        (
            Op::Insert {
                id: s4(1, B, 0),
                after: None,
                text: "x".into(),
            },
            "zero seq",
            |e: &OpError| matches!(e, OpError::ZeroSeq { .. }),
        ),
        (
            Op::Insert {
                id: s4(2, B, 3),
                after: None,
                text: "x".into(),
            },
            "seq > sum",
            |e: &OpError| matches!(e, OpError::SeqExceedsSum { seq: 3, sum: 2, .. }),
        ),
        (
            Op::Insert {
                id: S4Vector {
                    ssn: 9,
                    sum: 5,
                    sid: B,
                    seq: 1,
                },
                after: None,
                text: "x".into(),
            },
            "unknown session",
            |e: &OpError| {
                matches!(
                    e,
                    OpError::UnknownSession {
                        ssn: 9,
                        known: 1,
                        ..
                    }
                )
            },
        ),
        (
            Op::Insert {
                id: s4(1, SiteId(0), 1),
                after: Some(a1),
                text: "x".into(),
            },
            "not after reference",
            |e: &OpError| matches!(e, OpError::NotAfterCause { .. }),
        ),
        (
            Op::Insert {
                id: s4(5, B, 1),
                after: Some(S4Vector { sum: 4, ..a1 }),
                text: "x".into(),
            },
            "reference mismatch",
            |e: &OpError| matches!(e, OpError::ReferenceMismatch { .. }),
        ),
        (
            Op::Insert {
                id: s4(5, B, 1),
                after: None,
                text: String::new(),
            },
            "empty",
            |e: &OpError| matches!(e, OpError::Empty { .. }),
        ),
        (
            Op::Delete {
                id: s4(5, B, 1),
                targets: vec![],
            },
            "no targets",
            |e: &OpError| matches!(e, OpError::Empty { .. }),
        ),
        (
            Op::Delete {
                id: s4(1, B, 1),
                targets: vec![IdRange {
                    sid: A,
                    seq: 1,
                    len: 2,
                }],
            },
            "delete older than target",
            |e: &OpError| matches!(e, OpError::NotAfterCause { .. }),
        ),
        (
            Op::Insert {
                id: s4(u64::MAX, B, 1),
                after: None,
                text: "xy".into(),
            },
            "overflow",
            |e: &OpError| matches!(e, OpError::IdOutOfRange { field: "sum", .. }),
        ),
    ];
    for (op, why, expected) in cases {
        let before = d.encode();
        let err = d.apply(op).expect_err(why);
        assert!(
            expected(&err),
            "{why}: refused for the wrong reason: {err:?}"
        );
        assert_eq!(d.encode(), before, "{why}: state unchanged ({err})");
    }
    d.insert(A, 2, "c").unwrap(); // seq 3 is an insert
    d.delete(A, 0, 1).unwrap(); // seq 4 is a delete
    let not_char = Op::Delete {
        id: s4(9, B, 1),
        targets: vec![IdRange {
            sid: A,
            seq: 4,
            len: 1,
        }],
    };
    assert!(matches!(
        d.apply(not_char),
        Err(OpError::NotACharacter { .. })
    ));
    let mut small = Rga::new();
    let mut limits = rga::Limits::default();
    limits.max_pending = 1;
    small.set_limits(limits);
    small
        .apply(Op::Insert {
            id: s4(3, B, 3),
            after: None,
            text: "x".into(),
        })
        .unwrap();
    assert!(matches!(
        small.apply(Op::Insert {
            id: s4(5, A, 5),
            after: None,
            text: "y".into()
        }),
        Err(OpError::BufferFull {
            limit: rga::BufferLimit::Ops(1),
            ..
        })
    ));
}

#[test]
fn a_site_whose_precedence_does_not_rise_is_refused() {
    let mut d = Rga::new();
    d.apply(Op::Insert {
        id: s4(5, B, 1),
        after: None,
        text: "x".into(),
    })
    .unwrap();
    let err = d
        .apply(Op::Insert {
            id: s4(5, B, 2),
            after: None,
            text: "y".into(),
        })
        .unwrap_err();
    assert_eq!(
        err,
        OpError::NotIncreasing {
            id: s4(5, B, 2).id(),
            site: B
        }
    );
}

#[test]
fn an_edit_against_a_stale_version_lands_where_its_author_meant_it() {
    let mut server = Rga::new();
    server.insert(A, 0, "fn main() {}").unwrap();
    let seen = server.version();
    // Someone else edits first: the client's indexes no longer match the current text.
    server.insert(B, 0, "// hi\n").unwrap();
    server.delete(B, 6, 3).unwrap(); // "// hi\nmain() {}"
    let client = SiteId(3);
    let edit = server
        .splice(
            client,
            Some(&seen),
            &[Splice {
                index: 11,
                delete: 0,
                insert: "\n    x();\n".into(),
            }],
        )
        .unwrap();
    assert_eq!(server.text(), "// hi\nmain() {\n    x();\n}");
    assert_eq!(server.text_at(&edit.version), "fn main() {\n    x();\n}");
    assert_eq!(
        edit.changes,
        vec![Change::Insert {
            index: 14,
            text: "\n    x();\n".into()
        }]
    );
    server.assert_invariants();
    // A base this replica has not received is refused.
    let future: VersionVector = [(SiteId(9), 1)].into_iter().collect();
    assert_eq!(
        server.splice(client, Some(&future), &[]).unwrap_err(),
        EditError::NotReceived {
            site: SiteId(9),
            seq: 1
        }
    );
}

#[test]
fn updates_take_the_highest_precedence_and_never_revive_a_tombstone() {
    let mut a = Rga::new();
    a.insert(A, 0, "abc").unwrap();
    let base = a.version();
    let mut b = Rga::new();
    b.apply_all(a.ops_since(&VersionVector::new())).unwrap();
    a.update(A, 1, 'X').unwrap();
    b.update(B, 1, 'Y').unwrap();
    b.delete(B, 2, 1).unwrap();
    a.apply_all(b.ops_since(&base)).unwrap();
    b.apply_all(a.ops_since(&base)).unwrap();
    assert_eq!(a.text(), b.text());
    // Equal sums: the higher site id wins.
    assert_eq!(a.text(), "aY");
    let mut c = Rga::new();
    c.apply_all(a.ops_since(&VersionVector::new())).unwrap();
    assert_eq!(c.text(), "aY");
    // An update of a character deleted concurrently (and one issued after the delete was seen,
    // with a higher precedence still) leaves it deleted everywhere.
    let before = a.version();
    let mut d = a.clone();
    a.update(A, 0, 'Q').unwrap();
    d.delete(B, 0, 1).unwrap();
    a.apply_all(d.ops_since(&before)).unwrap();
    d.apply_all(a.ops_since(&before)).unwrap();
    assert_eq!(a.text(), "Y");
    assert_eq!(d.text(), "Y");
    let deleted = a.element_ids()[0].0;
    let late = Op::Update {
        id: S4Vector {
            ssn: 1,
            sum: 1000,
            sid: SiteId(77),
            seq: 1,
        },
        target: deleted,
        value: 'R',
    };
    let applied = a.apply(late.clone()).unwrap();
    assert_eq!(applied.status, Status::Applied);
    assert!(applied.changes.is_empty(), "no visible change");
    d.apply(late).unwrap();
    assert_eq!(a.text(), "Y", "the update did not revive the tombstone");
    assert_eq!(d.text(), "Y");
    a.assert_invariants();
}

#[test]
fn cursor_anchors_follow_concurrent_edits() {
    let mut d = Rga::new();
    d.insert(A, 0, "hello").unwrap();
    let anchor = d.id_at(3).unwrap();
    d.insert(B, 0, ">> ").unwrap();
    assert_eq!(d.index_of(anchor), Some(6));
    d.delete(B, 5, 3).unwrap();
    assert_eq!(
        d.index_of(anchor),
        Some(5),
        "a deleted anchor maps to the next visible char"
    );
}

#[test]
fn a_long_backspace_run_at_the_end_of_the_log_survives_a_snapshot() {
    let mut d = Rga::new();
    d.insert(A, 0, &"x".repeat(500)).unwrap();
    for i in (100..500).rev() {
        d.delete(A, i, 1).unwrap();
    }
    let back = Rga::decode(&d.encode()).unwrap();
    back.assert_invariants();
    assert_eq!(back.text(), "x".repeat(100));
    assert_eq!(
        back.ops_since(&VersionVector::new()),
        d.ops_since(&VersionVector::new())
    );
}

#[test]
fn utf16_positions_convert_both_ways_and_changes_patch_a_utf16_mirror() {
    use rand::prelude::*;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let alphabet = ['a', 'é', '😀', '→', '\n', '𝄞'];
    let mut a = Rga::new();
    let mut b = Rga::new();
    b.set_units(rga::Units::Utf16);
    let mut mirror: Vec<u16> = Vec::new();
    for step in 0..400 {
        let v = a.version();
        let len = a.len();
        if len > 0 && rng.random_bool(0.3) {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(4));
            a.delete(A, i, n).unwrap();
        } else {
            let i = rng.random_range(0..=len);
            let text: String = (0..rng.random_range(1..4))
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            a.insert(A, i, &text).unwrap();
        }
        for op in a.ops_since(&v) {
            for change in b.apply(op).unwrap().changes {
                match change {
                    rga::Change::Insert { index, text } => {
                        mirror.splice(index..index, text.encode_utf16());
                    }
                    rga::Change::Delete { index, len } => {
                        mirror.drain(index..index + len);
                    }
                }
            }
        }
        let text = a.text();
        let units: Vec<u16> = text.encode_utf16().collect();
        assert_eq!(mirror, units, "step {step}: utf16 changes patch the mirror");
        assert_eq!(a.utf16_len(), units.len());
        // Every char boundary converts both ways; an offset inside a pair rounds.
        let mut u = 0;
        for (i, c) in text.chars().enumerate() {
            assert_eq!(a.chars_to_utf16(i), u);
            assert_eq!(a.utf16_to_chars(u), i);
            if c.len_utf16() == 2 {
                assert_eq!(a.utf16_to_chars(u + 1), i, "inside a pair rounds down");
                assert_eq!(a.utf16_to_chars_up(u + 1), i + 1, "or up for a range end");
            }
            u += c.len_utf16();
        }
        assert_eq!(a.chars_to_utf16(a.len()), u);
        assert_eq!(a.utf16_to_chars(u), a.len());
        b.assert_invariants();
    }
}

#[test]
fn anchors_keep_their_place_through_remote_edits_and_deletes() {
    let mut d = Rga::new();
    d.insert(A, 0, "hello world").unwrap();
    let caret = d.anchor_at(5); // after "hello"
    let start = d.anchor_at(0);
    d.insert(B, 0, ">> ").unwrap();
    assert_eq!(d.resolve(caret), 8);
    assert_eq!(d.resolve(start), 0);
    d.insert(B, 8, ",").unwrap(); // typed at the caret by someone else: after the anchor
    assert_eq!(d.resolve(caret), 8);
    d.delete(B, 6, 2).unwrap(); // the anchor's char is deleted: the place stays
    assert_eq!(d.resolve(caret), 6);
    let json = serde_json::to_string(&caret).unwrap();
    assert_eq!(serde_json::from_str::<rga::Anchor>(&json).unwrap(), caret);
}

#[test]
fn slices_visibility_and_ops_cut_for_a_small_transport() {
    let a = SiteId(1);
    let mut doc = Rga::new();
    doc.insert(a, 0, "héllo wörld 😀!").unwrap();
    doc.delete(a, 5, 1).unwrap();
    assert_eq!(doc.text(), "héllowörld 😀!");
    assert_eq!(doc.slice(1, 7), "éllowö");
    assert_eq!(doc.slice(11, 99), "😀!");
    assert_eq!(doc.slice(4, 4), "");
    let space = rga::CharId { sid: a, seq: 6 };
    assert_eq!(doc.is_visible(space), Some(false));
    assert_eq!(doc.is_visible(rga::CharId { sid: a, seq: 1 }), Some(true));
    assert_eq!(doc.is_visible(rga::CharId { sid: a, seq: 99 }), None);
    // Cut into pieces of at most 4 chars, the ops still rebuild the same replica.
    let ops = doc.ops_of_site_since_cut(a, 1, 4);
    assert!(ops.iter().all(|op| op.seq_len() <= 4), "{ops:?}");
    assert!(ops.len() >= 4);
    let mut copy = Rga::new();
    copy.apply_all(ops).unwrap();
    assert_eq!(copy.text(), doc.text());
    assert_eq!(copy.element_ids(), doc.element_ids());
}

/// A batch into an empty replica (the bulk path) ends in the state op-by-op application makes,
/// where the two could differ: a run that continues its site's last run right after a char that
/// another site deleted meanwhile starts a run of its own (its reference is a tombstone), a
/// char deleted twice, an update, a duplicate and a refused op.
#[test]
fn a_batch_into_an_empty_replica_matches_op_by_op_application() {
    let (a, b, c) = (SiteId(1), SiteId(2), SiteId(3));
    let mut ops = Vec::new();
    // Enough ops for the bulk path: site c types 70 chars one op at a time.
    for k in 1..=70u64 {
        ops.push(Op::Insert {
            id: s4(k, c, k),
            after: (k > 1).then(|| s4(k - 1, c, k - 1)),
            text: "c".into(),
        });
    }
    // a types "ab" after them; b deletes the "b"; a, not having seen it, types "c" after "b".
    ops.push(Op::Insert {
        id: s4(71, a, 1),
        after: Some(s4(70, c, 70)),
        text: "ab".into(),
    });
    let b_char = IdRange {
        sid: a,
        seq: 2,
        len: 1,
    };
    ops.push(Op::Delete {
        id: s4(73, b, 1),
        targets: vec![b_char],
    });
    ops.push(Op::Insert {
        id: s4(73, a, 3),
        after: Some(s4(72, a, 2)),
        text: "c".into(),
    });
    // c deletes the "b" too, and updates its first char; a duplicate and a refused op.
    ops.push(Op::Delete {
        id: s4(74, c, 71),
        targets: vec![b_char],
    });
    ops.push(Op::Update {
        id: s4(75, c, 72),
        target: CharId { sid: c, seq: 1 },
        value: 'C',
    });
    ops.push(ops[3].clone());
    ops.push(Op::Insert {
        id: s4(80, b, 2),
        after: Some(s4(1, c, 1)),
        text: "".into(),
    });
    let mut one = Rga::new();
    let mut errors = Vec::new();
    for op in ops.clone() {
        let id = op.id().id();
        if let Err(e) = one.apply(op) {
            errors.push((id, e));
        }
    }
    let mut bulk = Rga::new();
    let report = bulk.apply_batch(ops);
    bulk.assert_invariants();
    assert_eq!(bulk.text(), one.text());
    assert_eq!(bulk.text(), format!("C{}ac", "c".repeat(69)));
    assert_eq!(bulk.encode(), one.encode(), "the same log and order");
    assert_eq!(report.errors, errors);
    assert_eq!(report.errors.len(), 1);
    assert_eq!(
        (report.applied, report.duplicates, report.pending),
        (75, 1, 0)
    );
    assert_eq!(
        report.changes,
        vec![rga::Change::Insert {
            index: 0,
            text: bulk.text()
        }]
    );
}
