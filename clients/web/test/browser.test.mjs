// The page in real Chromium (Debian's, driven by playwright-core) against `make dev REPLICAS=3`,
// started by scripts/web-test.sh, which sets WEB_URL, API_URL_1..3 and DEV_TOKEN..DEV_TOKEN_3.
// Every test saves screenshots under .dev/ for anyone to look at when it fails.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests through scripts/web-test.sh`);
  return v;
}
const WEB = env("WEB_URL");
const API = [env("API_URL_1"), env("API_URL_2"), env("API_URL_3")];
const TOKENS = { alice: env("DEV_TOKEN"), bob: env("DEV_TOKEN_2"), carol: env("DEV_TOKEN_3") };
const SHOTS = new URL("../../../.dev/", import.meta.url);
mkdirSync(SHOTS, { recursive: true });

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
});
after(async () => {
  await browser?.close();
});

async function api(user, method, path, body, replica = 1) {
  const res = await fetch(`${API[replica - 1]}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKENS[user]}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path} on replica ${replica}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function newDoc(title, content, share = {}) {
  const doc = await api("alice", "POST", "/documents", { title, content });
  for (const [user, role] of Object.entries(share)) {
    await api("alice", "PUT", `/documents/${doc.id}/collaborators/${user}`, { role });
  }
  return doc.id;
}

/** A browser context signed in as `user`, with the document open on `replica`. */
async function openPage(user, docId, replica = 1, { waitOnline = true } = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.log(`${user}: page error: ${e.message}`));
  await page.goto(`${WEB}?user=${user}&replica=${replica}&doc=${docId}`);
  if (waitOnline) {
    await page.waitForFunction(() => window.collab?.doc?.status === "online", null, { timeout: 30_000 });
  }
  return { context, page, user };
}

const editorText = (p) => p.page.evaluate(() => window.collab.view.state.doc.toString());
const state = (p) =>
  p.page.evaluate(() => ({
    editor: window.collab.view.state.doc.toString(),
    doc: window.collab.doc.text,
    status: window.collab.doc.status,
    waiting: window.collab.doc.unacknowledged,
  }));

async function shot(p, name) {
  await p.page.screenshot({ path: new URL(`browser-${name}-${p.user}.png`, SHOTS).pathname });
}

/** Waits until every page shows the same text as the server (replica 1 unless given). */
async function converged(docId, pages, replicas = [1]) {
  const until = Date.now() + 60_000;
  let last = "";
  for (;;) {
    const states = await Promise.all(pages.map(state));
    const servers = await Promise.all(replicas.map((r) => api("alice", "GET", `/documents/${docId}`, undefined, r)));
    const text = servers[0].text;
    const ok =
      states.every((s) => s.status === "online" && s.waiting === 0 && s.editor === text && s.doc === text) &&
      servers.every((s) => s.text === text);
    if (ok) return text;
    last = JSON.stringify({ states: states.map((s) => ({ ...s, editor: s.editor.length, doc: s.doc.length })), servers: servers.map((s) => s.text.length) });
    if (Date.now() > until) throw new Error(`no convergence: ${last}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function typeInto(p, actions) {
  await p.page.click(".cm-content");
  for (const a of actions) {
    if (a.press) await p.page.keyboard.press(a.press);
    else if (a.insert) await p.page.keyboard.insertText(a.insert);
    else await p.page.keyboard.type(a.type, { delay: 5 });
  }
}

test("alice and bob type at once with the keyboard and end with the server's text", async () => {
  const id = await newDoc("main.rs", "fn main() {\n}\n", { bob: "editor" });
  const alice = await openPage("alice", id);
  const bob = await openPage("bob", id);
  const paste = Array.from({ length: 120 }, (_, i) => `    let x${i} = ${i}; // 😀`).join("\n");
  await Promise.all([
    typeInto(alice, [
      { press: "Control+End" },
      { type: "// alice was here" },
      { press: "Enter" },
      { type: "let s = \"é\";" },
      { press: "Backspace" },
      { press: "Backspace" },
      { insert: "🦀" },
      { press: "Enter" },
    ]),
    typeInto(bob, [
      { press: "Control+Home" },
      { type: "use std::io;" },
      { press: "Enter" },
      { insert: paste },
      { press: "Enter" },
      { press: "Backspace" },
      { type: "// bob" },
    ]),
  ]);
  const text = await converged(id, [alice, bob]);
  assert.ok(text.includes("// alice was here") && text.includes("use std::io;") && text.includes("🦀"));
  assert.ok(text.includes("let x119 = 119; // 😀"));
  await shot(alice, "typing");
  await shot(bob, "typing");
  await alice.context.close();
  await bob.context.close();
});

test("bob goes offline, both keep typing, bob comes back: converged, nothing lost or doubled", async () => {
  const id = await newDoc("offline.py", "print('start')\n", { bob: "editor" });
  const alice = await openPage("alice", id);
  const bob = await openPage("bob", id);
  await bob.context.setOffline(true);
  await bob.page.waitForFunction(() => window.collab.doc.status === "offline", null, { timeout: 20_000 });
  for (let i = 0; i < 10; i++) {
    await typeInto(alice, [{ press: "Control+End" }, { type: `a${i};` }]);
    await typeInto(bob, [{ press: "Control+Home" }, { type: `b${i};` }]);
  }
  assert.ok((await bob.page.evaluate(() => window.collab.doc.unacknowledged)) > 0);
  await shot(bob, "offline");
  await bob.context.setOffline(false);
  const text = await converged(id, [alice, bob]);
  for (let i = 0; i < 10; i++) {
    assert.equal(text.split(`a${i};`).length - 1, 1, `a${i} once`);
    assert.equal(text.split(`b${i};`).length - 1, 1, `b${i} once`);
  }
  const statuses = await bob.page.evaluate(() => window.collab.statuses);
  const off = statuses.indexOf("offline");
  assert.ok(off >= 0 && statuses.lastIndexOf("online") > off, statuses.join(","));
  await shot(bob, "back-online");
  await alice.context.close();
  await bob.context.close();
});

test("edits typed offline survive closing the page (IndexedDB) and reach the server once", async () => {
  const id = await newDoc("kept.js", "// start\n");
  const first = await openPage("alice", id);
  await first.context.setOffline(true);
  await first.page.waitForFunction(() => window.collab.doc.status === "offline", null, { timeout: 20_000 });
  await typeInto(first, [{ press: "Control+End" }, { type: "const kept = 1;" }]);
  await new Promise((r) => setTimeout(r, 800)); // the offline copy is saved within 300 ms
  assert.ok((await first.page.evaluate(() => window.collab.doc.unacknowledged)) > 0);
  await first.page.close();
  await first.context.setOffline(false);
  const second = { context: first.context, page: await first.context.newPage(), user: "alice" };
  await second.page.goto(`${WEB}?user=alice&replica=1&doc=${id}`);
  await second.page.waitForFunction(() => window.collab?.doc?.status === "online", null, { timeout: 30_000 });
  const text = await converged(id, [second]);
  assert.equal(text.split("const kept = 1;").length - 1, 1, text);
  await shot(second, "reloaded");
  await first.context.close();
});

test("alice sees bob's caret with his name; a viewer cannot type; a stranger sees not found", async () => {
  const code = [
    "use std::collections::HashMap;",
    "",
    "/// Counts the words of a text.",
    "fn word_counts(text: &str) -> HashMap<&str, usize> {",
    "    let mut counts = HashMap::new();",
    "    for word in text.split_whitespace() {",
    "        *counts.entry(word).or_insert(0) += 1;",
    "    }",
    "    counts",
    "}",
    "",
  ].join("\n");
  const id = await newDoc("words.rs", code, { bob: "editor", carol: "viewer" });
  const alice = await openPage("alice", id);
  const bob = await openPage("bob", id);
  await typeInto(alice, [{ press: "Control+End" }, { type: "fn main() {\n    let text = \"a b a\";\n" }]);
  await typeInto(bob, [
    { press: "Control+Home" },
    { press: "ArrowDown" },
    { press: "ArrowDown" },
    { press: "End" },
    { type: " Ignores punctuation." },
    { press: "Shift+Home" },
  ]);
  await alice.page.waitForSelector(".cm-collab-caret-label", { timeout: 20_000 });
  const labels = await alice.page.locator(".cm-collab-caret-label").allTextContents();
  assert.ok(labels.includes("bob"), labels.join(","));
  await shot(alice, "carets");
  await shot(bob, "carets");

  const carol = await openPage("carol", id);
  const before = await editorText(carol);
  await carol.page.click(".cm-content");
  await carol.page.keyboard.type("carol was not here");
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await editorText(carol), before);
  assert.ok(await carol.page.locator('[data-testid="readonly"]').isVisible());
  await shot(carol, "viewer");

  const secret = await newDoc("secret.rs", "const KEY: &str = \"hunter2\";\n");
  const stranger = await openPage("carol", secret, 1, { waitOnline: false });
  await stranger.page.waitForSelector('[data-testid="error"]', { timeout: 20_000 });
  assert.match(await stranger.page.locator('[data-testid="error"]').textContent(), /not found/i);
  assert.ok(!(await stranger.page.content()).includes("hunter2"));
  await shot(stranger, "not-found");
  for (const p of [alice, bob, carol, stranger]) await p.context.close();
});

test("alice on replica 1 and bob on replica 2 converge", async () => {
  const id = await newDoc("shared.ts", "export const x = 1;\n", { bob: "editor" });
  // The document and bob's access reach replica 2 through SNS and the relay.
  const until = Date.now() + 30_000;
  for (;;) {
    try {
      await api("bob", "GET", `/documents/${id}`, undefined, 2);
      break;
    } catch (e) {
      if (Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const alice = await openPage("alice", id, 1);
  const bob = await openPage("bob", id, 2);
  await Promise.all([
    typeInto(alice, [{ press: "Control+End" }, { type: "export const fromAlice = 'r1';" }, { press: "Enter" }]),
    typeInto(bob, [{ press: "Control+Home" }, { type: "// edited on replica 2" }, { press: "Enter" }]),
  ]);
  const text = await converged(id, [alice, bob], [1, 2]);
  assert.ok(text.includes("fromAlice") && text.includes("replica 2"));
  await shot(alice, "replica-1");
  await shot(bob, "replica-2");
  await alice.context.close();
  await bob.context.close();
});

test("the history lists snapshots and diffs one against now", async () => {
  const id = await newDoc("history.py", "def f():\n    return 1\n");
  const session = (await api("alice", "POST", `/documents/${id}/sessions`)).session;
  // make dev compacts every 100 log rows: enough edits for a snapshot, then one more line.
  for (let i = 0; i < 101; i++) {
    await api("alice", "POST", `/documents/${id}/edits`, { session, edits: [{ index: 0, insert: i % 20 === 19 ? "\n" : "#" }] });
  }
  await api("alice", "POST", `/documents/${id}/edits`, { session, edits: [{ index: 0, insert: "print('after the snapshot')\n" }] });
  const alice = await openPage("alice", id);
  await alice.page.waitForSelector('[data-testid="snapshot"]', { timeout: 20_000 });
  await alice.page.locator('[data-testid="snapshot"]').first().click();
  await alice.page.waitForSelector('[data-testid="diff"]', { timeout: 20_000 });
  const added = await alice.page.locator('[data-testid="diff-new"] .diff-added').allTextContents();
  assert.ok(added.some((l) => l.includes("after the snapshot")), added.join("|"));
  await shot(alice, "history");
  await alice.context.close();
});

test("measured: keystroke in one page to visible in the other, beside an HTTP edit", async () => {
  const id = await newDoc("latency.rs", "", { bob: "editor" });
  const alice = await openPage("alice", id);
  const bob = await openPage("bob", id);
  await alice.page.evaluate(() => {
    window.typed = [];
    window.collab.doc.on("change", (e) => {
      if (e.origin === "local") for (const c of e.changes) for (const _ of c.insert) window.typed.push(Date.now());
    });
  });
  await bob.page.evaluate(() => {
    window.seen = [];
    window.collab.doc.on("change", (e) => {
      if (e.origin === "remote") for (const c of e.changes) for (const _ of c.insert) window.seen.push(Date.now());
    });
  });
  const N = 300;
  await alice.page.click(".cm-content");
  for (let i = 0; i < N; i++) {
    await alice.page.keyboard.type("x");
    await new Promise((r) => setTimeout(r, 20));
  }
  await converged(id, [alice, bob]);
  const typed = await alice.page.evaluate(() => window.typed);
  const seen = await bob.page.evaluate(() => window.seen);
  assert.equal(seen.length, typed.length);
  const push = typed.map((t, i) => seen[i] - t).sort((a, b) => a - b);
  const session = (await api("alice", "POST", `/documents/${id}/sessions`)).session;
  const http = [];
  for (let i = 0; i < 100; i++) {
    const t0 = performance.now();
    await api("alice", "POST", `/documents/${id}/edits`, { session, edits: [{ index: 0, insert: "y" }] });
    http.push(performance.now() - t0);
  }
  http.sort((a, b) => a - b);
  const q = (xs, p) => xs[Math.min(xs.length - 1, Math.floor(xs.length * p))];
  console.log(
    `latency: keystroke to the other page p50 ${q(push, 0.5)} ms, p99 ${q(push, 0.99)} ms (${push.length} keystrokes, 20 ms apart); ` +
      `HTTP edit round trip p50 ${q(http, 0.5).toFixed(1)} ms, p99 ${q(http, 0.99).toFixed(1)} ms (100 edits)`,
  );
  await alice.context.close();
  await bob.context.close();
});
