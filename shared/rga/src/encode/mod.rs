//! The binary snapshot of a whole replica: sites, the text of every inserted character, the
//! operation log (with each insert's reference, so that catch-up after decoding sends the same
//! operations) and the waiting operations.
//!
//! Layout (integers are LEB128 varints, `z` marks zigzag-signed ones; a *block* is
//! `raw length, kind (0 raw | 1 LZ4), [packed length], bytes`, see `block.rs`):
//!
//! ```text
//! "RGA" 3 | ssn | sites: n, sid* | text: char count, block of UTF-8 (lv order)
//!         | records: block of (n, head*, rest*) | waiting ops: n, op*
//! record  = head, then in `rest`: [ssn] [agent] [z sum - predicted] body (the n head bytes come
//!           first, together, because they repeat and compress well side by side)
//!   head  = kind (bits 0-1: insert, delete, update, delete run) | ssn changed (bit 2)
//!         | backwards (bit 3) | sum given (bit 4) | agent + 1 when below 7, else 0 (bits 5-7)
//!   insert      : len, parent (0: the head, else z(parent - cursor) + 1)
//!   delete      : n, (z start - last target, len)*  (with the backwards bit: one char,
//!                 z start - last target only)
//!   update      : target lv, value
//!   delete run  : count, z start - last target   (count one-char deletes by one site with
//!                                                 consecutive sums, each next to the previous)
//! ```
//!
//! The text comes first, so that every length a record claims is bounded by characters that
//! exist, and blocks claim at most a fixed multiple of their compressed size: decoding allocates
//! at most [`DECODE_ALLOC_FACTOR`] times its input (plus a constant), whatever the bytes. Sequence numbers are not stored (a site's
//! operations appear in sequence order, so the decoder counts them), and neither are most sums:
//! the *predicted* sum, `max(operations so far, highest sum so far) + 1`, is exactly what a local
//! edit uses, so only ops from elsewhere spell theirs out. `cursor` is the last lv a record
//! touched, and references are stored relative to it (typing resumes near where it stopped).
//! Nor is the document order stored: it is a function of the references and precedences (the
//! preorder of the insertion tree, siblings by descending precedence, see `order.rs`), which the
//! decoder recomputes, so no stored order can contradict the RGA rules. Decoding validates the
//! S4Vector rules, the limits, references and targets, so arbitrary bytes give a `DecodeError`,
//! never a panic or an inconsistent replica.

mod batch;
pub use batch::{decode_ops, encode_ops};
mod block;
mod delete;
mod insert;
mod op;
mod order;
pub(crate) use order::document_order;
mod update;
mod varint;
mod writer;

use crate::error::DecodeError;
use crate::id::{Precedence, S4Vector, SiteId};
use crate::log::{DelTargets, Rec};
use crate::replica::Rga;
use crate::tree::Tree;
use varint::{Reader, malformed, put};

/// Decoding `n` bytes allocates at most `DECODE_ALLOC_FACTOR * n + DECODE_ALLOC_BASE` bytes
/// (the decode tests measure it on random, mutated and hand-made hostile snapshots).
pub const DECODE_ALLOC_FACTOR: usize = 128;
/// See [`DECODE_ALLOC_FACTOR`].
pub const DECODE_ALLOC_BASE: usize = 1 << 20;

const MAGIC: &[u8; 3] = b"RGA";
const FORMAT: u8 = 3;
const K_INSERT: u8 = 0;
const K_DELETE: u8 = 1;
const K_UPDATE: u8 = 2;
const K_DELETE_RUN: u8 = 3;
const SSN_CHANGED: u8 = 1 << 2;
const BACKWARDS: u8 = 1 << 3;
const SUM_GIVEN: u8 = 1 << 4;
const AGENT_SHIFT: u8 = 5;
/// Agents below this are written in the head byte.
const INLINE_AGENTS: u32 = 7;

/// The state both sides of the record section keep in step: what the next record's sum and
/// references are relative to.
#[derive(Clone, Copy, Debug, Default)]
struct Context {
    ssn: u32,
    /// The last lv a record touched.
    cursor: u32,
    /// Where the last delete's targets ended.
    last_target: u32,
    /// Operations so far.
    ops: u64,
    /// Highest sum so far.
    max_sum: u64,
}

impl Context {
    fn predicted_sum(&self) -> u64 {
        self.ops.max(self.max_sum).saturating_add(1)
    }

    /// Accounts for a record of `ops` operations whose last sum is `last_sum`.
    fn advance(&mut self, ops: u64, last_sum: u64) {
        self.ops += ops;
        self.max_sum = self.max_sum.max(last_sum);
    }

    /// The end of a delete run's targets, and the cursor after it.
    fn after_run(&mut self, start: u32, n: u32, backwards: bool) {
        let last = if backwards {
            start - (n - 1)
        } else {
            start + (n - 1)
        };
        self.last_target = last + 1;
        self.cursor = last;
    }
}

/// The header of a decoded record.
struct Head {
    kind: u8,
    backwards: bool,
    agent: u32,
    /// The S4Vector of the record's first operation.
    id: S4Vector,
}

/// Everything the record readers share while decoding.
struct Decoder {
    doc: Rga,
    cx: Context,
    /// Characters the text section holds: no record may claim more.
    chars: u32,
    /// The run of each lv read so far, for constant-time lookups while validating.
    lv_run: Vec<u32>,
    /// Whether each lv is deleted, filled as delete records are read.
    deleted: Vec<bool>,
}

impl Decoder {
    /// Reads a record header and checks the S4Vector rules that concern it.
    fn head(&mut self, byte: u8, r: &mut Reader<'_>) -> Result<Head, DecodeError> {
        let kind = byte & 3;
        if byte & SSN_CHANGED != 0 {
            self.cx.ssn = r.u32()?;
            if self.cx.ssn > self.doc.ssn {
                return Err(malformed("record from an unknown session"));
            }
        }
        let agent = match (byte >> AGENT_SHIFT) as u32 {
            0 => r.u32()?,
            a => a - 1,
        };
        let Some(a) = self.doc.log.agents.get(agent as usize) else {
            return Err(malformed("record names an unknown site"));
        };
        let predicted = self.cx.predicted_sum();
        let sum = if byte & SUM_GIVEN != 0 {
            (predicted as i64).wrapping_add(r.i64()?) as u64
        } else {
            predicted
        };
        let id = S4Vector {
            ssn: self.cx.ssn,
            sum,
            sid: a.sid,
            seq: a.next_seq,
        };
        let max = self.doc.limits.max_id;
        if id.sum > max || id.seq > max || id.sid.0 > max {
            return Err(malformed("identifier out of range"));
        }
        if sum < id.seq {
            return Err(malformed("seq exceeds sum"));
        }
        if a.last.is_some_and(|last| (id.ssn, sum) <= last) {
            return Err(malformed("a site's precedence must rise"));
        }
        Ok(Head {
            kind,
            backwards: byte & BACKWARDS != 0,
            agent,
            id,
        })
    }

    /// The precedence of the character at `lv` (which must have been read).
    fn prec(&self, lv: u32) -> Precedence {
        self.doc.log.char_prec(self.lv_run[lv as usize], lv)
    }

    /// Refuses a sum that jumps more than the limit above the record's causes.
    fn check_step(&self, head: &Head, causes: u64) -> Result<(), DecodeError> {
        let own = self.doc.log.agents[head.agent as usize]
            .last
            .map_or(0, |l| l.1);
        if head.id.sum > causes.max(own).saturating_add(self.doc.limits.max_sum_step) {
            return Err(malformed("a sum jumps too far above its causes"));
        }
        Ok(())
    }

    /// Checks a target: inside one run, already inserted, older than the operation; marks it
    /// deleted (counting repeated deletes).
    fn target(&mut self, start: u32, len: u32, op: Precedence) -> Result<(), DecodeError> {
        let end = start
            .checked_add(len)
            .filter(|&e| len > 0 && e as usize <= self.lv_run.len())
            .ok_or(malformed("target out of range"))?;
        let run = self.lv_run[start as usize];
        if self.lv_run[end as usize - 1] != run {
            return Err(malformed("target crosses runs"));
        }
        if self.prec(end - 1) >= op {
            return Err(malformed("operation does not exceed its target"));
        }
        for lv in start..end {
            if std::mem::replace(&mut self.deleted[lv as usize], true) {
                *self.doc.log.deleted_again.entry(lv).or_insert(1) += 1;
            }
        }
        Ok(())
    }
}

impl Rga {
    /// Encodes the whole replica. [`Rga::decode`] restores an equal replica.
    pub fn encode(&self) -> Vec<u8> {
        let log = &self.log;
        let mut out = Vec::with_capacity(self.content.len() as usize + 64);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT);
        put(&mut out, self.ssn as u64);
        put(&mut out, log.agents.len() as u64);
        for a in &log.agents {
            put(&mut out, a.sid.0);
        }
        put(&mut out, self.content.len() as u64);
        block::write(
            &mut out,
            self.content.to_utf8().as_bytes(),
            block::TEXT_RATIO,
        );
        // The log in application order.
        let mut recs: Vec<(u32, Rec)> =
            Vec::with_capacity(log.runs.len() + log.deletes.len() + log.updates.len());
        recs.extend(
            log.runs
                .iter()
                .enumerate()
                .map(|(i, r)| (r.order, Rec::Insert(i as u32))),
        );
        recs.extend(
            log.deletes
                .iter()
                .enumerate()
                .map(|(i, d)| (d.order, Rec::Delete(i as u32))),
        );
        recs.extend(
            log.updates
                .iter()
                .enumerate()
                .map(|(i, u)| (u.order, Rec::Update(i as u32))),
        );
        recs.sort_unstable_by_key(|r| r.0);
        let mut w = writer::RecordWriter::new(recs.len());
        for (_, rec) in recs {
            match rec {
                Rec::Insert(r) => w.insert(&log.runs[r as usize]),
                Rec::Delete(d) => {
                    let d = &log.deletes[d as usize];
                    match d.targets {
                        DelTargets::Run {
                            start,
                            n,
                            backwards,
                        } => w.delete_run(d, start, n, backwards),
                        DelTargets::List { .. } => {
                            w.delete_list(d, log.delete_targets(d, 0).as_slice())
                        }
                    }
                }
                Rec::Update(u) => w.update(&log.updates[u as usize]),
            }
        }
        block::write(&mut out, &w.finish(), block::RECORDS_RATIO);
        let pending: Vec<&crate::Op> = self.pending.ops().collect();
        put(&mut out, pending.len() as u64);
        for op in pending {
            op::write(op, &mut out);
        }
        out
    }

    /// Decodes a replica written by [`Rga::encode`]. Any malformed input is an error; decoding
    /// allocates at most a small multiple of the input (see the module docs).
    pub fn decode(bytes: &[u8]) -> Result<Rga, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.bytes(3).map_err(|_| DecodeError::BadMagic)? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let format = r.byte()?;
        if format != FORMAT {
            return Err(DecodeError::UnsupportedVersion(format));
        }
        let mut doc = Rga::with_session(r.u32()?);
        let n_agents = r.count(1)?;
        doc.log.agents.reserve_exact(n_agents);
        for _ in 0..n_agents {
            if !doc.log.add_site(SiteId(r.u64()?)) {
                return Err(malformed("site listed twice"));
            }
        }
        // The text first: it bounds every length the records claim.
        let chars = r.u64()?;
        if chars > doc.limits.max_elements {
            return Err(malformed("more characters than a replica holds"));
        }
        let text = block::read(&mut r, block::TEXT_RATIO)?;
        let text = std::str::from_utf8(&text).map_err(|_| malformed("text is not UTF-8"))?;
        doc.content = crate::content::Content::with_capacity(text.len());
        if doc.content.push_str(text) as u64 != chars {
            return Err(malformed(
                "text length differs from the inserted characters",
            ));
        }
        let chars = chars as u32;
        let records = block::read(&mut r, block::RECORDS_RATIO)?;
        let mut d = Decoder {
            doc,
            cx: Context::default(),
            chars,
            lv_run: Vec::with_capacity(chars as usize),
            deleted: vec![false; chars as usize],
        };
        let mut rr = Reader::new(&records);
        let n_records = rr.count(2)?;
        let heads = rr.bytes(n_records)?;
        for &byte in heads {
            let head = d.head(byte, &mut rr)?;
            match head.kind {
                K_INSERT => insert::read(&mut d, &mut rr, &head)?,
                K_DELETE => delete::read_list(&mut d, &mut rr, &head)?,
                K_DELETE_RUN => delete::read_run(&mut d, &mut rr, &head)?,
                _ => update::read(&mut d, &mut rr, &head)?,
            }
        }
        rr.finish("trailing bytes after the records")?;
        let lv_count = d.lv_run.len() as u32;
        if lv_count != chars {
            return Err(malformed(
                "text length differs from the inserted characters",
            ));
        }
        let Decoder {
            mut doc,
            lv_run,
            deleted,
            ..
        } = d;
        let spans = order::document_order(&doc.log, &lv_run, &deleted);
        drop(lv_run);
        drop(deleted);
        doc.tree = Tree::from_spans(&spans, lv_count, &doc.content);
        drop(spans);
        doc.log.shrink_to_fit();
        let n_pending = r.count(2)?;
        let mut pending = Vec::with_capacity(n_pending);
        for _ in 0..n_pending {
            pending.push(op::read(&mut r)?);
        }
        r.finish("trailing bytes")?;
        for op in pending {
            doc.apply(op)
                .map_err(|_| malformed("invalid waiting operation"))?;
        }
        Ok(doc)
    }
}
