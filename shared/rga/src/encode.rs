//! The binary snapshot of a whole replica: sites, the operation log (with each insert's
//! reference, so that catch-up after decoding sends the same operations), the text of every
//! inserted character (LZ4-compressed), and the waiting operations.
//!
//! Layout (integers are LEB128 varints, `z` marks zigzag-signed ones):
//!
//! ```text
//! "RGA" 2 | ssn | sites: n, sid* | records: byte length, compressed length, LZ4 block of
//!         (n, record*) | content: UTF-8 byte length, compressed length, LZ4 block
//!         | waiting ops: n, op*
//! record  = head byte (kind | ssn-changed << 2 | backwards << 3) [ssn] agent z-sum-delta body
//!   insert      : len, parent distance (0 = head)
//!   delete      : n, (z start delta, len)*
//!   update      : target lv, value
//!   delete run  : count, z target delta   (count one-char deletes by one site with consecutive
//!                                          sums, each next to the previous: backspacing)
//! ```
//!
//! Sequence numbers are not stored: a site's operations appear in sequence order, so the decoder
//! counts them. Nor is the document order: it is a function of the references and precedences
//! (the preorder of the insertion tree, siblings by descending precedence), which the decoder
//! recomputes per run in O(r log r) for r runs, so no stored order can contradict the RGA rules.
//! Decoding validates the S4Vector rules, references and targets, so arbitrary bytes give a
//! `DecodeError`, never a panic or an inconsistent replica.

use crate::error::DecodeError;
use crate::id::{CharId, IdRange, Precedence, S4Vector, SiteId};
use crate::log::{Agent, DelTargets, DeleteRec, Entry, InsertRun, Kind, LvRange, UpdateRec};
use crate::op::Op;
use crate::replica::Rga;
use crate::tree::{NONE, Span, Tree};

const MAGIC: &[u8; 3] = b"RGA";
const FORMAT: u8 = 2;
const K_INSERT: u8 = 0;
const K_DELETE: u8 = 1;
const K_UPDATE: u8 = 2;
const K_DELETE_RUN: u8 = 3;
const SSN_CHANGED: u8 = 1 << 2;
const BACKWARDS: u8 = 1 << 3;

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_z(out: &mut Vec<u8>, v: i64) {
    put(out, ((v << 1) ^ (v >> 63)) as u64);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = (b & 0x7f) as u64;
            if shift == 63 && bits > 1 {
                return Err(DecodeError::Malformed("varint overflows 64 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Malformed("varint longer than 10 bytes"))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.u64()?).map_err(|_| DecodeError::Malformed("value exceeds 32 bits"))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        let v = self.u64()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let b = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(b)
    }

    /// A count of items that each take at least one byte: bounded by the bytes left.
    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.u64()?;
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(DecodeError::Truncated);
        }
        Ok(n as usize)
    }
}

fn malformed(what: &'static str) -> DecodeError {
    DecodeError::Malformed(what)
}

/// Adds a signed delta to an unsigned base, refusing results outside `0..=u32::MAX`.
fn offset_u32(base: u32, delta: i64) -> Result<u32, DecodeError> {
    u32::try_from(base as i64 + delta).map_err(|_| malformed("offset out of range"))
}

#[derive(Clone, Copy)]
enum Rec {
    Insert(u32),
    Delete(u32),
    Update(u32),
}

impl Rga {
    /// Encodes the whole replica. [`Rga::decode`] restores an equal replica.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.content.len() * 2 + 64);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT);
        put(&mut out, self.ssn as u64);
        put(&mut out, self.agents.len() as u64);
        for a in &self.agents {
            put(&mut out, a.sid.0);
        }
        // The log in application order.
        let mut recs: Vec<(u32, Rec)> =
            Vec::with_capacity(self.runs.len() + self.deletes.len() + self.updates.len());
        recs.extend(
            self.runs
                .iter()
                .enumerate()
                .map(|(i, r)| (r.order, Rec::Insert(i as u32))),
        );
        recs.extend(
            self.deletes
                .iter()
                .enumerate()
                .map(|(i, d)| (d.order, Rec::Delete(i as u32))),
        );
        recs.extend(
            self.updates
                .iter()
                .enumerate()
                .map(|(i, u)| (u.order, Rec::Update(i as u32))),
        );
        recs.sort_unstable_by_key(|r| r.0);
        let mut records = Vec::new();
        let mut count = 0u64;
        let mut ssn = 0u32;
        let mut last_sum = vec![0u64; self.agents.len()];
        let mut last_target = 0u32;
        let mut i = 0;
        while i < recs.len() {
            count += 1;
            let (kind, agent, rec_ssn, sum) = match recs[i].1 {
                Rec::Insert(r) => {
                    let r = &self.runs[r as usize];
                    (K_INSERT, r.agent, r.ssn, r.sum)
                }
                Rec::Delete(d) => {
                    let d = &self.deletes[d as usize];
                    (K_DELETE, d.agent, d.ssn, d.sum)
                }
                Rec::Update(u) => {
                    let u = &self.updates[u as usize];
                    (K_UPDATE, u.agent, u.ssn, u.sum)
                }
            };
            let run = match recs[i].1 {
                Rec::Delete(d) => match self.deletes[d as usize].targets {
                    DelTargets::Run {
                        start,
                        n,
                        backwards,
                    } => Some((start, n, backwards)),
                    DelTargets::List { .. } => None,
                },
                _ => None,
            };
            let mut head = if run.is_some() { K_DELETE_RUN } else { kind };
            if rec_ssn != ssn {
                head |= SSN_CHANGED;
            }
            if run.is_some_and(|r| r.2) {
                head |= BACKWARDS;
            }
            records.push(head);
            if rec_ssn != ssn {
                put(&mut records, rec_ssn as u64);
                ssn = rec_ssn;
            }
            put(&mut records, agent as u64);
            put_z(
                &mut records,
                sum.wrapping_sub(last_sum[agent as usize]) as i64,
            );
            match recs[i].1 {
                Rec::Insert(r) => {
                    let r = &self.runs[r as usize];
                    put(&mut records, r.len as u64);
                    put(
                        &mut records,
                        if r.parent == NONE {
                            0
                        } else {
                            (r.lv - r.parent) as u64
                        },
                    );
                    last_sum[agent as usize] = r.sum + r.len as u64 - 1;
                }
                Rec::Delete(_) if run.is_some() => {
                    let (start, n, backwards) = run.unwrap_or_default();
                    put(&mut records, n as u64);
                    put_z(&mut records, start as i64 - last_target as i64);
                    last_target = if backwards {
                        start - (n - 1)
                    } else {
                        start + (n - 1)
                    } + 1;
                    last_sum[agent as usize] = sum + n as u64 - 1;
                }
                Rec::Delete(d) => {
                    let d = &self.deletes[d as usize];
                    let targets = self.delete_targets(d, 0);
                    put(&mut records, targets.as_slice().len() as u64);
                    for t in targets.as_slice() {
                        put_z(&mut records, t.start as i64 - last_target as i64);
                        put(&mut records, t.len as u64);
                        last_target = t.end();
                    }
                    last_sum[agent as usize] = sum;
                }
                Rec::Update(u) => {
                    let u = &self.updates[u as usize];
                    put(&mut records, u.target as u64);
                    put(&mut records, u.value as u64);
                    last_sum[agent as usize] = sum;
                }
            }
            i += 1;
        }
        let mut section = Vec::with_capacity(records.len() + 10);
        put(&mut section, count);
        section.extend_from_slice(&records);
        let packed = lz4_flex::block::compress(&section);
        put(&mut out, section.len() as u64);
        put(&mut out, packed.len() as u64);
        out.extend_from_slice(&packed);
        let text: String = self.content.iter().collect();
        let packed = lz4_flex::block::compress(text.as_bytes());
        put(&mut out, text.len() as u64);
        put(&mut out, packed.len() as u64);
        out.extend_from_slice(&packed);
        let pending: Vec<&Op> = self.pending.ops().collect();
        put(&mut out, pending.len() as u64);
        for op in pending {
            encode_op(op, &mut out);
        }
        out
    }

    /// Decodes a replica written by [`Rga::encode`]. Any malformed input is an error.
    pub fn decode(bytes: &[u8]) -> Result<Rga, DecodeError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        if r.bytes(3).map_err(|_| DecodeError::BadMagic)? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let format = r.byte()?;
        if format != FORMAT {
            return Err(DecodeError::UnsupportedVersion(format));
        }
        let mut doc = Rga::with_session(r.u32()?);
        let max_elements = doc.limits.max_elements;
        let n_agents = r.count()?;
        for _ in 0..n_agents {
            let sid = SiteId(r.u64()?);
            if doc.sites.insert(sid, doc.agents.len() as u32).is_some() {
                return Err(malformed("site listed twice"));
            }
            doc.agents.push(Agent {
                sid,
                next_seq: 1,
                last: None,
                entries: Vec::new(),
            });
        }
        let records_len = r.u64()?;
        let packed_len = r.count()?;
        // LZ4 expands at most 255-fold; refuse sizes no block could produce before allocating.
        if records_len > packed_len as u64 * 255 + 16 {
            return Err(malformed(
                "record section larger than its compressed form allows",
            ));
        }
        let records = lz4_flex::block::decompress(r.bytes(packed_len)?, records_len as usize)
            .map_err(|_| malformed("records do not decompress"))?;
        let outer = r;
        let mut r = Reader {
            buf: &records,
            pos: 0,
        };
        let n_records = r.count()?;
        let mut ssn = 0u32;
        let mut last_sum = vec![0u64; n_agents];
        let mut last_target = 0u32;
        let mut lv_count = 0u32;
        // The run of each lv, for constant-time lookups while validating.
        let mut lv_run: Vec<u32> = Vec::new();
        for _ in 0..n_records {
            let head = r.byte()?;
            if head & !(3 | SSN_CHANGED | BACKWARDS) != 0 {
                return Err(malformed("unknown record flags"));
            }
            if head & SSN_CHANGED != 0 {
                ssn = r.u32()?;
                if ssn > doc.ssn {
                    return Err(malformed("record from an unknown session"));
                }
            }
            let agent = r.u32()?;
            if agent as usize >= n_agents {
                return Err(malformed("record names an unknown site"));
            }
            let delta = r.i64()?;
            let sum = (last_sum[agent as usize] as i64).wrapping_add(delta) as u64;
            let a = &doc.agents[agent as usize];
            let (sid, seq) = (a.sid, a.next_seq);
            let id = S4Vector { ssn, sum, sid, seq };
            if sum < seq {
                return Err(malformed("seq exceeds sum"));
            }
            if a.last.is_some_and(|last| (ssn, sum) <= last) {
                return Err(malformed("a site's precedence must rise"));
            }
            match head & 3 {
                K_INSERT => {
                    let len = r.u32()?;
                    let dist = r.u32()?;
                    if len == 0 || lv_count as u64 + len as u64 > max_elements {
                        return Err(malformed("bad insert length"));
                    }
                    if id.offset(len as u64).is_none() {
                        return Err(malformed("identifiers overflow"));
                    }
                    let parent = if dist == 0 {
                        NONE
                    } else {
                        let p = lv_count
                            .checked_sub(dist)
                            .ok_or(malformed("reference after its insert"))?;
                        if doc.char_prec(lv_run[p as usize], p) >= id.precedence() {
                            return Err(malformed("insert does not exceed its reference"));
                        }
                        p
                    };
                    let run = doc.runs.len() as u32;
                    doc.runs.push(InsertRun {
                        ssn,
                        agent,
                        sum,
                        seq,
                        lv: lv_count,
                        len,
                        parent,
                        order: doc.next_order,
                    });
                    doc.agents[agent as usize].entries.push(Entry {
                        seq,
                        len,
                        kind: Kind::Insert(run),
                    });
                    lv_count += len;
                    lv_run.resize(lv_count as usize, run);
                    doc.finish_record(agent, ssn, sum + len as u64 - 1, len as u64);
                    last_sum[agent as usize] = sum + len as u64 - 1;
                }
                K_DELETE => {
                    let count = r.count()?;
                    if count == 0 {
                        return Err(malformed("delete without targets"));
                    }
                    let first = doc.del_targets.len() as u32;
                    for _ in 0..count {
                        let start = offset_u32(last_target, r.i64()?)?;
                        let len = r.u32()?;
                        let t = doc.check_target(start, len, &lv_run, id.precedence())?;
                        doc.del_targets.push(t);
                        last_target = t.end();
                    }
                    doc.push_delete(
                        agent,
                        id,
                        DelTargets::List {
                            first,
                            count: count as u32,
                        },
                    );
                    last_sum[agent as usize] = sum;
                }
                K_DELETE_RUN => {
                    // A run of n deletes takes a few bytes whatever n is: bound it by the
                    // characters it can target, not by the bytes left.
                    let count = r.u64()? as usize;
                    if count < 2 || count > lv_count as usize {
                        return Err(malformed(
                            "delete run shorter than 2 or longer than the text",
                        ));
                    }
                    let n = count as u32;
                    let start = offset_u32(last_target, r.i64()?)?;
                    let backwards = head & BACKWARDS != 0;
                    if sum.checked_add(count as u64).is_none() || (backwards && start < n - 1) {
                        return Err(malformed("delete run out of range"));
                    }
                    for k in 0..n {
                        let lv = if backwards {
                            start - k
                        } else {
                            start
                                .checked_add(k)
                                .ok_or(malformed("delete run out of range"))?
                        };
                        let prec = Precedence {
                            ssn,
                            sum: sum + k as u64,
                            sid: id.sid,
                        };
                        doc.check_target(lv, 1, &lv_run, prec)?;
                    }
                    last_target = if backwards {
                        start - (n - 1)
                    } else {
                        start + (n - 1)
                    } + 1;
                    doc.push_delete(
                        agent,
                        id,
                        DelTargets::Run {
                            start,
                            n,
                            backwards,
                        },
                    );
                    last_sum[agent as usize] = sum + (count as u64 - 1);
                }
                _ => {
                    let target = r.u32()?;
                    let value =
                        char::from_u32(r.u32()?).ok_or(malformed("update value is not a char"))?;
                    doc.check_target(target, 1, &lv_run, id.precedence())?;
                    let u = doc.updates.len() as u32;
                    doc.updates.push(UpdateRec {
                        ssn,
                        agent,
                        sum,
                        seq,
                        target,
                        value,
                        order: doc.next_order,
                    });
                    doc.agents[agent as usize].entries.push(Entry {
                        seq,
                        len: 1,
                        kind: Kind::Update(u),
                    });
                    doc.finish_record(agent, ssn, sum, 1);
                    last_sum[agent as usize] = sum;
                    let p = id.precedence();
                    let winner = doc.values.get(&target).map(|v| v.0);
                    if winner.is_none_or(|w| p > w) {
                        doc.values.insert(target, (p, value));
                    }
                }
            }
        }
        if r.pos != records.len() {
            return Err(malformed("trailing bytes after the records"));
        }
        let mut r = outer;
        let text_len = r.u64()?;
        if text_len > lv_count as u64 * 4 {
            return Err(malformed("text longer than its characters"));
        }
        let packed_len = r.count()?;
        let text = lz4_flex::block::decompress(r.bytes(packed_len)?, text_len as usize)
            .map_err(|_| malformed("text does not decompress"))?;
        let text = std::str::from_utf8(&text).map_err(|_| malformed("text is not UTF-8"))?;
        doc.content.reserve_exact(lv_count as usize);
        if text.is_ascii() {
            doc.content.extend(text.bytes().map(char::from));
        } else {
            doc.content.extend(text.chars());
        }
        if doc.content.len() != lv_count as usize {
            return Err(malformed(
                "text length differs from the inserted characters",
            ));
        }
        let mut deleted = vec![false; lv_count as usize];
        for d in &doc.deletes {
            match d.targets {
                DelTargets::Run {
                    start,
                    n,
                    backwards,
                } => {
                    let first = if backwards { start + 1 - n } else { start };
                    deleted[first as usize..(first + n) as usize].fill(true);
                }
                DelTargets::List { .. } => {
                    for t in doc.delete_targets(d, 0).as_slice() {
                        deleted[t.start as usize..t.end() as usize].fill(true);
                    }
                }
            }
        }
        let spans = doc.document_order(&deleted, &lv_run);
        doc.tree = Tree::from_spans(&spans, lv_count);
        let n_pending = r.count()?;
        let mut pending = Vec::with_capacity(n_pending);
        for _ in 0..n_pending {
            pending.push(decode_op(&mut r)?);
        }
        if r.pos != bytes.len() {
            return Err(malformed("trailing bytes"));
        }
        for op in pending {
            doc.apply(op)
                .map_err(|_| malformed("invalid waiting operation"))?;
        }
        Ok(doc)
    }

    fn finish_record(&mut self, agent: u32, ssn: u32, sum: u64, count: u64) {
        let a = &mut self.agents[agent as usize];
        a.next_seq += count;
        a.last = Some((ssn, sum));
        self.clock_total += count;
        self.max_sum = self.max_sum.max(sum);
        self.next_order += 1;
    }

    fn push_delete(&mut self, agent: u32, id: S4Vector, targets: DelTargets) {
        let d = self.deletes.len() as u32;
        let rec = DeleteRec {
            ssn: id.ssn,
            agent,
            sum: id.sum,
            seq: id.seq,
            order: self.next_order,
            targets,
        };
        let n = rec.ops();
        self.deletes.push(rec);
        self.agents[agent as usize].entries.push(Entry {
            seq: id.seq,
            len: n,
            kind: Kind::Delete(d),
        });
        self.finish_record(agent, id.ssn, id.sum + (n as u64 - 1), n as u64);
    }

    /// The document order implied by the runs' references and precedences: the preorder of the
    /// insertion tree, where each char is a child of its reference (char k + 1 of a run is a
    /// child of char k) and siblings come in descending precedence. Computed per run with an
    /// explicit stack; `deleted` splits the result into visible and tombstone spans.
    fn document_order(&self, deleted: &[bool], lv_run: &[u32]) -> Vec<Span> {
        // Children of each run, by (offset of the parent char, descending precedence): grouped
        // by parent with a counting pass, then each (usually tiny) group sorted.
        let head = self.runs.len() as u32;
        let parent_of = |run: &InsertRun| {
            if run.parent == NONE {
                (head, 0)
            } else {
                let p = lv_run[run.parent as usize];
                (p, run.parent - self.runs[p as usize].lv)
            }
        };
        let mut first_kid = vec![0u32; self.runs.len() + 2];
        for run in &self.runs {
            first_kid[parent_of(run).0 as usize + 1] += 1;
        }
        for i in 1..first_kid.len() {
            first_kid[i] += first_kid[i - 1];
        }
        let mut fill = first_kid.clone();
        let mut kids = vec![
            (
                0u32,
                0u32,
                std::cmp::Reverse(Precedence {
                    ssn: 0,
                    sum: 0,
                    sid: SiteId(0)
                }),
                0u32
            );
            self.runs.len()
        ];
        for (i, run) in self.runs.iter().enumerate() {
            let (p, k) = parent_of(run);
            let prec = std::cmp::Reverse(self.char_prec(i as u32, run.lv));
            kids[fill[p as usize] as usize] = (p, k, prec, i as u32);
            fill[p as usize] += 1;
        }
        for g in first_kid.windows(2) {
            let group = &mut kids[g[0] as usize..g[1] as usize];
            if group.len() > 1 {
                group.sort_unstable();
            }
        }
        struct Frame {
            run: u32,
            k: u32,
            kid: u32,
            deferred: usize,
        }
        let mut out: Vec<Span> = Vec::new();
        let mut emit = |run: u32, lv: u32, len: u32| match out.last_mut() {
            Some(s) if s.run == run && s.end() == lv => {
                *s = Span::new(s.lv, s.len() + len, run, false)
            }
            _ => out.push(Span::new(lv, len, run, false)),
        };
        let mut stack: Vec<Frame> = Vec::new();
        // Children whose precedence is below the next char of their parent's run: they come
        // after the rest of that run's subtree.
        let mut deferred: Vec<u32> = Vec::new();
        let head_kids =
            &kids[first_kid[head as usize] as usize..first_kid[head as usize + 1] as usize];
        for k in head_kids.iter().rev() {
            stack.push(Frame {
                run: k.3,
                k: 0,
                kid: first_kid[k.3 as usize],
                deferred: 0,
            });
        }
        let mut hi: Vec<u32> = Vec::new();
        while let Some(f) = stack.last_mut() {
            let run = &self.runs[f.run as usize];
            if f.k < run.len {
                let end = first_kid[f.run as usize + 1];
                // Chars up to the next one with children (or the run's end) come in one piece.
                let stop = if f.kid < end {
                    kids[f.kid as usize].1
                } else {
                    run.len - 1
                };
                emit(f.run, run.lv + f.k, stop - f.k + 1);
                f.k = stop;
                let lv = run.lv + f.k;
                let next = (f.k + 1 < run.len).then(|| self.char_prec(f.run, lv + 1));
                hi.clear();
                let lo_start = deferred.len();
                while f.kid < end && kids[f.kid as usize].1 == f.k {
                    let (_, _, std::cmp::Reverse(prec), child) = kids[f.kid as usize];
                    if next.is_some_and(|n| prec < n) {
                        deferred.push(child);
                    } else {
                        hi.push(child);
                    }
                    f.kid += 1;
                }
                // Deferred ones pop in descending precedence.
                deferred[lo_start..].reverse();
                f.k += 1;
                for &child in hi.iter().rev() {
                    let d = deferred.len();
                    stack.push(Frame {
                        run: child,
                        k: 0,
                        kid: first_kid[child as usize],
                        deferred: d,
                    });
                }
            } else {
                let mark = f.deferred;
                stack.pop();
                let lo: Vec<u32> = deferred.drain(mark..).collect();
                for &child in &lo {
                    let d = deferred.len();
                    stack.push(Frame {
                        run: child,
                        k: 0,
                        kid: first_kid[child as usize],
                        deferred: d,
                    });
                }
            }
        }
        // Split by tombstones.
        let mut spans = Vec::with_capacity(out.len() * 2);
        for s in out {
            let mut at = s.lv;
            while at < s.end() {
                let d = deleted[at as usize];
                let run_end = deleted[at as usize..s.end() as usize]
                    .iter()
                    .position(|&x| x != d)
                    .map_or(s.end(), |i| at + i as u32);
                spans.push(Span::new(at, run_end - at, s.run, d));
                at = run_end;
            }
        }
        spans
    }

    /// Checks a decoded target: inside one run, already inserted, older than the operation.
    fn check_target(
        &self,
        start: u32,
        len: u32,
        lv_run: &[u32],
        op: Precedence,
    ) -> Result<LvRange, DecodeError> {
        let end = start
            .checked_add(len)
            .filter(|&e| len > 0 && e as usize <= lv_run.len())
            .ok_or(malformed("target out of range"))?;
        let run = lv_run[start as usize];
        if lv_run[end as usize - 1] != run {
            return Err(malformed("target crosses runs"));
        }
        if self.char_prec(run, end - 1) >= op {
            return Err(malformed("operation does not exceed its target"));
        }
        Ok(LvRange { start, len })
    }
}

fn put_s4(out: &mut Vec<u8>, id: &S4Vector) {
    put(out, id.ssn as u64);
    put(out, id.sum);
    put(out, id.sid.0);
    put(out, id.seq);
}

fn get_s4(r: &mut Reader<'_>) -> Result<S4Vector, DecodeError> {
    Ok(S4Vector {
        ssn: r.u32()?,
        sum: r.u64()?,
        sid: SiteId(r.u64()?),
        seq: r.u64()?,
    })
}

/// Appends the binary form of one operation.
fn encode_op(op: &Op, out: &mut Vec<u8>) {
    match op {
        Op::Insert { id, after, text } => {
            out.push(K_INSERT | if after.is_some() { 4 } else { 0 });
            put_s4(out, id);
            if let Some(a) = after {
                put_s4(out, a);
            }
            put(out, text.len() as u64);
            out.extend_from_slice(text.as_bytes());
        }
        Op::Delete { id, targets } => {
            out.push(K_DELETE);
            put_s4(out, id);
            put(out, targets.len() as u64);
            for t in targets {
                put(out, t.sid.0);
                put(out, t.seq);
                put(out, t.len);
            }
        }
        Op::Update { id, target, value } => {
            out.push(K_UPDATE);
            put_s4(out, id);
            put(out, target.sid.0);
            put(out, target.seq);
            put(out, *value as u64);
        }
    }
}

fn decode_op(r: &mut Reader<'_>) -> Result<Op, DecodeError> {
    let head = r.byte()?;
    let id = get_s4(r)?;
    Ok(match head {
        0 | 4 => {
            let after = if head == 4 { Some(get_s4(r)?) } else { None };
            let n = r.count()?;
            let text = std::str::from_utf8(r.bytes(n)?)
                .map_err(|_| malformed("text is not UTF-8"))?
                .to_owned();
            Op::Insert { id, after, text }
        }
        K_DELETE => {
            let n = r.count()?;
            let mut targets = Vec::with_capacity(n);
            for _ in 0..n {
                targets.push(IdRange {
                    sid: SiteId(r.u64()?),
                    seq: r.u64()?,
                    len: r.u64()?,
                });
            }
            Op::Delete { id, targets }
        }
        K_UPDATE => {
            let target = CharId {
                sid: SiteId(r.u64()?),
                seq: r.u64()?,
            };
            let value = char::from_u32(r.u32()?).ok_or(malformed("update value is not a char"))?;
            Op::Update { id, target, value }
        }
        _ => return Err(malformed("unknown operation kind")),
    })
}
