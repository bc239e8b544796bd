// A line diff for the history panel: the longest common subsequence of lines (O(n·m) time and
// memory), after trimming the common prefix and suffix. When what is left is too large for that
// (more than MAX_LCS_LINES lines on either side) the middle is reported as removed-then-added,
// which is still correct, just coarser.

/** One line of the result: in both texts, only in the old one, or only in the new one. */
export type DiffOp =
  | { kind: "same"; text: string; oldNo: number; newNo: number }
  | { kind: "removed"; text: string; oldNo: number }
  | { kind: "added"; text: string; newNo: number };

/** A row of a side-by-side view: the old line on the left, the new one on the right. */
export interface DiffRow {
  left: { no: number; text: string; kind: "same" | "removed" } | null;
  right: { no: number; text: string; kind: "same" | "added" } | null;
}

/** Above this many lines (on either side, after trimming) the LCS is not attempted. */
export const MAX_LCS_LINES = 2000;

/** Splits a text into lines ("a\nb\n" is ["a", "b", ""], as an editor numbers them). */
export function splitLines(text: string): string[] {
  return text.split("\n");
}

/** The line diff from `before` to `after`. */
export function diffLines(before: string, after: string): DiffOp[] {
  return diffArrays(splitLines(before), splitLines(after));
}

/** The diff of two arrays of lines. Line numbers in the result are 1-based. */
export function diffArrays(a: readonly string[], b: readonly string[]): DiffOp[] {
  const n = a.length;
  const m = b.length;
  let start = 0;
  while (start < n && start < m && a[start] === b[start]) start++;
  let endA = n;
  let endB = m;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }

  const out: DiffOp[] = [];
  for (let i = 0; i < start; i++) out.push({ kind: "same", text: a[i]!, oldNo: i + 1, newNo: i + 1 });

  const midA = endA - start;
  const midB = endB - start;
  if (midA > MAX_LCS_LINES || midB > MAX_LCS_LINES) {
    for (let i = start; i < endA; i++) out.push({ kind: "removed", text: a[i]!, oldNo: i + 1 });
    for (let j = start; j < endB; j++) out.push({ kind: "added", text: b[j]!, newNo: j + 1 });
  } else {
    lcsMiddle(a, b, start, endA, endB, out);
  }

  for (let k = 0; k < n - endA; k++) {
    const i = endA + k;
    const j = endB + k;
    out.push({ kind: "same", text: a[i]!, oldNo: i + 1, newNo: j + 1 });
  }
  return out;
}

/** The LCS diff of a[start..endA] against b[start..endB], appended to `out`. */
function lcsMiddle(
  a: readonly string[],
  b: readonly string[],
  start: number,
  endA: number,
  endB: number,
  out: DiffOp[],
): void {
  const n = endA - start;
  const m = endB - start;
  if (n === 0 || m === 0) {
    for (let i = start; i < endA; i++) out.push({ kind: "removed", text: a[i]!, oldNo: i + 1 });
    for (let j = start; j < endB; j++) out.push({ kind: "added", text: b[j]!, newNo: j + 1 });
    return;
  }
  // Compare small integers rather than strings in the inner loop.
  const ids = new Map<string, number>();
  const idOf = (s: string) => {
    let id = ids.get(s);
    if (id === undefined) ids.set(s, (id = ids.size));
    return id;
  };
  const ax = new Int32Array(n);
  const bx = new Int32Array(m);
  for (let i = 0; i < n; i++) ax[i] = idOf(a[start + i]!);
  for (let j = 0; j < m; j++) bx[j] = idOf(b[start + j]!);

  // len[i][j]: the LCS length of a[i..] and b[j..] (suffixes), so the walk below goes forwards.
  // Lengths are at most MAX_LCS_LINES + 1, which fits 16 bits.
  const w = m + 1;
  const len = new Uint16Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    const row = i * w;
    const next = row + w;
    const ai = ax[i]!;
    for (let j = m - 1; j >= 0; j--) {
      len[row + j] =
        ai === bx[j] ? len[next + j + 1]! + 1 : Math.max(len[next + j]!, len[row + j + 1]!);
    }
  }

  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (ax[i] === bx[j]) {
      out.push({ kind: "same", text: a[start + i]!, oldNo: start + i + 1, newNo: start + j + 1 });
      i++;
      j++;
    } else if (len[(i + 1) * w + j]! >= len[i * w + j + 1]!) {
      out.push({ kind: "removed", text: a[start + i]!, oldNo: start + i + 1 });
      i++;
    } else {
      out.push({ kind: "added", text: b[start + j]!, newNo: start + j + 1 });
      j++;
    }
  }
  for (; i < n; i++) out.push({ kind: "removed", text: a[start + i]!, oldNo: start + i + 1 });
  for (; j < m; j++) out.push({ kind: "added", text: b[start + j]!, newNo: start + j + 1 });
}

/**
 * Side-by-side rows: unchanged lines face each other; within a run of changes, the removed lines
 * and the added lines are paired up in order, the longer side continuing alone.
 */
export function toRows(ops: readonly DiffOp[]): DiffRow[] {
  const rows: DiffRow[] = [];
  let k = 0;
  while (k < ops.length) {
    const op = ops[k]!;
    if (op.kind === "same") {
      rows.push({
        left: { no: op.oldNo, text: op.text, kind: "same" },
        right: { no: op.newNo, text: op.text, kind: "same" },
      });
      k++;
      continue;
    }
    const removed: { no: number; text: string }[] = [];
    const added: { no: number; text: string }[] = [];
    while (k < ops.length && ops[k]!.kind !== "same") {
      const c = ops[k]!;
      if (c.kind === "removed") removed.push({ no: c.oldNo, text: c.text });
      else if (c.kind === "added") added.push({ no: c.newNo, text: c.text });
      k++;
    }
    for (let r = 0; r < Math.max(removed.length, added.length); r++) {
      const l = removed[r];
      const a = added[r];
      rows.push({
        left: l ? { ...l, kind: "removed" } : null,
        right: a ? { ...a, kind: "added" } : null,
      });
    }
  }
  return rows;
}

/** Counts of added and removed lines. */
export function summarize(ops: readonly DiffOp[]): { added: number; removed: number } {
  let added = 0;
  let removed = 0;
  for (const op of ops) {
    if (op.kind === "added") added++;
    else if (op.kind === "removed") removed++;
  }
  return { added, removed };
}
