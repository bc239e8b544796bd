//! Writes the record section (see the format in `mod.rs`), keeping the [`Context`] in step with
//! what the decoder will compute.

use super::varint::{put, put_z};
use super::{
    AGENT_SHIFT, BACKWARDS, Context, INLINE_AGENTS, K_DELETE, K_DELETE_RUN, K_INSERT, K_UPDATE,
    SSN_CHANGED, SUM_GIVEN,
};
use crate::log::{DeleteRec, InsertRun, LvRange, UpdateRec};
use crate::tree::NONE;

pub(super) struct RecordWriter {
    /// Every record's head byte, kept together: they repeat a lot and compress well side by side.
    heads: Vec<u8>,
    /// Everything else, record after record.
    out: Vec<u8>,
    cx: Context,
}

impl RecordWriter {
    pub fn new(records: usize) -> Self {
        RecordWriter {
            heads: Vec::with_capacity(records),
            out: Vec::with_capacity(records * 4),
            cx: Context::default(),
        }
    }

    /// The head byte and what follows it: the session if it changed, the agent if it does not
    /// fit in the head, the sum if it is not the predicted one.
    fn head(&mut self, kind: u8, backwards: bool, agent: u32, ssn: u32, sum: u64) {
        let mut head = kind;
        if backwards {
            head |= BACKWARDS;
        }
        if ssn != self.cx.ssn {
            head |= SSN_CHANGED;
        }
        let predicted = self.cx.predicted_sum();
        if sum != predicted {
            head |= SUM_GIVEN;
        }
        if agent < INLINE_AGENTS {
            head |= ((agent + 1) as u8) << AGENT_SHIFT;
        }
        self.heads.push(head);
        if ssn != self.cx.ssn {
            put(&mut self.out, ssn as u64);
            self.cx.ssn = ssn;
        }
        if agent >= INLINE_AGENTS {
            put(&mut self.out, agent as u64);
        }
        if sum != predicted {
            put_z(&mut self.out, sum.wrapping_sub(predicted) as i64);
        }
    }

    pub fn insert(&mut self, r: &InsertRun) {
        self.head(K_INSERT, false, r.agent, r.ssn, r.sum);
        put(&mut self.out, r.len as u64);
        if r.parent == NONE {
            put(&mut self.out, 0);
        } else {
            let delta = r.parent as i64 - self.cx.cursor as i64;
            put(&mut self.out, ((delta << 1) ^ (delta >> 63)) as u64 + 1);
        }
        self.cx.cursor = r.lv + r.len - 1;
        self.cx.advance(r.len as u64, r.sum + r.len as u64 - 1);
    }

    pub fn delete_list(&mut self, d: &DeleteRec, targets: &[LvRange]) {
        // One char is the common case: the flag replaces the count and the length.
        let single = matches!(targets, [t] if t.len == 1);
        self.head(K_DELETE, single, d.agent, d.ssn, d.sum);
        if single {
            let t = targets[0];
            put_z(&mut self.out, t.start as i64 - self.cx.last_target as i64);
            self.cx.last_target = t.end();
            self.cx.cursor = t.start;
            self.cx.advance(1, d.sum);
            return;
        }
        put(&mut self.out, targets.len() as u64);
        for t in targets {
            put_z(&mut self.out, t.start as i64 - self.cx.last_target as i64);
            put(&mut self.out, t.len as u64);
            self.cx.last_target = t.end();
            self.cx.cursor = t.end() - 1;
        }
        self.cx.advance(1, d.sum);
    }

    pub fn delete_run(&mut self, d: &DeleteRec, start: u32, n: u32, backwards: bool) {
        self.head(K_DELETE_RUN, backwards, d.agent, d.ssn, d.sum);
        put(&mut self.out, n as u64);
        put_z(&mut self.out, start as i64 - self.cx.last_target as i64);
        self.cx.after_run(start, n, backwards);
        self.cx.advance(n as u64, d.sum + n as u64 - 1);
    }

    pub fn update(&mut self, u: &UpdateRec) {
        self.head(K_UPDATE, false, u.agent, u.ssn, u.sum);
        put(&mut self.out, u.target as u64);
        put(&mut self.out, u.value as u64);
        self.cx.advance(1, u.sum);
    }

    /// The section: the record count, the heads, the rest.
    pub fn finish(self) -> Vec<u8> {
        let mut section = Vec::with_capacity(self.heads.len() + self.out.len() + 10);
        put(&mut section, self.heads.len() as u64);
        section.extend_from_slice(&self.heads);
        section.extend_from_slice(&self.out);
        section
    }
}
