//! The binary snapshot of a whole replica: sites, the operation log (with each insert's
//! reference, so that catch-up after decoding sends the same operations), the text of every
//! inserted character, the document order with tombstones, and the waiting operations.
//!
//! Layout (integers are LEB128 varints, `z` marks zigzag-signed ones):
//!
//! ```text
//! "RGA" 1 | ssn | sites: n, sid* | records: n, record* | content: byte length, UTF-8
//!         | order: n, (z lv delta, len << 1 | deleted)* | waiting ops: n, op*
//! record  = head byte (kind | ssn-changed << 2 | backwards << 3) [ssn] agent z-sum-delta body
//!   insert      : len, parent distance (0 = head)
//!   delete      : n, (z start delta, len)*
//!   update      : target lv, value
//!   delete run  : count, z target delta   (count one-char deletes by one site with consecutive
//!                                          sums, each next to the previous: backspacing)
//! ```
//!
//! Sequence numbers are not stored: a site's operations appear in sequence order, so the decoder
//! counts them. Decoding validates everything it rebuilds (S4Vector rules, references, that the
//! document order covers each character once and that tombstones are exactly the delete
//! targets), so arbitrary bytes give a `DecodeError`, never a panic or an inconsistent replica.

use crate::error::DecodeError;
use crate::id::{CharId, IdRange, Precedence, S4Vector, SiteId};
use crate::log::{Agent, DeleteRec, Entry, InsertRun, Kind, LvRange, UpdateRec};
use crate::op::Op;
use crate::replica::Rga;
use crate::tree::{NONE, Span, Tree};

const MAGIC: &[u8; 3] = b"RGA";
const FORMAT: u8 = 1;
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
            let (run_len, backwards) = if kind == K_DELETE {
                self.delete_run_at(&recs[i..])
            } else {
                (1, false)
            };
            let mut head = if run_len > 1 { K_DELETE_RUN } else { kind };
            if rec_ssn != ssn {
                head |= SSN_CHANGED;
            }
            if backwards {
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
                Rec::Delete(d) if run_len > 1 => {
                    let t = self.del_targets[self.deletes[d as usize].first as usize];
                    put(&mut records, run_len as u64);
                    put_z(&mut records, t.start as i64 - last_target as i64);
                    let last =
                        self.del_targets[self.deletes[d as usize + run_len - 1].first as usize];
                    last_target = last.end();
                    last_sum[agent as usize] = sum + run_len as u64 - 1;
                }
                Rec::Delete(d) => {
                    let d = &self.deletes[d as usize];
                    put(&mut records, d.count as u64);
                    for t in &self.del_targets[d.first as usize..(d.first + d.count) as usize] {
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
            i += run_len;
        }
        put(&mut out, count);
        out.extend_from_slice(&records);
        let text: String = self.content.iter().collect();
        put(&mut out, text.len() as u64);
        out.extend_from_slice(text.as_bytes());
        let spans: Vec<Span> = self.tree.spans().collect();
        put(&mut out, spans.len() as u64);
        let mut prev_end = 0u32;
        for s in &spans {
            put_z(&mut out, s.lv as i64 - prev_end as i64);
            put(&mut out, ((s.len() as u64) << 1) | s.deleted() as u64);
            prev_end = s.end();
        }
        let pending: Vec<&Op> = self.pending.ops().collect();
        put(&mut out, pending.len() as u64);
        for op in pending {
            encode_op(op, &mut out);
        }
        out
    }

    /// How many records from the start of `recs` (a delete first) form a run of one-char deletes
    /// by one site with consecutive sums and adjacent targets, and whether they go backwards.
    fn delete_run_at(&self, recs: &[(u32, Rec)]) -> (usize, bool) {
        let single = |rec: &Rec| -> Option<(&DeleteRec, LvRange)> {
            let Rec::Delete(d) = *rec else { return None };
            let d = &self.deletes[d as usize];
            let t = self.del_targets[d.first as usize];
            (d.count == 1 && t.len == 1).then_some((d, t))
        };
        let Some((d0, t0)) = single(&recs[0].1) else {
            return (1, false);
        };
        let mut backwards = None;
        let mut n = 1;
        while let Some((d, t)) = recs.get(n).and_then(|r| single(&r.1)) {
            let k = n as u64;
            if d.agent != d0.agent || d.ssn != d0.ssn || d.sum != d0.sum + k {
                break;
            }
            let back = t.start as i64 == t0.start as i64 - k as i64;
            let fwd = t.start as i64 == t0.start as i64 + k as i64;
            let dir = match (back, fwd, backwards) {
                (true, _, None | Some(true)) => true,
                (_, true, None | Some(false)) => false,
                _ => break,
            };
            // A run's deletes must come from records that really are consecutive in the log.
            backwards = Some(dir);
            n += 1;
        }
        (n, backwards.unwrap_or(false))
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
        let n_records = r.count()?;
        let mut ssn = 0u32;
        let mut last_sum = vec![0u64; n_agents];
        let mut last_target = 0u32;
        let mut lv_count = 0u32;
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
                        if doc.char_prec(doc.run_of(p), p) >= id.precedence() {
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
                        let t = doc.check_target(start, len, lv_count, id.precedence())?;
                        doc.del_targets.push(t);
                        last_target = t.end();
                    }
                    doc.push_delete(agent, id, first, count as u32);
                    last_sum[agent as usize] = sum;
                }
                K_DELETE_RUN => {
                    let count = r.count()?;
                    if count < 2 {
                        return Err(malformed("delete run shorter than 2"));
                    }
                    let start = offset_u32(last_target, r.i64()?)?;
                    let back = head & BACKWARDS != 0;
                    for k in 0..count as u32 {
                        let lv = if back {
                            start.checked_sub(k)
                        } else {
                            start.checked_add(k)
                        }
                        .ok_or(malformed("delete run out of range"))?;
                        let a = &doc.agents[agent as usize];
                        let sum_k = sum
                            .checked_add(k as u64)
                            .ok_or(malformed("identifiers overflow"))?;
                        let id = S4Vector {
                            ssn,
                            sum: sum_k,
                            sid: a.sid,
                            seq: a.next_seq,
                        };
                        if k > 0 && sum_k < id.seq {
                            return Err(malformed("seq exceeds sum"));
                        }
                        let t = doc.check_target(lv, 1, lv_count, id.precedence())?;
                        let first = doc.del_targets.len() as u32;
                        doc.del_targets.push(t);
                        doc.push_delete(agent, id, first, 1);
                        last_target = t.end();
                    }
                    last_sum[agent as usize] = sum + (count as u64 - 1);
                }
                _ => {
                    let target = r.u32()?;
                    let value =
                        char::from_u32(r.u32()?).ok_or(malformed("update value is not a char"))?;
                    doc.check_target(target, 1, lv_count, id.precedence())?;
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
        let text_len = r.count()?;
        let text =
            std::str::from_utf8(r.bytes(text_len)?).map_err(|_| malformed("text is not UTF-8"))?;
        doc.content = text.chars().collect();
        if doc.content.len() != lv_count as usize {
            return Err(malformed(
                "text length differs from the inserted characters",
            ));
        }
        let n_spans = r.count()?;
        let mut spans = Vec::with_capacity(n_spans);
        let mut covered = vec![false; lv_count as usize];
        let mut targeted = vec![false; lv_count as usize];
        for t in &doc.del_targets {
            targeted[t.start as usize..t.end() as usize].fill(true);
        }
        let mut prev_end = 0u32;
        for _ in 0..n_spans {
            let lv = offset_u32(prev_end, r.i64()?)?;
            let packed = r.u64()?;
            let len = u32::try_from(packed >> 1).map_err(|_| malformed("span too long"))?;
            let deleted = packed & 1 == 1;
            let end = lv
                .checked_add(len)
                .filter(|&e| len > 0 && e <= lv_count)
                .ok_or(malformed("span out of range"))?;
            let run = doc.run_of(lv);
            if doc.run_of(end - 1) != run {
                return Err(malformed("span crosses runs"));
            }
            for i in lv as usize..end as usize {
                if std::mem::replace(&mut covered[i], true) {
                    return Err(malformed("character placed twice"));
                }
                if targeted[i] != deleted {
                    return Err(malformed("tombstones differ from the delete targets"));
                }
            }
            spans.push(Span::new(lv, len, run, deleted));
            prev_end = end;
        }
        if covered.iter().any(|c| !c) {
            return Err(malformed("character missing from the document order"));
        }
        doc.check_order(&spans)?;
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

    fn push_delete(&mut self, agent: u32, id: S4Vector, first: u32, count: u32) {
        let d = self.deletes.len() as u32;
        self.deletes.push(DeleteRec {
            ssn: id.ssn,
            agent,
            sum: id.sum,
            seq: id.seq,
            first,
            count,
            order: self.next_order,
        });
        self.agents[agent as usize].entries.push(Entry {
            seq: id.seq,
            len: 1,
            kind: Kind::Delete(d),
        });
        self.finish_record(agent, id.ssn, id.sum, 1);
    }

    /// Checks that `spans` list the characters in the preorder of the insertion tree (each
    /// character a child of its reference) with siblings in descending precedence: the only
    /// order the RGA rules can produce. One pass with a stack holding the path from the head to
    /// the previous character: a character's parent must be on that path, and the sibling
    /// before it (the child of the parent popped last) must have higher precedence.
    fn check_order(&self, spans: &[Span]) -> Result<(), DecodeError> {
        let bad = || malformed("document order breaks the RGA rules");
        let mut on_path = vec![false; self.content.len()];
        let mut path: Vec<u32> = Vec::new();
        for s in spans {
            for lv in s.lv..s.end() {
                let parent = self.parent_of(s.run, lv);
                if parent != NONE && !on_path[parent as usize] {
                    return Err(bad());
                }
                let mut sibling = None;
                while let Some(&top) = path.last() {
                    if top == parent {
                        break;
                    }
                    on_path[top as usize] = false;
                    sibling = path.pop();
                }
                if let Some(sib) = sibling
                    && self.char_prec(self.run_of(sib), sib) <= self.char_prec(s.run, lv)
                {
                    return Err(bad());
                }
                on_path[lv as usize] = true;
                path.push(lv);
            }
        }
        Ok(())
    }

    /// Checks a decoded target: inside one run, already inserted, older than the operation.
    fn check_target(
        &self,
        start: u32,
        len: u32,
        lv_count: u32,
        op: Precedence,
    ) -> Result<LvRange, DecodeError> {
        let end = start
            .checked_add(len)
            .filter(|&e| len > 0 && e <= lv_count)
            .ok_or(malformed("target out of range"))?;
        let run = self.run_of(start);
        if self.run_of(end - 1) != run {
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
