// Unit tests of the package's local part, on the real WebAssembly build: UTF-16 positions,
// anchors, remote changes, undo. Two replicas exchange ops directly (no server).

import { test } from "node:test";
import assert from "node:assert/strict";

import { CollabText, EditRefused, loadWasm, Replica, type Patch } from "../../src/index.js";

await loadWasm();

let nextSite = 1;
function pair(): [CollabText, CollabText] {
  // undoDelay 0: every edit its own undo step (grouping has its own test).
  const opts = { undoDelay: 0 };
  return [new CollabText(new Replica(nextSite++, 1), opts), new CollabText(new Replica(nextSite++, 1), opts)];
}

/** Sends `from`'s ops that `to` lacks; returns the changes `to` reported. */
function sync(from: CollabText, to: CollabText): Patch[] {
  const ops = from.replica.opsSince(to.replica.version());
  return to.applyRemote(ops).changes;
}

function applyPatches(text: string, patches: Patch[]): string {
  for (const p of patches) text = text.slice(0, p.index) + p.insert + text.slice(p.index + p.delete);
  return text;
}

test("positions are UTF-16 code units and never split a surrogate pair", () => {
  const [a] = pair();
  a.insert(0, "a😀b");
  assert.equal(a.length, 4);
  assert.equal(a.text, "a😀b");
  a.insert(3, "x"); // after the emoji
  assert.equal(a.text, "a😀xb");
  a.insert(2, "y"); // inside the pair: rounds down to before it
  assert.equal(a.text, "ay😀xb");
  a.delete(3, 1); // half of the pair: the whole character goes
  assert.equal(a.text, "ayxb");
  assert.equal(a.replica.slice(1, 3), "yx");
  a.insert(4, "\r\n𝔘\u{1F468}\u200D\u{1F469}");
  assert.equal(a.text, "ayxb\r\n𝔘\u{1F468}\u200D\u{1F469}");
  assert.equal(a.length, (a.text as string).length);
});

test("change events, local and remote, are UTF-16 patches that rebuild the text", () => {
  const [a, b] = pair();
  let mirror = "";
  b.on("change", (e) => {
    mirror = applyPatches(mirror, e.changes);
  });
  a.insert(0, "héllo 🌍 wörld\n");
  sync(a, b);
  assert.equal(mirror, a.text);
  const pieces = ["x", "😀", "\r\n", "é", "ab", "𝔘𝔘"];
  for (let i = 0; i < 300; i++) {
    const who = i % 2 ? a : b;
    const at = Math.floor(Math.random() * (who.length + 1));
    if (Math.random() < 0.6 || who.length === 0) who.insert(at, pieces[i % pieces.length]!);
    else {
      const from = Math.min(at, who.length - 1);
      who.delete(from, Math.min(1 + (i % 3), who.length - from));
    }
    if (i % 7 === 0) {
      sync(a, b);
      sync(b, a);
    }
    assert.equal(mirror, b.text);
  }
  sync(a, b);
  sync(b, a);
  assert.equal(a.text, b.text);
  assert.equal(mirror, b.text);
});

test("remote ops in any order, and twice, converge", () => {
  const [a, b] = pair();
  for (let i = 0; i < 50; i++) a.insert(Math.floor(Math.random() * (a.length + 1)), `${i},`);
  for (let i = 0; i < 10; i++) a.delete(Math.floor(Math.random() * (a.length - 1)), 1);
  const ops = JSON.parse(a.replica.opsSince("{}")) as unknown[];
  const shuffled = [...ops].sort(() => Math.random() - 0.5);
  const report = b.applyRemote(JSON.stringify([...shuffled, ...ops]));
  assert.equal(report.errors.length, 0);
  assert.equal(b.text, a.text);
  assert.equal(b.replica.pendingCount, 0);
});

test("anchors keep their place under the other user's edits", () => {
  const [a, b] = pair();
  a.insert(0, "fn main() {}");
  sync(a, b);
  const caret = b.anchorAt(10); // before "{"
  const start = b.anchorAt(0);
  a.insert(0, "// 😀\n");
  a.insert(a.length, "\n");
  sync(a, b);
  assert.equal(b.resolve(caret), 10 + "// 😀\n".length);
  assert.equal(b.resolve(start), 0);
  a.delete(6, 3); // "fn " removed: the anchor after "fn main()" moves left
  sync(a, b);
  assert.equal(b.resolve(caret), 10 + 6 - 3);
});

test("undo takes back only this user's edits, as new ops, and redo puts them back", () => {
  const [a, b] = pair();
  a.insert(0, "shared\n");
  sync(a, b);
  b.insert(7, "bob was here\n");
  sync(b, a);
  a.insert(0, "alice: ");
  sync(a, b);
  assert.equal(b.text, "alice: shared\nbob was here\n");
  assert.ok(b.undo());
  assert.equal(b.text, "alice: shared\n");
  sync(b, a);
  assert.equal(a.text, b.text);
  assert.ok(b.redo());
  sync(b, a);
  assert.equal(a.text, "alice: shared\nbob was here\n");
  assert.equal(b.text, a.text);
  // alice's undo of her replace restores what she deleted, not bob's text.
  a.replace(0, 5, "ALICE", { anchor: 0, head: 5 });
  assert.equal(a.text, "ALICE: shared\nbob was here\n");
  let selection: { anchor: number; head: number } | undefined;
  a.on("change", (e) => {
    if (e.origin === "undo") selection = e.selection;
  });
  assert.ok(a.undo());
  assert.equal(a.text, "alice: shared\nbob was here\n");
  assert.deepEqual(selection, { anchor: 0, head: 5 });
  sync(a, b);
  assert.equal(b.text, a.text);
});

test("edits in quick succession undo as one step", () => {
  const doc = new CollabText(new Replica(nextSite++, 1), { undoDelay: 60_000 });
  doc.insert(0, "one ");
  doc.insert(4, "two ");
  doc.delete(0, 1);
  assert.equal(doc.text, "ne two ");
  assert.ok(doc.undo());
  assert.equal(doc.text, "");
  assert.equal(doc.canUndo, false);
  assert.ok(doc.redo());
  assert.equal(doc.text, "ne two ");
});

test("a viewer's edits and out-of-range edits are refused before anything changes", () => {
  const viewer = new CollabText(new Replica(nextSite++, 1), { readOnly: true });
  assert.throws(() => viewer.insert(0, "x"), (e: unknown) => e instanceof EditRefused && e.code === "read_only");
  const [a] = pair();
  a.insert(0, "abc");
  assert.throws(() => a.delete(2, 5), (e: unknown) => e instanceof EditRefused && e.code === "out_of_range");
  const small = new CollabText(new Replica(nextSite++, 1), { maxChars: 5 });
  small.insert(0, "😀😀😀😀"); // 8 UTF-16 units, 4 chars
  assert.throws(() => small.insert(0, "ab"), (e: unknown) => e instanceof EditRefused && e.code === "too_large");
  assert.equal(small.text, "😀😀😀😀");
  assert.equal(a.text, "abc");
});

test("a malformed op batch is an error, and a bad op among good ones is reported alone", () => {
  const [a, b] = pair();
  assert.throws(() => b.applyRemote("[{"));
  a.insert(0, "ok");
  const ops = JSON.parse(a.replica.opsSince("{}")) as Record<string, unknown>[];
  const bad = { type: "insert", id: { ssn: 1, sum: 1, sid: 999, seq: 1 }, after: { ssn: 1, sum: 9, sid: 12345, seq: 9 }, text: "x" };
  const report = b.applyRemote(JSON.stringify([bad, ...ops]));
  assert.equal(b.text, "ok");
  assert.equal(report.pending + report.errors.length, 1);
});

test("a replica survives a snapshot round trip and keeps editing", () => {
  const [a] = pair();
  a.insert(0, "one 😀 two");
  const copy = new CollabText(Replica.decode(a.replica.encode(), nextSite++, 1));
  assert.equal(copy.text, a.text);
  copy.insert(copy.length, " three");
  a.applyRemote(copy.replica.ownOpsFrom(1));
  assert.equal(a.text, "one 😀 two three");
});

test("the binary op batch carries the same ops as the JSON, and bad bytes are an error", () => {
  const [a, b] = pair();
  a.insert(0, "héllo 😀 wörld\r\n");
  a.delete(2, 3);
  sync(a, b);
  b.insert(4, "∑");
  a.insert(0, ">> ");
  const [c] = pair();
  const report = c.applyRemoteBinary(a.replica.opsSinceBinary(c.replica.version()));
  assert.equal(report.errors.length, 0);
  assert.equal(applyPatches("", report.changes), a.text);
  // Only what c lacks, and duplicates are harmless.
  c.applyRemoteBinary(b.replica.opsSinceBinary(c.replica.version()));
  const again = c.applyRemoteBinary(b.replica.opsSinceBinary("{}"));
  assert.equal(again.applied, 0);
  sync(c, a);
  assert.equal(a.text, c.text);
  const bytes = a.replica.opsSinceBinary("{}");
  assert.ok(bytes.length * 4 < a.replica.opsSince("{}").length);
  assert.throws(() => c.applyRemoteBinary(bytes.subarray(0, bytes.length - 1)));
  assert.throws(() => c.applyRemoteBinary(new Uint8Array([1, 2, 3])));
  assert.equal(a.text, c.text);
});
