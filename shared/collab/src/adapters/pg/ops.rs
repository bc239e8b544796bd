//! Queries on `operations` and `waiting_ops`: the idempotent append, the tail, loading, catch-up.

use deadpool_postgres::Transaction;
use futures_util::future::try_join;
use rga::{CharId, IdRange, Op, S4Vector, SiteId, VersionVector};
use tokio_postgres::Row;

use super::{PgDocumentStore, documents, to_i64};
use crate::error::AppError;
use crate::ids::{DocumentId, ReplicaId, UserId};
use crate::model::{Document, MAX_PAGE_BYTES, OpsPage, Role};
use crate::ports::{Appended, Loaded, OpLog, Plan, Tail};

const OP_COLUMNS: &str =
    "kind, ssn, sum, sid, seq, len, value, ref_ssn, ref_sum, ref_sid, ref_seq, targets";

/// The append: overlapping rows with identical content are duplicates (ignored), with other
/// content conflicts (reported, and the caller rolls back); the rest get consecutive log
/// positions; waiting ops and the outbox row are written in the same statement.
const APPEND: &str = "
WITH input AS (
    SELECT * FROM unnest($2::int4[], $3::int8[], $4::int8[], $5::int8[], $6::text[], $7::int4[], $8::text[],
                         $9::int4[], $10::int8[], $11::int8[], $12::int8[], $13::jsonb[])
        WITH ORDINALITY AS t(ssn, sum, sid, seq, kind, len, value, ref_ssn, ref_sum, ref_sid, ref_seq, targets, ord)
),
overlap AS (
    SELECT i.ord,
           (o.seq = i.seq AND o.len = i.len AND o.ssn = i.ssn AND o.sum = i.sum AND o.kind = i.kind
            AND o.value IS NOT DISTINCT FROM i.value
            AND o.ref_ssn IS NOT DISTINCT FROM i.ref_ssn AND o.ref_sum IS NOT DISTINCT FROM i.ref_sum
            AND o.ref_sid IS NOT DISTINCT FROM i.ref_sid AND o.ref_seq IS NOT DISTINCT FROM i.ref_seq
            AND o.targets IS NOT DISTINCT FROM i.targets) AS same
    FROM input i
    -- A site's stored runs never overlap, so the rows that can overlap [seq, seq + len) are the
    -- last one starting at or before seq and those starting inside: two short index range scans.
    CROSS JOIN LATERAL (
        (SELECT * FROM operations o WHERE o.document_id = $1 AND o.sid = i.sid AND o.seq <= i.seq ORDER BY o.seq DESC LIMIT 1)
        UNION ALL
        (SELECT * FROM operations o WHERE o.document_id = $1 AND o.sid = i.sid AND o.seq > i.seq AND o.seq < i.seq + i.len)
    ) o
    WHERE o.seq + o.len > i.seq
),
fresh AS (
    SELECT i.*, row_number() OVER (ORDER BY i.ord) AS k
    FROM input i WHERE NOT EXISTS (SELECT 1 FROM overlap v WHERE v.ord = i.ord)
),
bump AS (
    UPDATE documents SET log_len = log_len + (SELECT count(*) FROM fresh), updated_at = now()
    WHERE id = $1 RETURNING log_len
),
ins AS (
    INSERT INTO operations (document_id, ssn, sum, sid, seq, value, kind, len, ref_ssn, ref_sum, ref_sid, ref_seq,
                            targets, log_pos, origin_replica)
    SELECT $1, f.ssn, f.sum, f.sid, f.seq, f.value, f.kind, f.len, f.ref_ssn, f.ref_sum, f.ref_sid, f.ref_seq,
           f.targets, b.log_len - (SELECT count(*) FROM fresh) + f.k - 1, $14
    FROM fresh f CROSS JOIN bump b
    RETURNING 1
),
unwait AS (
    DELETE FROM waiting_ops w USING unnest($15::int8[], $16::int8[]) AS r(sid, seq)
    WHERE w.document_id = $1 AND w.sid = r.sid AND w.seq = r.seq
    RETURNING 1
),
wait AS (
    INSERT INTO waiting_ops (document_id, sid, seq, op)
    SELECT $1, * FROM unnest($17::int8[], $18::int8[], $19::jsonb[])
    ON CONFLICT DO NOTHING
    RETURNING 1
),
out AS (
    INSERT INTO outbox (document_id, payload) SELECT $1, $20::jsonb WHERE $20::jsonb IS NOT NULL RETURNING id
)
SELECT (SELECT log_len FROM bump) AS next_pos,
       (SELECT count(*) FROM ins) AS inserted,
       (SELECT count(*) FROM overlap WHERE same) AS duplicates,
       ARRAY(SELECT ord FROM overlap WHERE NOT same ORDER BY ord) AS conflicts,
       (SELECT id FROM out) AS outbox_id,
       (SELECT count(*) FROM unwait) + (SELECT count(*) FROM wait) AS waiting_changed";

/// Inserts new ops at consecutive log positions from `$14`.
const INSERT_OPS: &str = "
INSERT INTO operations (document_id, ssn, sum, sid, seq, kind, len, value, ref_ssn, ref_sum, ref_sid, ref_seq, targets, log_pos, origin_replica)
SELECT $1, t.ssn, t.sum, t.sid, t.seq, t.kind, t.len, t.value, t.ref_ssn, t.ref_sum, t.ref_sid, t.ref_seq, t.targets, $14 + t.ord - 1, $15
FROM unnest($2::int4[], $3::int8[], $4::int8[], $5::int8[], $6::text[], $7::int4[], $8::text[],
            $9::int4[], $10::int8[], $11::int8[], $12::int8[], $13::jsonb[])
    WITH ORDINALITY AS t(ssn, sum, sid, seq, kind, len, value, ref_ssn, ref_sum, ref_sid, ref_seq, targets, ord)";

/// The optimistic append (`try_append`): one statement that advances the log length only if it
/// still is `$14` (or whatever it is when `$14` is -1), and writes the ops (and the waiting
/// changes and outbox row, when asked) only then, at the positions after the length it found.
/// A concurrent writer makes the `UPDATE` wait for its commit and then find a different length,
/// so nothing is written and the caller takes the locked path; unchecked, the rows go after
/// that writer's.
fn try_append_sql(waiting: bool, outbox: bool, key: bool, sent: bool) -> String {
    let mut sql = String::from(
        "WITH bump AS (
    UPDATE documents SET log_len = log_len + $16, updated_at = now()
    WHERE id = $1 AND ($14::int8 < 0 OR log_len = $14) AND deleted_at IS NULL
    RETURNING id, log_len - $16 AS start
),
ins AS (
    INSERT INTO operations (document_id, ssn, sum, sid, seq, kind, len, value, ref_ssn, ref_sum, ref_sid, ref_seq, targets, log_pos, origin_replica)
    SELECT $1, t.ssn, t.sum, t.sid, t.seq, t.kind, t.len, t.value, t.ref_ssn, t.ref_sum, t.ref_sid, t.ref_seq, t.targets, bump.start + t.ord - 1, $15
    FROM bump CROSS JOIN unnest($2::int4[], $3::int8[], $4::int8[], $5::int8[], $6::text[], $7::int4[], $8::text[],
                                $9::int4[], $10::int8[], $11::int8[], $12::int8[], $13::jsonb[])
        WITH ORDINALITY AS t(ssn, sum, sid, seq, kind, len, value, ref_ssn, ref_sum, ref_sid, ref_seq, targets, ord)
    RETURNING 1
)",
    );
    let mut next = 17;
    if waiting {
        sql.push_str(&format!(
            ",
unwait AS (
    DELETE FROM waiting_ops w USING bump, unnest(${a}::int8[], ${b}::int8[]) AS r(sid, seq)
    WHERE w.document_id = $1 AND w.sid = r.sid AND w.seq = r.seq RETURNING 1
),
wait AS (
    INSERT INTO waiting_ops (document_id, sid, seq, op)
    SELECT $1, r.sid, r.seq, r.op FROM bump CROSS JOIN unnest(${c}::int8[], ${d}::int8[], ${e}::jsonb[]) AS r(sid, seq, op)
    ON CONFLICT DO NOTHING RETURNING 1
)",
            a = next,
            b = next + 1,
            c = next + 2,
            d = next + 3,
            e = next + 4
        ));
        next += 5;
    }
    if outbox {
        sql.push_str(&format!(
            ",
out AS (INSERT INTO outbox (document_id, payload) SELECT $1, ${next}::jsonb FROM bump RETURNING id)"
        ));
        next += 1;
    }
    if key {
        // A key already recorded makes the whole statement fail (idempotency_keys_pkey): the
        // ops are not written, and the caller answers with the recorded answer.
        sql.push_str(&format!(
            ",
idem AS (INSERT INTO idempotency_keys (document_id, user_id, key, request_hash, answer)
         SELECT $1, ${a}, ${b}, ${c}, ${d}::jsonb FROM bump RETURNING 1)",
            a = next,
            b = next + 1,
            c = next + 2,
            d = next + 3
        ));
        next += 4;
    }
    if sent {
        // Rows this container published earlier: marked sent by deleting them here, whether or
        // not this write wins (they were published either way).
        sql.push_str(&format!(
            ",
sent AS (DELETE FROM outbox WHERE id = ANY(${next}::int8[]) RETURNING 1)"
        ));
    }
    sql.push_str(
        "\nSELECT EXISTS (SELECT 1 FROM bump) AS ok, (SELECT start FROM bump) AS start, (SELECT count(*) FROM ins) AS inserted",
    );
    if waiting {
        sql.push_str(
            ", (SELECT count(*) FROM unwait) + (SELECT count(*) FROM wait) AS waiting_changed",
        );
    }
    sql.push_str(if outbox {
        ", (SELECT id FROM out) AS outbox_id"
    } else {
        ", NULL::int8 AS outbox_id"
    });
    sql
}

/// Advances a locked document's log length.
const BUMP: &str = "UPDATE documents SET log_len = log_len + $2, updated_at = now() WHERE id = $1";

/// Locks a live document's row for the rest of the transaction.
const LOCK: &str = "SELECT log_len FROM documents WHERE id = $1 AND deleted_at IS NULL FOR UPDATE";

/// The operations at or after `$2` and the waiting ops: src 1 rows are log entries, src 2
/// waiting ops.
const TAIL: &str = "
SELECT 1 AS src, log_pos, kind, ssn, sum, sid, seq, len, value, ref_ssn, ref_sum, ref_sid, ref_seq, targets, NULL::jsonb AS waiting
FROM operations WHERE document_id = $1 AND log_pos >= $2
UNION ALL
SELECT 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, op
FROM waiting_ops WHERE document_id = $1
ORDER BY 1, 2";

/// Like `TAIL` from the latest snapshot's position, with a first row (src 0) holding it.
const LOAD_TAIL: &str = "
WITH snap AS (
    SELECT COALESCE((SELECT log_pos FROM document_snapshots WHERE document_id = $1 ORDER BY version DESC LIMIT 1), 0) AS pos
)
SELECT 0 AS src, (SELECT pos FROM snap) AS log_pos, NULL::text AS kind, NULL::int4 AS ssn, NULL::int8 AS sum,
       NULL::int8 AS sid, NULL::int8 AS seq, NULL::int4 AS len, NULL::text AS value, NULL::int4 AS ref_ssn,
       NULL::int8 AS ref_sum, NULL::int8 AS ref_sid, NULL::int8 AS ref_seq, NULL::jsonb AS targets, NULL::jsonb AS waiting
UNION ALL
SELECT 1, log_pos, kind, ssn, sum, sid, seq, len, value, ref_ssn, ref_sum, ref_sid, ref_seq, targets, NULL
FROM operations WHERE document_id = $1 AND log_pos >= (SELECT pos FROM snap)
UNION ALL
SELECT 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, op
FROM waiting_ops WHERE document_id = $1
ORDER BY 1, 2";

/// Column values of a batch of ops, in the order of `APPEND`'s parameters $2..$13.
#[derive(Default)]
struct Columns {
    ssn: Vec<i32>,
    sum: Vec<i64>,
    sid: Vec<i64>,
    seq: Vec<i64>,
    kind: Vec<&'static str>,
    len: Vec<i32>,
    value: Vec<Option<String>>,
    ref_ssn: Vec<Option<i32>>,
    ref_sum: Vec<Option<i64>>,
    ref_sid: Vec<Option<i64>>,
    ref_seq: Vec<Option<i64>>,
    targets: Vec<Option<serde_json::Value>>,
}

impl Columns {
    fn push(&mut self, op: &Op) -> Result<(), AppError> {
        let id = op.id();
        self.ssn.push(id.ssn as i32);
        self.sum.push(to_i64(id.sum, "sum")?);
        self.sid.push(to_i64(id.sid.0, "site id")?);
        self.seq.push(to_i64(id.seq, "seq")?);
        let (kind, len, value, reference, targets) = match op {
            Op::Insert { after, text, .. } => {
                let len = text.chars().count();
                (
                    "insert",
                    len,
                    Some(text.clone()),
                    after.map(|a| (Some(a.ssn), Some(a.sum), a.sid.0, a.seq)),
                    None,
                )
            }
            Op::Delete { targets, .. } => {
                let json =
                    serde_json::to_value(targets).map_err(|e| AppError::Internal(e.to_string()))?;
                ("delete", 1, None, None, Some(json))
            }
            Op::Update { target, value, .. } => (
                "update",
                1,
                Some(value.to_string()),
                Some((None, None, target.sid.0, target.seq)),
                None,
            ),
        };
        self.kind.push(kind);
        self.len
            .push(i32::try_from(len).map_err(|_| AppError::TooLarge("operation too long".into()))?);
        self.value.push(value);
        match reference {
            Some((ssn, sum, sid, seq)) => {
                self.ref_ssn.push(ssn.map(|s| s as i32));
                self.ref_sum
                    .push(sum.map(|s| to_i64(s, "sum")).transpose()?);
                self.ref_sid.push(Some(to_i64(sid, "site id")?));
                self.ref_seq.push(Some(to_i64(seq, "seq")?));
            }
            None => {
                self.ref_ssn.push(None);
                self.ref_sum.push(None);
                self.ref_sid.push(None);
                self.ref_seq.push(None);
            }
        }
        self.targets.push(targets);
        Ok(())
    }
}

fn bad_row(what: &str) -> AppError {
    AppError::Internal(format!("stored operation is malformed: {what}"))
}

/// Rebuilds an op from a row with `OP_COLUMNS`.
fn op_from_row(row: &Row) -> Result<Op, AppError> {
    let s4 = |ssn: i32, sum: i64, sid: i64, seq: i64| S4Vector {
        ssn: ssn as u32,
        sum: sum as u64,
        sid: SiteId(sid as u64),
        seq: seq as u64,
    };
    let id = s4(
        row.get("ssn"),
        row.get("sum"),
        row.get("sid"),
        row.get("seq"),
    );
    let kind: &str = row.get("kind");
    Ok(match kind {
        "insert" => {
            let after = match (
                row.get::<_, Option<i32>>("ref_ssn"),
                row.get::<_, Option<i64>>("ref_sum"),
                row.get::<_, Option<i64>>("ref_sid"),
                row.get::<_, Option<i64>>("ref_seq"),
            ) {
                (Some(a), Some(b), Some(c), Some(d)) => Some(s4(a, b, c, d)),
                (None, None, None, None) => None,
                _ => return Err(bad_row("partial reference")),
            };
            Op::Insert {
                id,
                after,
                text: row
                    .get::<_, Option<String>>("value")
                    .ok_or_else(|| bad_row("insert without text"))?,
            }
        }
        "delete" => {
            let json: serde_json::Value = row
                .get::<_, Option<serde_json::Value>>("targets")
                .ok_or_else(|| bad_row("delete without targets"))?;
            let targets: Vec<IdRange> =
                serde_json::from_value(json).map_err(|e| bad_row(&e.to_string()))?;
            Op::Delete { id, targets }
        }
        "update" => {
            let value: String = row
                .get::<_, Option<String>>("value")
                .ok_or_else(|| bad_row("update without value"))?;
            let mut chars = value.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return Err(bad_row("update value is not one char"));
            };
            let (Some(sid), Some(seq)) = (
                row.get::<_, Option<i64>>("ref_sid"),
                row.get::<_, Option<i64>>("ref_seq"),
            ) else {
                return Err(bad_row("update without target"));
            };
            Op::Update {
                id,
                target: CharId {
                    sid: SiteId(sid as u64),
                    seq: seq as u64,
                },
                value: c,
            }
        }
        other => return Err(bad_row(&format!("unknown kind {other}"))),
    })
}

fn waiting_op(row: &Row) -> Result<Op, AppError> {
    let json: serde_json::Value = row.get("waiting");
    serde_json::from_value(json).map_err(|e| bad_row(&e.to_string()))
}

/// `TAIL`/`LOAD_TAIL` rows, split.
struct TailRows {
    /// Log entries, in log order.
    ops: Vec<Op>,
    /// The position after the last entry (at least the `next_pos` given).
    next_pos: i64,
    /// Waiting ops.
    waiting: Vec<Op>,
    /// `LOAD_TAIL`'s starting position.
    from: Option<i64>,
}

impl TailRows {
    /// The tail the port's callers see.
    fn tail(self) -> Tail {
        Tail {
            ops: self.ops,
            next_pos: self.next_pos,
            waiting: self.waiting,
        }
    }
}

/// Splits `TAIL`/`LOAD_TAIL` rows into log ops (with the position after the last) and waiting ops.
fn split_tail(rows: &[Row], mut next_pos: i64) -> Result<TailRows, AppError> {
    let mut ops = Vec::new();
    let mut waiting = Vec::new();
    let mut from = None;
    for row in rows {
        match row.get::<_, i32>("src") {
            0 => from = row.get::<_, Option<i64>>("log_pos"),
            1 => {
                ops.push(op_from_row(row)?);
                next_pos = next_pos.max(row.get::<_, i64>("log_pos") + 1);
            }
            _ => waiting.push(waiting_op(row)?),
        }
    }
    Ok(TailRows {
        ops,
        next_pos,
        waiting,
        from,
    })
}

/// Refuses batches whose ops overlap each other (the statement only checks stored rows).
fn check_batch(ops: &[Op]) -> Result<(), AppError> {
    let mut ranges: Vec<(SiteId, u64, u64)> = ops
        .iter()
        .map(|op| (op.site(), op.id().seq, op.id().seq + op.seq_len()))
        .collect();
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        if w[0].0 == w[1].0 && w[1].1 < w[0].2 {
            return Err(AppError::Conflict(format!(
                "the batch uses id {}:{} twice",
                w[1].0, w[1].1
            )));
        }
    }
    Ok(())
}

/// A plan's values as statement parameters.
struct PlanColumns {
    ops: Columns,
    unwait_sid: Vec<i64>,
    unwait_seq: Vec<i64>,
    wait_sid: Vec<i64>,
    wait_seq: Vec<i64>,
    wait_op: Vec<serde_json::Value>,
    outbox: Option<serde_json::Value>,
}

impl PlanColumns {
    fn new(plan: &Plan) -> Result<Self, AppError> {
        check_batch(&plan.ops)?;
        let mut ops = Columns::default();
        for op in &plan.ops {
            ops.push(op)?;
        }
        let json = |e: serde_json::Error| AppError::Internal(e.to_string());
        Ok(PlanColumns {
            ops,
            unwait_sid: plan
                .waiting_remove
                .iter()
                .map(|i| to_i64(i.sid.0, "site id"))
                .collect::<Result<_, _>>()?,
            unwait_seq: plan
                .waiting_remove
                .iter()
                .map(|i| to_i64(i.seq, "seq"))
                .collect::<Result<_, _>>()?,
            wait_sid: plan
                .waiting_add
                .iter()
                .map(|o| to_i64(o.site().0, "site id"))
                .collect::<Result<_, _>>()?,
            wait_seq: plan
                .waiting_add
                .iter()
                .map(|o| to_i64(o.id().seq, "seq"))
                .collect::<Result<_, _>>()?,
            wait_op: plan
                .waiting_add
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()
                .map_err(json)?,
            outbox: plan
                .outbox
                .as_ref()
                .map(serde_json::to_value)
                .transpose()
                .map_err(json)?,
        })
    }
}

impl PgDocumentStore {
    /// Runs `APPEND` in `tx`, which must hold the document's row lock.
    pub(super) async fn append_in_tx(
        &self,
        tx: &Transaction<'_>,
        id: DocumentId,
        origin: ReplicaId,
        plan: &Plan,
    ) -> Result<Appended, AppError> {
        let PlanColumns {
            ops: c,
            unwait_sid,
            unwait_seq,
            wait_sid,
            wait_seq,
            wait_op,
            outbox,
        } = PlanColumns::new(plan)?;
        let origin = origin.0 as i32;
        let append = tx.prepare_cached(APPEND).await?;
        let row = tx
            .query_one(
                &append,
                &[
                    &id.0,
                    &c.ssn,
                    &c.sum,
                    &c.sid,
                    &c.seq,
                    &c.kind,
                    &c.len,
                    &c.value,
                    &c.ref_ssn,
                    &c.ref_sum,
                    &c.ref_sid,
                    &c.ref_seq,
                    &c.targets,
                    &origin,
                    &unwait_sid,
                    &unwait_seq,
                    &wait_sid,
                    &wait_seq,
                    &wait_op,
                    &outbox,
                ],
            )
            .await?;
        let conflicts: Vec<i64> = row.get("conflicts");
        if let Some(&ord) = conflicts.first() {
            let op = &plan.ops[(ord - 1) as usize];
            return Err(AppError::Conflict(format!(
                "op {} reuses an existing identifier with different content",
                op.id().id()
            )));
        }
        let next_pos: Option<i64> = row.get("next_pos");
        let next_pos = next_pos.ok_or_else(|| AppError::not_found(format!("document {id}")))?;
        let inserted = row.get::<_, i64>("inserted") as u64;
        Ok(Appended {
            start: next_pos - inserted as i64,
            next_pos,
            outbox_id: row.get("outbox_id"),
            inserted,
            duplicates: row.get::<_, i64>("duplicates") as u64,
        })
    }

    /// Writes a plan made against the tail under the document's lock: its ops are new (the
    /// caller's replica, up to date under the lock, refused or dropped the rest), so plain
    /// inserts at positions `log_len ..` suffice, sent together in one round trip. The primary
    /// key still refuses a reused id, failing the transaction.
    async fn append_planned(
        &self,
        tx: &Transaction<'_>,
        id: DocumentId,
        origin: ReplicaId,
        log_len: i64,
        plan: &Plan,
    ) -> Result<Appended, AppError> {
        let p = PlanColumns::new(plan)?;
        let c = &p.ops;
        let n = plan.ops.len() as i64;
        let origin = origin.0 as i32;
        let (insert, bump) =
            try_join(tx.prepare_cached(INSERT_OPS), tx.prepare_cached(BUMP)).await?;
        // Every write moves the log length on, so optimistic writers see it (waiting-only
        // writes leave a gap in the positions, which readers tolerate).
        let advance = n.max(1);
        let bump_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&id.0, &advance];
        let insert_params: [&(dyn tokio_postgres::types::ToSql + Sync); 15] = [
            &id.0, &c.ssn, &c.sum, &c.sid, &c.seq, &c.kind, &c.len, &c.value, &c.ref_ssn,
            &c.ref_sum, &c.ref_sid, &c.ref_seq, &c.targets, &log_len, &origin,
        ];
        let ops = async {
            let bumped = tx.execute(&bump, &bump_params);
            if n > 0 {
                let inserted = tx.execute(&insert, &insert_params);
                try_join(inserted, bumped).await?;
            } else {
                bumped.await?;
            }
            Ok::<_, AppError>(())
        };
        let waiting = async {
            if !p.unwait_sid.is_empty() {
                tx.execute(
                    "DELETE FROM waiting_ops w USING unnest($2::int8[], $3::int8[]) AS r(sid, seq) WHERE w.document_id = $1 AND w.sid = r.sid AND w.seq = r.seq",
                    &[&id.0, &p.unwait_sid, &p.unwait_seq],
                )
                .await?;
            }
            if !p.wait_sid.is_empty() {
                tx.execute(
                    "INSERT INTO waiting_ops (document_id, sid, seq, op) SELECT $1, * FROM unnest($2::int8[], $3::int8[], $4::jsonb[]) ON CONFLICT DO NOTHING",
                    &[&id.0, &p.wait_sid, &p.wait_seq, &p.wait_op],
                )
                .await?;
            }
            Ok::<_, AppError>(())
        };
        let outbox = async {
            match &p.outbox {
                Some(payload) => {
                    let row = tx.query_one("INSERT INTO outbox (document_id, payload) VALUES ($1, $2) RETURNING id", &[&id.0, payload]).await?;
                    Ok::<_, AppError>(Some(row.get::<_, i64>(0)))
                }
                None => Ok(None),
            }
        };
        let key = async {
            if let Some(k) = &plan.key {
                tx.execute(
                    "INSERT INTO idempotency_keys (document_id, user_id, key, request_hash, answer) VALUES ($1, $2, $3, $4, $5)",
                    &[&id.0, &k.user.0, &k.key, &k.hash, &k.answer],
                )
                .await?;
            }
            Ok::<_, AppError>(())
        };
        let sent = async {
            if !plan.sent_outbox.is_empty() {
                tx.execute(
                    "DELETE FROM outbox WHERE id = ANY($1::int8[])",
                    &[&plan.sent_outbox],
                )
                .await?;
            }
            Ok::<_, AppError>(())
        };
        let ((), (), outbox_id, ((), ())) = futures_util::future::try_join4(
            ops,
            waiting,
            outbox,
            futures_util::future::try_join(key, sent),
        )
        .await?;
        Ok(Appended {
            start: log_len,
            next_pos: log_len + advance,
            outbox_id,
            inserted: n as u64,
            duplicates: 0,
        })
    }
}

impl OpLog for PgDocumentStore {
    /// [`Documents::access`](crate::ports::Documents::access) and the tail from `from`, pipelined on one connection:
    /// one round trip.
    async fn access_and_tail(
        &self,
        id: DocumentId,
        user: &UserId,
        from: i64,
    ) -> Result<(Option<(Document, Option<Role>)>, Tail), AppError> {
        let client = self.pool.get().await?;
        try_join(
            documents::access_on(&client, id, user),
            tail_on(&client, id, from),
        )
        .await
    }

    async fn access_with_session_and_tail(
        &self,
        id: DocumentId,
        user: &UserId,
        site: SiteId,
        tail_from: Option<i64>,
    ) -> Result<(Option<(crate::ports::Access, i64)>, Option<Tail>), AppError> {
        let client = self.pool.get().await?;
        let access = documents::access_with_session_on(&client, id, user, site);
        let Some(from) = tail_from else {
            return Ok((access.await?, None));
        };
        // Two statements pipelined: the access row carries the log length the tail needs.
        let tail = client.prepare_cached(TAIL).await?;
        let (access, rows) = try_join(access, async {
            Ok(client.query(&tail, &[&id.0, &from]).await?)
        })
        .await?;
        let Some((access, log_len)) = access else {
            return Ok((None, None));
        };
        let tail = split_tail(&rows, log_len.max(from))?.tail();
        Ok((Some((access, log_len)), Some(tail)))
    }

    async fn append<F>(
        &self,
        id: DocumentId,
        known_pos: i64,
        origin: ReplicaId,
        plan: F,
    ) -> Result<Appended, AppError>
    where
        F: FnOnce(Tail) -> Result<Plan, AppError> + Send,
    {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Pipelined: the server runs the tail query after the lock is granted, so it sees every
        // row committed before. `plan` runs exactly once; on any failure the transaction rolls
        // back and the caller discards what `plan` changed in memory.
        let (lock, tail) = try_join(tx.prepare_cached(LOCK), tx.prepare_cached(TAIL)).await?;
        let (lock, rows) = try_join(
            tx.query_opt(&lock, &[&id.0]),
            tx.query(&tail, &[&id.0, &known_pos]),
        )
        .await?;
        let Some(lock) = lock else {
            return Err(AppError::not_found(format!("document {id}")));
        };
        let log_len: i64 = lock.get(0);
        let tail = split_tail(&rows, log_len)?.tail();
        let next_pos = tail.next_pos;
        let plan = plan(tail)?;
        if plan.is_empty() {
            tx.commit().await?;
            return Ok(Appended {
                start: next_pos,
                next_pos,
                outbox_id: None,
                inserted: 0,
                duplicates: 0,
            });
        }
        let appended = self.append_planned(&tx, id, origin, log_len, &plan).await?;
        tx.commit().await?;
        Ok(appended)
    }

    async fn try_append(
        &self,
        id: DocumentId,
        known_pos: Option<i64>,
        origin: ReplicaId,
        plan: &Plan,
    ) -> Result<Option<Appended>, AppError> {
        if plan.is_empty()
            && let Some(known_pos) = known_pos
        {
            return Ok(Some(Appended {
                start: known_pos,
                next_pos: known_pos,
                outbox_id: None,
                inserted: 0,
                duplicates: 0,
            }));
        }
        let PlanColumns {
            ops: c,
            unwait_sid,
            unwait_seq,
            wait_sid,
            wait_seq,
            wait_op,
            outbox,
        } = PlanColumns::new(plan)?;
        let n = plan.ops.len() as i64;
        let waiting = !plan.waiting_add.is_empty() || !plan.waiting_remove.is_empty();
        let sent = !plan.sent_outbox.is_empty();
        let sql = try_append_sql(waiting, plan.outbox.is_some(), plan.key.is_some(), sent);
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(&sql).await?;
        let advance = n.max(1);
        // -1: unchecked (see `try_append_sql`).
        let known = known_pos.unwrap_or(-1);
        let origin = origin.0 as i32;
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
            &id.0, &c.ssn, &c.sum, &c.sid, &c.seq, &c.kind, &c.len, &c.value, &c.ref_ssn,
            &c.ref_sum, &c.ref_sid, &c.ref_seq, &c.targets, &known, &origin, &advance,
        ];
        if waiting {
            let extra: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
                [&unwait_sid, &unwait_seq, &wait_sid, &wait_seq, &wait_op];
            params.extend(extra);
        }
        if let Some(o) = &outbox {
            params.push(o);
        }
        if let Some(k) = &plan.key {
            params.extend([
                &k.user.0 as &(dyn tokio_postgres::types::ToSql + Sync),
                &k.key,
                &k.hash,
                &k.answer,
            ]);
        }
        if sent {
            params.push(&plan.sent_outbox);
        }
        let row = match client.query_one(&stmt, &params).await {
            Ok(row) => row,
            // An op id stored already (only possible unchecked): decided again under the lock.
            Err(e) if e.as_db_error().and_then(|d| d.constraint()) == Some("operations_pkey") => {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if !row.get::<_, bool>("ok") {
            return Ok(None);
        }
        let start: i64 = row.get("start");
        Ok(Some(Appended {
            start,
            next_pos: start + advance,
            outbox_id: row.get("outbox_id"),
            inserted: n as u64,
            duplicates: 0,
        }))
    }

    async fn append_ops(
        &self,
        id: DocumentId,
        ops: &[Op],
        origin: ReplicaId,
    ) -> Result<Appended, AppError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if tx
            .query_opt(
                "SELECT 1 FROM documents WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
                &[&id.0],
            )
            .await?
            .is_none()
        {
            return Err(AppError::not_found(format!("document {id}")));
        }
        let plan = Plan {
            ops: ops.to_vec(),
            ..Plan::default()
        };
        let appended = self.append_in_tx(&tx, id, origin, &plan).await?;
        tx.commit().await?;
        Ok(appended)
    }

    async fn load(&self, id: DocumentId) -> Result<Option<Loaded>, AppError> {
        let client = self.pool.get().await?;
        for _ in 0..3 {
            let meta = format!(
                "SELECT {}, d.log_len, s.state, s.log_pos AS snap_pos FROM documents d
                 LEFT JOIN LATERAL (SELECT state, log_pos FROM document_snapshots WHERE document_id = d.id ORDER BY version DESC LIMIT 1) s ON true
                 WHERE d.id = $1",
                documents::COLUMNS
            );
            let (meta, tail) = try_join(
                client.prepare_cached(&meta),
                client.prepare_cached(LOAD_TAIL),
            )
            .await?;
            let (meta, rows) = try_join(
                client.query_opt(&meta, &[&id.0]),
                client.query(&tail, &[&id.0]),
            )
            .await?;
            let Some(meta) = meta else { return Ok(None) };
            let snap_pos: i64 = meta.get::<_, Option<i64>>("snap_pos").unwrap_or(0);
            let TailRows {
                ops: tail,
                next_pos,
                waiting,
                from,
            } = split_tail(&rows, meta.get::<_, i64>("log_len").max(snap_pos))?;
            if from != Some(snap_pos) {
                // A compaction committed between the two queries: read again.
                continue;
            }
            return Ok(Some(Loaded {
                document: documents::document(&meta),
                snapshot: meta.get("state"),
                snapshot_pos: snap_pos,
                tail,
                next_pos,
                waiting,
            }));
        }
        Err(AppError::Unavailable(
            "the document kept changing while loading".into(),
        ))
    }

    async fn tail(&self, id: DocumentId, from: i64) -> Result<Tail, AppError> {
        let client = self.pool.get().await?;
        tail_on(&client, id, from).await
    }

    async fn ops_since(
        &self,
        id: DocumentId,
        since: &VersionVector,
        cursor: i64,
        limit: usize,
    ) -> Result<OpsPage, AppError> {
        let client = self.pool.get().await?;
        let since_json =
            serde_json::to_value(since).map_err(|e| AppError::Internal(e.to_string()))?;
        let limit = limit.clamp(1, 10_000) as i64;
        let rows = client
            .query(
                &format!(
                    "SELECT log_pos, {OP_COLUMNS} FROM operations
                     WHERE document_id = $1 AND log_pos >= $2 AND seq + len - 1 > COALESCE(($3::jsonb ->> sid::text)::int8, 0)
                     ORDER BY log_pos LIMIT $4"
                ),
                &[&id.0, &cursor, &since_json, &limit],
            )
            .await?;
        let mut ops = Vec::with_capacity(rows.len());
        let mut bytes = 0;
        let mut next_cursor = None;
        for row in &rows {
            let op = op_from_row(row)?;
            bytes += json_len(&op);
            if bytes > MAX_PAGE_BYTES && !ops.is_empty() {
                // The rest goes in the next page: every answer stays far below Lambda's 6 MB.
                next_cursor = Some(row.get::<_, i64>("log_pos"));
                break;
            }
            let have = since.get(op.site());
            ops.push(match op {
                // Trim the part of a run the caller has.
                Op::Insert { id, text, .. } if id.seq <= have => {
                    let skip = have - id.seq + 1;
                    match (id.offset(skip), id.offset(skip - 1)) {
                        (Some(first), Some(prev)) => Op::Insert {
                            id: first,
                            after: Some(prev),
                            text: text.chars().skip(skip as usize).collect(),
                        },
                        _ => return Err(bad_row("run offsets overflow")),
                    }
                }
                other => other,
            });
        }
        if next_cursor.is_none() && rows.len() as i64 == limit {
            next_cursor = rows.last().map(|r| r.get::<_, i64>("log_pos") + 1);
        }
        Ok(OpsPage { ops, next_cursor })
    }

    async fn expire_waiting(
        &self,
        replica: crate::ids::ReplicaId,
        max_age_secs: i64,
    ) -> Result<Vec<DocumentId>, AppError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "DELETE FROM waiting_ops
                 WHERE received_at < now() - make_interval(secs => $2::float8)
                   AND (sid >> $3::int4) = $1::int8
                 RETURNING document_id",
                &[
                    &(replica.0 as i64),
                    &(max_age_secs as f64),
                    &(crate::ids::SITE_COUNTER_BITS as i32),
                ],
            )
            .await?;
        let mut docs: Vec<DocumentId> = rows.iter().map(|r| DocumentId(r.get(0))).collect();
        docs.sort_by_key(|d| d.0);
        docs.dedup();
        Ok(docs)
    }
}

/// The operations of `id` at or after `from` and its waiting ops, on `client` (two statements,
/// pipelined).
pub(crate) async fn tail_on(
    client: &deadpool_postgres::Client,
    id: DocumentId,
    from: i64,
) -> Result<Tail, AppError> {
    {
        let (len, tail) = try_join(
            client.prepare_cached("SELECT log_len FROM documents WHERE id = $1"),
            client.prepare_cached(TAIL),
        )
        .await?;
        let (len, rows) = try_join(
            client.query_opt(&len, &[&id.0]),
            client.query(&tail, &[&id.0, &from]),
        )
        .await?;
        let Some(len) = len else {
            return Err(AppError::not_found(format!("document {id}")));
        };
        Ok(split_tail(&rows, len.get::<_, i64>(0).max(from))?.tail())
    }
}

/// The length of `op`'s JSON form, without building it.
fn json_len(op: &Op) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, op);
    c.0 + 1
}
