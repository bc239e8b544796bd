// The CodeMirror binding's pure helpers against @codemirror/state itself: ChangeSets as splices
// in sequence, and patch sequences as ChangeSets. No DOM, no WebAssembly.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ChangeSet, Text, type ChangeSpec } from "@codemirror/state";
import { changesToSplices, patchesToChangeSet } from "../../src/codemirror.js";
import type { Patch } from "../../src/replica.js";

/** A small seeded generator (xorshift32), so a failure reproduces. */
function rng(seed: number): (n: number) => number {
  let x = seed || 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

// Pieces of text: ASCII, a BMP non-Latin char, emoji (surrogate pairs), line breaks, a CR.
const PIECES = ["a", "b", "xyz", "é", "中", "😀", "👩‍💻", "\n", "\n\n", " ", "\r"];

function randomString(rand: (n: number) => number, maxPieces: number): string {
  let s = "";
  for (let n = rand(maxPieces + 1); n > 0; n--) s += PIECES[rand(PIECES.length)];
  return s;
}

/** A CodeMirror text of `s`, split at "\n" only (as the binding configures the editor). */
function textOf(s: string): Text {
  return Text.of(s.split("\n"));
}

function applySplices(s: string, splices: Patch[]): string {
  for (const { index, delete: del, insert } of splices) {
    assert.ok(index >= 0 && index + del <= s.length, `splice ${index}+${del} outside ${s.length}`);
    s = s.slice(0, index) + insert + s.slice(index + del);
  }
  return s;
}

/** Random non-overlapping changes, in original coordinates and in no particular order. */
function randomChanges(rand: (n: number) => number, length: number): ChangeSpec[] {
  const cuts = Array.from({ length: rand(8) * 2 }, () => rand(length + 1)).sort((a, b) => a - b);
  const specs: ChangeSpec[] = [];
  for (let i = 0; i + 1 < cuts.length; i += 2) {
    specs.push({ from: cuts[i]!, to: cuts[i + 1]!, insert: randomString(rand, 4) });
  }
  return specs.sort(() => rand(3) - 1);
}

test("changesToSplices: a two-range change shifts the second range", () => {
  const changes = ChangeSet.of(
    [
      { from: 6, to: 11, insert: "all" },
      { from: 0, to: 5, insert: "goodbye" },
    ],
    11,
  );
  assert.deepEqual(changesToSplices(changes), [
    { index: 0, delete: 5, insert: "goodbye" },
    { index: 8, delete: 5, insert: "all" },
  ]);
});

test("changesToSplices: an empty ChangeSet has no splices", () => {
  assert.deepEqual(changesToSplices(ChangeSet.empty(7)), []);
});

test("changesToSplices: random multi-range changes, in sequence, equal ChangeSet.apply", () => {
  const rand = rng(0x5eed);
  for (let round = 0; round < 2000; round++) {
    const doc = randomString(rand, 30);
    let changes = ChangeSet.of(randomChanges(rand, doc.length), doc.length, "\n");
    // Sometimes a composition of two steps, as a transaction with several specs makes.
    if (rand(3) === 0) {
      const length = changes.newLength;
      changes = changes.compose(ChangeSet.of(randomChanges(rand, length), length, "\n"));
    }
    const expected = changes.apply(textOf(doc)).toString();
    assert.equal(applySplices(doc, changesToSplices(changes)), expected, `round ${round}`);
  }
});

test("changesToSplices: multi-line inserts keep their line breaks and emoji", () => {
  const doc = "line one\nline two";
  const changes = ChangeSet.of(
    [
      { from: 4, insert: " 😀\nnew\n" },
      { from: 9, to: 13, insert: "👩‍💻" },
    ],
    doc.length,
    "\n",
  );
  const splices = changesToSplices(changes);
  assert.deepEqual(splices, [
    { index: 4, delete: 0, insert: " 😀\nnew\n" },
    { index: 9 + " 😀\nnew\n".length, delete: 4, insert: "👩‍💻" },
  ]);
  assert.equal(applySplices(doc, splices), changes.apply(textOf(doc)).toString());
});

test("patchesToChangeSet: random patch sequences give the text of the patches in sequence", () => {
  const rand = rng(0xc0ffee);
  for (let round = 0; round < 2000; round++) {
    const initial = randomString(rand, 30);
    let text = initial;
    const patches: Patch[] = [];
    for (let n = rand(10); n > 0; n--) {
      const index = rand(text.length + 1);
      const patch = { index, delete: rand(text.length - index + 1), insert: randomString(rand, 4) };
      patches.push(patch);
      text = applySplices(text, [patch]);
    }
    const changes = patchesToChangeSet(patches, initial.length);
    assert.equal(changes.length, initial.length, `round ${round}`);
    assert.equal(changes.newLength, text.length, `round ${round}`);
    assert.equal(changes.apply(textOf(initial)).toString(), text, `round ${round}`);
    // And back: the composed change as splices gives the same text.
    assert.equal(applySplices(initial, changesToSplices(changes)), text, `round ${round}`);
  }
});

test("patchesToChangeSet: a long batch composes to the same text", () => {
  const rand = rng(42);
  const initial = "start\n";
  let text = initial;
  const patches: Patch[] = [];
  for (let i = 0; i < 5000; i++) {
    const index = rand(text.length + 1);
    const del = Math.min(rand(3), text.length - index);
    const patch = { index, delete: del, insert: randomString(rand, 2) };
    patches.push(patch);
    text = applySplices(text, [patch]);
  }
  assert.equal(patchesToChangeSet(patches, initial.length).apply(textOf(initial)).toString(), text);
});

test("patchesToChangeSet: no patches is the empty change of that length", () => {
  const changes = patchesToChangeSet([], 12);
  assert.ok(changes.empty);
  assert.equal(changes.length, 12);
});

test("patchesToChangeSet: a carriage return stays one unit", () => {
  const changes = patchesToChangeSet([{ index: 1, delete: 0, insert: "x\r\ny" }], 2);
  assert.equal(changes.newLength, 6);
  assert.equal(changes.apply(textOf("ab")).toString(), "ax\r\nyb");
});

test("patchesToChangeSet: a patch outside its text throws a RangeError", () => {
  assert.throws(() => patchesToChangeSet([{ index: 2, delete: 2, insert: "" }], 3), RangeError);
  const second = [
    { index: 0, delete: 3, insert: "" },
    { index: 1, delete: 0, insert: "z" },
  ];
  assert.throws(() => patchesToChangeSet(second, 3), RangeError);
});
