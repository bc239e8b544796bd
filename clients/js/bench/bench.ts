// `npm run bench`: the client's replica beside Yjs in one Node process, doing the same work on
// ../shared/traces/automerge-paper.json.gz: (a) replay the trace as local edits through the client
// API, (b) apply the resulting ops to a fresh replica as one remote batch, (c) load the final
// state from a snapshot. Rounds interleave the two libraries; medians and ratios are printed.

import { readFileSync, statSync } from "node:fs";
import { gunzipSync, gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import * as Y from "yjs";

import { CollabText, loadWasm, Replica } from "../src/index.js";

interface Trace {
  startContent: string;
  endContent: string;
  txns: { patches: [number, number, string][] }[];
}

const ROOT = new URL("../../../../", import.meta.url);
const tracesDir = process.env.TRACES_DIR ?? fileURLToPath(new URL("../shared/traces/", ROOT));
const name = process.argv[2] ?? "automerge-paper";
const runs = Number(process.env.RUNS ?? 5);
const trace = JSON.parse(gunzipSync(readFileSync(`${tracesDir}/${name}.json.gz`)).toString()) as Trace;
const patches = trace.txns.flatMap((t) => t.patches);

await loadWasm();

function time<T>(f: () => T): [number, T] {
  const t0 = performance.now();
  const out = f();
  return [performance.now() - t0, out];
}

function ours() {
  const [local, doc] = time(() => {
    const doc = new CollabText(new Replica(1, 1));
    if (trace.startContent) doc.insert(0, trace.startContent);
    for (const [pos, del, ins] of patches) doc.replace(pos, del, ins);
    return doc;
  });
  if (doc.text !== trace.endContent) throw new Error("ours: wrong final text");
  // What a catch-up carries: the binary op batch (`Accept: application/x-rga-ops`), and the
  // JSON form beside it for comparison.
  const ops = doc.replica.opsSince("{}");
  const batch = doc.replica.opsSinceBinary("{}");
  const [remote, fresh] = time(() => {
    const fresh = new CollabText(new Replica(2, 1));
    fresh.applyRemoteBinary(batch);
    return fresh;
  });
  if (fresh.text !== trace.endContent) throw new Error("ours: wrong remote text");
  const [remoteJson, freshJson] = time(() => {
    const fresh = new CollabText(new Replica(4, 1));
    fresh.applyRemote(ops);
    return fresh;
  });
  if (freshJson.text !== trace.endContent) throw new Error("ours: wrong remote text (JSON)");
  const snapshot = doc.replica.encode();
  const [load, text] = time(() => Replica.decode(snapshot, 3, 1).text());
  if (text !== trace.endContent) throw new Error("ours: wrong decoded text");
  return { local, remote, remoteJson, load, bytes: snapshot.length, opsBytes: batch.length, jsonBytes: ops.length };
}

function yjs() {
  const [local, doc] = time(() => {
    const doc = new Y.Doc();
    const text = doc.getText("t");
    if (trace.startContent) text.insert(0, trace.startContent);
    for (const [pos, del, ins] of patches) {
      if (del > 0) text.delete(pos, del);
      if (ins) text.insert(pos, ins);
    }
    return doc;
  });
  if (doc.getText("t").toString() !== trace.endContent) throw new Error("yjs: wrong final text");
  const update = Y.encodeStateAsUpdate(doc);
  const [remote] = time(() => {
    const fresh = new Y.Doc();
    Y.applyUpdate(fresh, update);
    return fresh;
  });
  const [load, text] = time(() => {
    const fresh = new Y.Doc();
    Y.applyUpdate(fresh, update);
    return fresh.getText("t").toString();
  });
  if (text !== trace.endContent) throw new Error("yjs: wrong decoded text");
  return { local, remote, remoteJson: remote, load, bytes: update.length, opsBytes: update.length, jsonBytes: update.length };
}

const rows: { ours: ReturnType<typeof ours>; yjs: ReturnType<typeof yjs> }[] = [];
ours();
yjs(); // warm-up
for (let i = 0; i < runs; i++) {
  // Alternate which goes first, so neither always runs on a warmer (or more tired) heap.
  if (i % 2 === 0) {
    const a = ours();
    rows.push({ ours: a, yjs: yjs() });
  } else {
    const b = yjs();
    rows.push({ ours: ours(), yjs: b });
  }
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const wasmPath = fileURLToPath(new URL("../wasm/rga_wasm_bg.wasm", import.meta.url));
const wasm = readFileSync(wasmPath);
console.log(`${name}: ${patches.length} patches, ${trace.endContent.length} chars at the end; ${runs} rounds, medians`);
const yjsVersion = (JSON.parse(readFileSync(new URL("../../node_modules/yjs/package.json", import.meta.url), "utf8")) as { version: string }).version;
console.log(`| case | @collab/client (wasm) | Yjs ${yjsVersion} | ratio |`);
console.log("|---|---:|---:|---:|");
for (const [label, key] of [
  ["(a) local edits", "local"],
  ["(b) remote batch", "remote"],
  ["(b) remote batch, as JSON ops", "remoteJson"],
  ["(c) load snapshot", "load"],
] as const) {
  const o = median(rows.map((r) => r.ours[key]));
  const y = median(rows.map((r) => r.yjs[key]));
  console.log(`| ${label} | ${o.toFixed(1)} ms | ${y.toFixed(1)} ms | ${(o / y).toFixed(2)}× |`);
}
const o = rows[0]!.ours;
const y = rows[0]!.yjs;
console.log(`| snapshot bytes | ${o.bytes} | ${y.bytes} | ${(o.bytes / y.bytes).toFixed(2)}× |`);
console.log(`| ops as sent (binary batch) / update | ${o.opsBytes} | ${y.opsBytes} | ${(o.opsBytes / y.opsBytes).toFixed(2)}× |`);
console.log(`| ops as sent (JSON) / update | ${o.jsonBytes} | ${y.jsonBytes} | ${(o.jsonBytes / y.jsonBytes).toFixed(2)}× |`);
console.log(`wasm: ${statSync(wasmPath).size} bytes raw, ${gzipSync(wasm, { level: 9 }).length} gzipped`);
