// The client against the real local stack (PostgreSQL, moto, the functions under
// `cargo lambda watch`, the local WebSocket gateway), started by scripts/client-test.sh, which
// sets API_URL, WS_URL and AUTH_LOCAL_SECRET. The network is cut through the client's `fetch`
// and `WebSocket` options: real sockets, closed or refused on demand.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";

import { open, CollabError, EditRefused, memoryStore, type CollabDocument, type OpenOptions, type Status } from "../src/index.js";

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests through scripts/client-test.sh`);
  return v;
}
const API_URL = env("API_URL");
const WS_URL = env("WS_URL");
const SECRET = env("AUTH_LOCAL_SECRET");
const SEED = Number(process.env.CLIENT_SEED ?? Date.now() % 1_000_000);
console.log(`client tests: CLIENT_SEED=${SEED}`);

/** A deterministic random source (mulberry32), so a failing run can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function token(user: string, ttl = 3600): string {
  const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64url");
  const head = b64(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64(JSON.stringify({ sub: user, exp: Math.floor(Date.now() / 1000) + ttl }));
  const sig = createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

async function api(user: string, method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${API_URL}${path}`, {
    method,
    headers: { authorization: `Bearer ${token(user)}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** A network that the test can cut: real fetch and WebSocket, refused or closed on demand. */
function network() {
  const sockets = new Set<WebSocket>();
  let offline = false;
  const Base = globalThis.WebSocket;
  class Cuttable extends Base {
    constructor(url: string | URL, protocols?: string | string[]) {
      // Offline, connect to a port nothing listens on: it fails as a dead network does.
      super(offline ? "ws://127.0.0.1:9/" : url, protocols);
      sockets.add(this);
      this.addEventListener("close", () => sockets.delete(this));
    }
  }
  const cutFetch: typeof fetch = (input, init) =>
    offline ? Promise.reject(new TypeError("network is offline")) : fetch(input, init);
  return {
    WebSocket: Cuttable as typeof WebSocket,
    fetch: cutFetch,
    /** Closes every open socket (the client reconnects). */
    cut() {
      for (const s of sockets) s.close();
    },
    setOffline(v: boolean) {
      offline = v;
      if (v) this.cut();
    },
  };
}

const opened: CollabDocument[] = [];
after(() => {
  for (const d of opened) d.close();
});

async function client(user: string, documentId: string, extra: Partial<OpenOptions> = {}) {
  const doc = await open({ apiUrl: API_URL, wsUrl: WS_URL, token: token(user), documentId, name: user, ...extra });
  doc.on("error", (e) => console.log(`${user}: error ${e.code}: ${e.message}`));
  doc.on("ended", (e) => console.log(`${user}: ended ${e.code}: ${e.message}`));
  opened.push(doc);
  return doc;
}

async function waitFor(what: string | (() => string), cond: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${typeof what === "string" ? what : what()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function converged(docId: string, ...docs: CollabDocument[]): Promise<string> {
  let server = "";
  const state = () =>
    docs
      .map((d) => `[${d.status}, ${d.unacknowledged} unacknowledged, ${d.length} units, ${d.replica.pendingCount} waiting]`)
      .join(" ") + ` server ${server.length} units`;
  await waitFor(
    () => `the clients and the server to converge: ${state()}`,
    async () => {
      if (docs.some((d) => d.unacknowledged > 0 || d.status !== "online")) return false;
      server = (await api("alice", "GET", `/documents/${docId}`)).text as string;
      return docs.every((d) => d.text === server);
    },
    60_000,
  );
  return server;
}

async function sharedDoc(content = ""): Promise<string> {
  const doc = await api("alice", "POST", "/documents", { title: "client-test.rs", content });
  await api("alice", "PUT", `/documents/${doc.id}/collaborators/bob`, { role: "editor" });
  return doc.id as string;
}

const PIECES = ["x", "fn ", "😀", "𝔘", "\r\n", "é", "\t", "}\n", "\u{1F468}\u200D\u{1F469}"];

/** A random edit: mostly typing, some deletes, rarely a large multi-line paste. */
function randomEdit(doc: CollabDocument, r: () => number): void {
  const at = Math.floor(r() * (doc.length + 1));
  const p = r();
  if (p < 0.01) {
    const lines = Array.from({ length: 2000 + Math.floor(r() * 2000) }, (_, i) => `    let v${i} = "😀 ${i}";`);
    doc.insert(at, lines.join("\n") + "\n");
  } else if (p < 0.7 || doc.length === 0) {
    doc.insert(at, PIECES[Math.floor(r() * PIECES.length)]!);
  } else {
    const from = Math.min(at, doc.length - 1);
    doc.delete(from, Math.min(doc.length - from, 1 + Math.floor(r() * 4)));
  }
}

test("two clients typing at once converge on the server's text", async () => {
  const r = rng(SEED);
  const id = await sharedDoc("fn main() {\n}\n");
  const alice = await client("alice", id);
  const bob = await client("bob", id);
  await waitFor("both online", () => alice.status === "online" && bob.status === "online");
  for (let i = 0; i < 400; i++) {
    randomEdit(r() < 0.5 ? alice : bob, r);
    if (i % 10 === 0) await new Promise((res) => setTimeout(res, r() * 20));
  }
  const text = await converged(id, alice, bob);
  assert.ok(text.length > 0);
});

test("a client that goes offline keeps typing and comes back with every edit exactly once", async () => {
  const id = await sharedDoc("start\n");
  const net = network();
  const alice = await client("alice", id);
  const bob = await client("bob", id, { WebSocket: net.WebSocket, fetch: net.fetch, backoff: { initialMs: 50, maxMs: 500 } });
  const seen: Status[] = [];
  bob.on("status", (s) => seen.push(s));
  await waitFor("both online", () => alice.status === "online" && bob.status === "online");
  net.setOffline(true);
  await waitFor("bob offline", () => bob.status === "offline");
  for (let i = 0; i < 30; i++) {
    bob.insert(bob.length, `[b${i}]`);
    alice.insert(0, `[a${i}]`);
    await new Promise((res) => setTimeout(res, 5));
  }
  assert.ok(bob.unacknowledged > 0, "bob's offline edits wait");
  await new Promise((res) => setTimeout(res, 300)); // a few failed reconnects
  net.setOffline(false);
  const text = await converged(id, alice, bob);
  for (let i = 0; i < 30; i++) {
    for (const m of [`[a${i}]`, `[b${i}]`]) assert.equal(text.split(m).length - 1, 1, `${m} once`);
  }
  const off = seen.indexOf("offline");
  assert.ok(off >= 0 && seen.lastIndexOf("online") > off, `statuses ${seen.join(",")}`);
});

test("a socket cut while a batch is unacknowledged loses and doubles nothing", async () => {
  const id = await sharedDoc();
  const net = network();
  const alice = await client("alice", id, { WebSocket: net.WebSocket, fetch: net.fetch, backoff: { initialMs: 20, maxMs: 200 } });
  await waitFor("online", () => alice.status === "online");
  for (let round = 0; round < 8; round++) {
    for (let i = 0; i < 5; i++) alice.insert(alice.length, `<${round}.${i}>`);
    await new Promise((res) => setTimeout(res, round * 3)); // the batch is out, its ack maybe not
    net.cut();
    await waitFor("back online", () => alice.status === "online");
  }
  const text = await converged(id, alice);
  for (let round = 0; round < 8; round++) {
    for (let i = 0; i < 5; i++) assert.equal(text.split(`<${round}.${i}>`).length - 1, 1);
  }
});

test("a malformed push is skipped, never thrown into the editor", async () => {
  const id = await sharedDoc("abc");
  const doc = await client("alice", id);
  await waitFor("online", () => doc.status === "online");
  const receive = (doc as unknown as { receive(data: string): void }).receive.bind(doc);
  const warn = console.warn;
  const warned: unknown[] = [];
  console.warn = (...args: unknown[]) => warned.push(args);
  try {
    receive("{not json");
    receive("42");
    receive(JSON.stringify({ type: "ops", document: id, ops: [{ bogus: true }] }));
    receive(JSON.stringify({ type: "surprise" }));
  } finally {
    console.warn = warn;
  }
  assert.equal(doc.text, "abc");
  assert.ok(warned.length >= 3, `warned ${warned.length} times`);
  doc.insert(3, "d");
  assert.equal(await converged(id, doc), "abcd");
});

test("a refused token asks getToken for a fresh one", async () => {
  const id = await sharedDoc("x");
  let asked = 0;
  const doc = await client("alice", id, {
    token: token("alice", -60), // expired a minute ago
    getToken: () => {
      asked++;
      return token("alice");
    },
  });
  await waitFor("online", () => doc.status === "online");
  doc.insert(1, "y");
  await converged(id, doc);
  assert.ok(asked >= 1);
});

test("a viewer's client is read-only and still follows; a stranger gets not found", async () => {
  const id = await sharedDoc("shared");
  await api("alice", "PUT", `/documents/${id}/collaborators/carol`, { role: "viewer" });
  const alice = await client("alice", id);
  const carol = await client("carol", id);
  assert.equal(carol.readOnly, true);
  assert.throws(() => carol.insert(0, "no"), (e: unknown) => e instanceof EditRefused && e.code === "read_only");
  await waitFor("both online", () => alice.status === "online" && carol.status === "online");
  alice.insert(6, " text");
  await waitFor("carol sees alice's edit", () => carol.text === "shared text");
  await assert.rejects(client("mallory", id), (e: unknown) => e instanceof CollabError && e.code === "not_found");
});

test("presence shows another editor's caret by name and goes away when it closes", async () => {
  const id = await sharedDoc("let x = 1;\n");
  const alice = await client("alice", id, { color: "#e11d48" });
  const bob = await client("bob", id);
  await waitFor("both online", () => alice.status === "online" && bob.status === "online");
  alice.setPresence(4, 5);
  await waitFor("bob sees alice", () => bob.peers().some((p) => p.name === "alice"));
  const peer = bob.peers().find((p) => p.name === "alice")!;
  assert.equal(peer.head, 4);
  assert.equal(peer.tail, 5);
  assert.equal(peer.color, "#e11d48");
  // bob types before alice's caret: the caret moves with its text.
  bob.insert(0, "// 😀\n");
  assert.equal(bob.peers().find((p) => p.name === "alice")!.head, 4 + "// 😀\n".length);
  alice.close();
  // presence_gone, or (if the server lost the disconnect) the presence expiry.
  await waitFor("alice gone", () => !bob.peers().some((p) => p.name === "alice"), 60_000);
});

test("edits made offline survive a reload through the offline store", async () => {
  const id = await sharedDoc("kept: ");
  const store = memoryStore();
  const net = network();
  const opts = { WebSocket: net.WebSocket, fetch: net.fetch, offline: store, backoff: { initialMs: 50, maxMs: 300 } };
  const first = await client("alice", id, opts);
  await waitFor("online", () => first.status === "online");
  net.setOffline(true);
  await waitFor("offline", () => first.status === "offline");
  for (let i = 0; i < 10; i++) first.insert(first.length, `(${i})`);
  first.close(); // the page goes away with ten edits unsent
  assert.ok(await store.load(`${API_URL}|${id}|alice`), "the waiting edits were saved");
  net.setOffline(false);
  const second = await client("alice", id, opts);
  const text = await converged(id, second);
  for (let i = 0; i < 10; i++) assert.equal(text.split(`(${i})`).length - 1, 1);
  await waitFor("the saved copy is forgotten once acknowledged", async () => (await store.load(`${API_URL}|${id}|alice`)) === null);
});

test("a socket message resent with its request_id applies once and gets the first answer", async () => {
  const id = await sharedDoc("abc");
  const session = (await api("alice", "POST", `/documents/${id}/sessions`)).session as number;
  const ws = new WebSocket(`${WS_URL}?document=${encodeURIComponent(id)}`, [token("alice")]);
  const acks: any[] = [];
  ws.addEventListener("message", (e) => {
    const msg = JSON.parse(String(e.data));
    if (msg.type === "ack" || msg.type === "error") acks.push(msg);
  });
  await new Promise((ok, fail) => {
    ws.addEventListener("open", ok);
    ws.addEventListener("error", fail);
  });
  const edit = (insert: string) =>
    JSON.stringify({ type: "edits", session, edits: [{ index: 0, delete: 0, insert }], request_id: "once-1" });
  // The acknowledgement was lost; the client sends the same message again.
  ws.send(edit("// hi\n"));
  await waitFor("first ack", () => acks.length >= 1);
  ws.send(edit("// hi\n"));
  await waitFor("second ack", () => acks.length >= 2);
  // The same id for another edit is refused.
  ws.send(edit("// other\n"));
  await waitFor("refusal", () => acks.length >= 3);
  ws.close();
  assert.equal(acks[0].type, "ack", JSON.stringify(acks[0]));
  assert.deepEqual(acks[1], acks[0]);
  assert.equal(acks[2].type, "error", JSON.stringify(acks[2]));
  assert.equal(acks[2].error, "idempotency_key_reused");
  assert.equal((await api("alice", "GET", `/documents/${id}`)).text, "// hi\nabc");
});

test("a collaborator removed while connected ends with access_revoked and receives nothing after", async () => {
  const id = await sharedDoc("open ");
  const alice = await client("alice", id);
  const bob = await client("bob", id);
  await waitFor("both online", () => alice.status === "online" && bob.status === "online");
  let ended: CollabError | null = null;
  bob.on("ended", (e) => (ended = e));
  await api("alice", "DELETE", `/documents/${id}/collaborators/bob`);
  await waitFor("bob's document ended", () => ended !== null);
  assert.equal((ended as CollabError | null)?.code, "access_revoked");
  assert.equal(bob.status, "closed");
  alice.insert(5, "secret");
  await converged(id, alice);
  assert.equal(bob.text, "open ");
});

test("a socket whose token expires is closed and the client reconnects with a fresh token", async () => {
  const id = await sharedDoc("t");
  let asked = 0;
  const doc = await client("alice", id, {
    token: token("alice", 3), // expires while connected
    getToken: () => {
      asked++;
      return token("alice");
    },
  });
  await waitFor("online", () => doc.status === "online");
  await new Promise((r) => setTimeout(r, 3500));
  doc.insert(1, "u"); // sent on the expired socket: closed with token_expired, then resent
  await converged(id, doc);
  assert.ok(asked >= 1, "getToken was asked");
  assert.equal(doc.status, "online");
});
