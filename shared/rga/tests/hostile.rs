//! Realistic and hostile input (issue 12): resends cut differently from the original ops,
//! identifiers at the edge of their range, edits the limits would refuse, and a waiting buffer
//! that someone tries to fill or to poison. Each test failed before the change that it names.

use rga::{
    BufferLimit, CharId, EditError, IdRange, Limits, Op, OpError, Rga, S4Vector, SiteId, Splice,
    Status, VersionVector,
};

const A: SiteId = SiteId(1);
const B: SiteId = SiteId(2);
const C: SiteId = SiteId(3);

fn s4(sum: u64, sid: SiteId, seq: u64) -> S4Vector {
    S4Vector {
        ssn: 1,
        sum,
        sid,
        seq,
    }
}

fn with_limits(f: impl FnOnce(&mut Limits)) -> Rga {
    let mut limits = Limits::default();
    f(&mut limits);
    let mut d = Rga::new();
    d.set_limits(limits);
    d
}

/// A client typed "ab", then "c" after "b": its replica holds one run "abc". The server got
/// "ab", then another site's insert after "b", then "c" (its own run, since the other insert
/// landed between). The client never saw its acks and resends "abc" as one op: a duplicate.
#[test]
fn a_resend_merged_differently_from_what_the_server_holds_is_a_duplicate() {
    let mut client = Rga::new();
    client.insert(A, 0, "ab").unwrap();
    let ab = client.ops_since(&VersionVector::new());
    let after_ab = client.version();
    client.insert(A, 2, "c").unwrap();
    let c = client.ops_since(&after_ab);
    let resend = client.ops_since(&VersionVector::new());
    assert_eq!(resend.len(), 1, "the client holds one run");

    let mut server = Rga::new();
    server.apply_all(ab).unwrap();
    server.insert(B, 2, "X").unwrap();
    server.apply_all(c).unwrap();
    let text = server.text();
    let before = server.encode();
    for op in resend {
        assert_eq!(server.apply(op).unwrap().status, Status::Duplicate);
    }
    assert_eq!(server.text(), text);
    assert_eq!(server.encode(), before, "a duplicate changes nothing");

    // Split where the server has one run: each piece is a duplicate too.
    let mut one_run = Rga::new();
    one_run.insert(A, 0, "abc").unwrap();
    let mut peer = Rga::new();
    peer.apply_all(one_run.ops_since(&VersionVector::new()))
        .unwrap();
    let pieces = [
        Op::Insert {
            id: s4(2, A, 2),
            after: Some(s4(1, A, 1)),
            text: "b".into(),
        },
        Op::Insert {
            id: s4(3, A, 3),
            after: Some(s4(2, A, 2)),
            text: "c".into(),
        },
    ];
    for op in pieces {
        assert_eq!(peer.apply(op).unwrap().status, Status::Duplicate);
    }
    // Only a real content difference is a conflict.
    let forged = Op::Insert {
        id: s4(2, A, 2),
        after: Some(s4(1, A, 1)),
        text: "bd".into(),
    };
    assert_eq!(
        peer.apply(forged),
        Err(OpError::ConflictingDuplicate {
            id: s4(2, A, 2).id()
        })
    );
}

/// A delete resent with its targets split and reordered is the same delete.
#[test]
fn a_delete_with_its_targets_cut_and_ordered_differently_is_a_duplicate() {
    let mut a = Rga::new();
    a.insert(A, 0, "abcdef").unwrap();
    let mut b = Rga::new();
    b.apply_all(a.ops_since(&VersionVector::new())).unwrap();
    let v = a.version();
    a.delete(A, 1, 4).unwrap();
    let del = a.ops_since(&v);
    b.apply_all(del).unwrap();
    let recut = Op::Delete {
        id: s4(7, A, 7),
        targets: vec![
            IdRange {
                sid: A,
                seq: 4,
                len: 2,
            },
            IdRange {
                sid: A,
                seq: 2,
                len: 2,
            },
        ],
    };
    assert_eq!(b.apply(recut).unwrap().status, Status::Duplicate);
    assert_eq!(b.text(), "af");
}

/// Every op kind's fields are bounded, and a sum may not jump far above the op's causes: one
/// op must not use up the identifier space (before, any `sum` was accepted and the next local
/// edit overflowed or made ids every peer refused).
#[test]
fn no_op_can_make_the_next_local_edit_overflow_or_go_unaccepted() {
    let mut d = Rga::new();
    d.insert(A, 0, "abc").unwrap();
    let huge = [
        Op::Insert {
            id: s4(u64::MAX - 1, B, 1),
            after: None,
            text: "x".into(),
        },
        Op::Delete {
            id: s4(1 << 60, B, 1),
            targets: vec![IdRange {
                sid: A,
                seq: 1,
                len: 1,
            }],
        },
        Op::Update {
            id: s4(1 << 60, B, 1),
            target: CharId { sid: A, seq: 2 },
            value: 'Z',
        },
        Op::Delete {
            id: s4(9, B, 1),
            targets: vec![IdRange {
                sid: A,
                seq: u64::MAX - 1,
                len: 5,
            }],
        },
        Op::Update {
            id: s4(9, B, 1),
            target: CharId {
                sid: SiteId(1 << 60),
                seq: 1,
            },
            value: 'Z',
        },
    ];
    for op in huge {
        let err = d.apply(op.clone()).expect_err("a huge field is refused");
        assert!(
            matches!(err, OpError::IdOutOfRange { .. } | OpError::Overflow { .. }),
            "{op:?}: {err:?}"
        );
    }
    // Within the range but far above its causes: refused by every replica alike.
    let jump = Op::Update {
        id: s4(1 << 40, B, 1),
        target: CharId { sid: A, seq: 2 },
        value: 'Z',
    };
    assert!(matches!(d.apply(jump), Err(OpError::SumJump { .. })));
    // The largest jump allowed is accepted; edits go on, and a fresh peer takes their ops.
    let step = Limits::default().max_sum_step;
    d.apply(Op::Update {
        id: s4(3 + step, B, 1),
        target: CharId { sid: A, seq: 3 },
        value: 'Z',
    })
    .unwrap();
    d.apply(Op::Insert {
        id: s4(3 + 2 * step, B, 2),
        after: None,
        text: "q".into(),
    })
    .unwrap();
    for i in 0..5 {
        // Typing after an old char, at the head, and deleting: sums stay near their causes.
        d.insert(C, 1 + i, "y").unwrap();
        d.insert(C, 0, "h").unwrap();
        d.delete(C, 0, 1).unwrap();
    }
    let mut peer = Rga::new();
    peer.apply_all(d.ops_since(&VersionVector::new()))
        .expect("every op the replica ever made is accepted");
    assert_eq!(peer.text(), d.text());
    peer.assert_invariants();
}

/// Inserts and deletes longer than the op-size limit go out as several ops peers accept (before,
/// a local paste or selection delete made one op every peer refused).
#[test]
fn local_edits_beyond_the_op_size_limit_go_out_in_pieces() {
    let small = || with_limits(|l| l.max_op_len = 4);
    let mut d = small();
    let ops = d.insert(A, 0, "0123456789").unwrap().to_vec();
    assert_eq!(ops.len(), 3);
    let v = d.version();
    let dels = d.delete(A, 1, 8).unwrap().to_vec();
    assert!(dels.len() >= 3, "{dels:?}");
    for op in ops.iter().chain(&dels) {
        assert!(op.seq_len() <= 4);
    }
    assert_eq!(dels, d.ops_since(&v));
    let mut peer = small();
    peer.apply_all(d.ops_since(&VersionVector::new())).unwrap();
    assert_eq!(peer.text(), "09");
    // Against a past version too.
    let edit = d
        .splice(
            B,
            Some(&v),
            &[Splice {
                index: 0,
                delete: 10,
                insert: "abcdefghij".into(),
            }],
        )
        .unwrap();
    for op in &edit.ops {
        let cost = match op {
            Op::Delete { targets, .. } => targets.iter().map(|t| t.len + 1).sum(),
            other => other.seq_len(),
        };
        assert!(cost <= 4, "{op:?}");
    }
    peer.apply_all(edit.ops).unwrap();
    assert_eq!(peer.text(), d.text());
}

/// A splice against a past version is checked whole before anything changes (before, an id
/// overflow in its second piece left the first applied).
#[test]
fn a_refused_splice_against_a_past_version_changes_nothing() {
    let mut d = with_limits(|l| l.max_id = 30);
    d.insert(A, 0, "hello world").unwrap();
    let base = d.version();
    d.insert(A, 5, ",").unwrap();
    let before = d.encode();
    let too_many = [
        Splice {
            index: 0,
            delete: 1,
            insert: "H".into(),
        },
        Splice {
            index: 5,
            delete: 0,
            insert: "x".repeat(40),
        },
    ];
    let err = d.splice(B, Some(&base), &too_many).unwrap_err();
    assert!(
        matches!(err, EditError::Op(OpError::IdOutOfRange { .. })),
        "{err:?}"
    );
    assert_eq!(d.encode(), before, "nothing changed");
    // A fitting one still works, against the same base.
    let edit = d
        .splice(
            B,
            Some(&base),
            &[Splice {
                index: 0,
                delete: 1,
                insert: "H".into(),
            }],
        )
        .unwrap();
    assert_eq!(d.text(), "Hello, world");
    assert_eq!(d.text_at(&edit.version), "Hello world");
}

/// One site filling the waiting buffer cannot keep another site's ops out (before, one total
/// count was shared by everyone).
#[test]
fn a_site_flooding_the_waiting_buffer_does_not_block_other_sites() {
    let mut d = with_limits(|l| l.max_pending_per_site = 10);
    d.insert(A, 0, "x").unwrap();
    for seq in 2..12 {
        let op = Op::Insert {
            id: s4(seq + 10, B, seq),
            after: None,
            text: "flood".into(),
        };
        assert_eq!(d.apply(op).unwrap().status, Status::Pending);
    }
    let one_more = Op::Insert {
        id: s4(30, B, 12),
        after: None,
        text: "flood".into(),
    };
    assert!(matches!(
        d.apply(one_more),
        Err(OpError::BufferFull {
            limit: BufferLimit::SiteOps(10),
            ..
        })
    ));
    let other = Op::Insert {
        id: s4(5, C, 2),
        after: None,
        text: "y".into(),
    };
    assert_eq!(d.apply(other).unwrap().status, Status::Pending);
    let cause = Op::Insert {
        id: s4(4, C, 1),
        after: None,
        text: "z".into(),
    };
    let applied = d.apply(cause).unwrap();
    assert_eq!(applied.released, 1);
    assert_eq!(d.pending_len(), 10);
    d.assert_invariants();
}

/// Many sites of one group (one replica's clients, the group being the high bits of their site
/// ids) together cannot fill the waiting buffer: another group's ops still wait for their
/// causes and are applied when those come.
#[test]
fn one_group_of_sites_flooding_the_waiting_buffer_does_not_block_another_group() {
    const SHIFT: u32 = 40;
    let mut d = with_limits(|l| {
        l.max_pending = 40;
        l.max_pending_per_site = 10;
        l.pending_group_shift = SHIFT;
        l.max_pending_per_group = 20;
    });
    let flood_site = |k: u64| SiteId((1 << SHIFT) | k);
    let mut refused = None;
    'flood: for k in 1..10 {
        for seq in 2..12 {
            let op = Op::Insert {
                id: s4(seq + 10, flood_site(k), seq),
                after: None,
                text: "flood".into(),
            };
            if let Err(e) = d.apply(op) {
                refused = Some(e);
                break 'flood;
            }
        }
    }
    assert!(
        matches!(
            refused,
            Some(OpError::BufferFull {
                limit: BufferLimit::GroupOps(20),
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(d.pending_len(), 20);
    assert_eq!(d.pending_of(flood_site(1)), 10);
    d.assert_invariants();
    // A site of group 2 (another replica) still gets to wait, and then to apply.
    let remote = SiteId((2 << SHIFT) | 1);
    // "early" holds seqs 1 to 5, so the op after it is seq 6.
    let waits = Op::Insert {
        id: s4(10, remote, 6),
        after: None,
        text: "late".into(),
    };
    assert_eq!(d.apply(waits).unwrap().status, Status::Pending);
    let cause = Op::Insert {
        id: s4(5, remote, 1),
        after: None,
        text: "early".into(),
    };
    let applied = d.apply(cause).unwrap();
    assert_eq!(applied.released, 1, "{:?}", applied.rejected);
    assert!(d.text().contains("early") && d.text().contains("late"));
    d.assert_invariants();
}

/// An op that waits longer than the age limit is dropped and reported, and so is whatever waits
/// for it (before, it stayed forever and in every snapshot).
#[test]
fn ops_that_wait_too_long_are_dropped_and_reported() {
    let mut d = with_limits(|l| l.max_pending_age = 5);
    // B:5 waits for B:4, which never comes; B:6 waits for B:5.
    let never = Op::Insert {
        id: s4(10, B, 5),
        after: None,
        text: "late".into(),
    };
    let behind = Op::Insert {
        id: s4(14, B, 6),
        after: Some(s4(13, B, 5)),
        text: "!".into(),
    };
    assert_eq!(d.apply(never).unwrap().status, Status::Pending);
    assert_eq!(d.apply(behind).unwrap().status, Status::Pending);
    let mut reported = Vec::new();
    for i in 0..8u64 {
        let applied = d
            .apply(Op::Insert {
                id: s4(1000 + i, C, 1 + i),
                after: None,
                text: "c".into(),
            })
            .unwrap();
        reported.extend(applied.rejected);
    }
    assert_eq!(reported.len(), 2, "{reported:?}");
    assert!(matches!(reported[0], (id, OpError::Expired { .. }) if id == s4(10, B, 5).id()));
    assert!(matches!(reported[1], (id, OpError::CauseRefused { .. }) if id == s4(14, B, 6).id()));
    assert_eq!(d.pending_len(), 0);
    let back = Rga::decode(&d.encode()).unwrap();
    assert_eq!(back.pending_len(), 0, "and gone from snapshots");
}

/// An op that waited for a cause which, once released, was refused can never apply: it is
/// dropped and reported (before, it waited forever).
#[test]
fn ops_waiting_for_a_refused_cause_are_dropped_and_reported() {
    let mut d = Rga::new();
    d.insert(A, 0, "ab").unwrap();
    // B:1 refers to C:1 (not here yet) with an S4Vector C:1 will not have: it is refused once
    // C:1 arrives. B:2 waits for B:1.
    let bad = Op::Insert {
        id: s4(55, B, 1),
        after: Some(s4(50, C, 1)),
        text: "x".into(),
    };
    let next = Op::Insert {
        id: s4(60, B, 2),
        after: Some(s4(3, B, 1)),
        text: "y".into(),
    };
    assert_eq!(d.apply(bad).unwrap().status, Status::Pending);
    assert_eq!(d.apply(next).unwrap().status, Status::Pending);
    let cause = Op::Insert {
        id: s4(40, C, 1),
        after: None,
        text: "c".into(),
    };
    let applied = d.apply(cause).unwrap();
    assert_eq!(applied.status, Status::Applied);
    let kinds: Vec<(u64, bool)> = applied
        .rejected
        .iter()
        .map(|(id, e)| (id.seq, matches!(e, OpError::CauseRefused { .. })))
        .collect();
    assert_eq!(kinds, [(1, false), (2, true)], "{:?}", applied.rejected);
    assert!(matches!(
        applied.rejected[0].1,
        OpError::ReferenceMismatch { .. }
    ));
    assert_eq!(d.pending_len(), 0);
    d.assert_invariants();
}
