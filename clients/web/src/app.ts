// The browser page that `make dev` serves: sign in as one of the configured users, pick a replica,
// list / create / rename / delete / share documents, and edit one together in CodeMirror 6 over
// @collab/client, with presence, connection status, and a diff against the snapshot history.
//
// Everything it needs comes from ./config.json; the state it shows comes from the URL
// (?user=<name>&replica=<1-based>&doc=<id>), kept up to date with history.replaceState.

import { basicSetup } from "codemirror";
import { Compartment, type Extension } from "@codemirror/state";
import { EditorView } from "@codemirror/view";
import type { Language } from "@codemirror/language";
import { rust, rustLanguage } from "@codemirror/lang-rust";
import { javascript, javascriptLanguage, typescriptLanguage } from "@codemirror/lang-javascript";
import { python, pythonLanguage } from "@codemirror/lang-python";
import { markdown } from "@codemirror/lang-markdown";
import { open, CollabError, type CollabDocument, type Peer, type Status } from "@collab/client";
import { collab } from "@collab/client/codemirror";
import { diffLines, summarize, toRows, type DiffRow } from "./diff";

// ---------------------------------------------------------------------------------------------
// Configuration, routes and the API

interface ReplicaConfig {
  name: string;
  /** A same-origin path prefix of the HTTP API (the dev server proxies it). */
  api: string;
  /** The WebSocket API (absolute, or a path on this origin). */
  ws: string;
}

interface UserConfig {
  name: string;
  token: string;
}

interface Config {
  replicas: ReplicaConfig[];
  users: UserConfig[];
}

type Role = "viewer" | "editor" | "owner";

interface DocumentSummary {
  id: string;
  title: string;
  owner_id: string;
  role: Role;
  created_at: string;
  updated_at: string;
}

interface Collaborator {
  user_id: string;
  role: Role;
}

interface SnapshotMeta {
  version: number;
  created_at: string;
}

interface Route {
  user: string | null;
  /** 1-based. */
  replica: number;
  doc: string | null;
}

/** What the tests read. */
interface CollabGlobal {
  doc: CollabDocument;
  view: EditorView;
  statuses: string[];
}

declare global {
  interface Window {
    collab?: CollabGlobal;
  }
}

/** An HTTP answer that was not 2xx, with the API's error code. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** A signed-in user on one replica: every request goes through here. */
class Session {
  constructor(
    readonly user: UserConfig,
    readonly replica: ReplicaConfig,
    readonly replicaIndex: number,
  ) {}

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.user.token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(`${this.replica.api}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) {
      const err = (await res.json().catch(() => ({}))) as { error?: string; message?: string };
      const code = err.error ?? (res.status === 404 ? "not_found" : `http_${res.status}`);
      throw new ApiError(res.status, code, err.message ?? `HTTP ${res.status}`);
    }
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }
}

const doc = (id: string) => `/documents/${encodeURIComponent(id)}`;

function readRoute(): Route {
  const q = new URLSearchParams(location.search);
  const n = Number.parseInt(q.get("replica") ?? "1", 10);
  return {
    user: q.get("user") || null,
    replica: Number.isFinite(n) && n >= 1 ? n : 1,
    doc: q.get("doc") || null,
  };
}

function writeRoute(route: Route): void {
  const q = new URLSearchParams(location.search);
  for (const [key, value] of [
    ["user", route.user],
    ["replica", route.user || route.replica !== 1 ? String(route.replica) : null],
    ["doc", route.user ? route.doc : null],
  ] as const) {
    if (value) q.set(key, value);
    else q.delete(key);
  }
  const search = q.toString();
  const url = `${location.pathname}${search ? `?${search}` : ""}${location.hash}`;
  if (url !== `${location.pathname}${location.search}${location.hash}`) history.replaceState(null, "", url);
}

/** The WebSocket URL of a replica: absolute as configured, or a path on this origin. */
function wsUrl(ws: string): string {
  if (/^wss?:\/\//i.test(ws)) return ws;
  const u = new URL(ws, location.href);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  return u.href;
}

// ---------------------------------------------------------------------------------------------
// Small DOM helpers

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | ((ev: never) => void)>;

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "function") {
      el.addEventListener(key.replace(/^on/, ""), value as EventListener);
    } else if (key === "class") {
      el.className = String(value);
    } else if (key === "value" && "value" in el) {
      (el as HTMLInputElement).value = String(value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Replaces an element's children, skipping the empty ones. */
function replace(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren();
  append(el, children);
}

function append(el: Element, children: (Child | Child[])[]): void {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === "number" ? String(c) : c);
  }
}

const ICONS = {
  pencil:
    '<path d="M11.5 2.5l2 2L6 12H4v-2z"/><path d="M10 4l2 2"/>',
  trash:
    '<path d="M3 4.5h10M6.5 4.5V3h3v1.5M4.5 4.5l.6 8.5h5.8l.6-8.5"/>',
  refresh: '<path d="M13 8a5 5 0 1 1-1.5-3.5"/><path d="M13 2.5V5h-2.5"/>',
  close: '<path d="M4 4l8 8M12 4l-8 8"/>',
  plus: '<path d="M8 3v10M3 8h10"/>',
  clock: '<circle cx="8" cy="8" r="5.5"/><path d="M8 5v3l2 1.5"/>',
  lock: '<rect x="3.5" y="7" width="9" height="6.5" rx="1"/><path d="M5.5 7V5a2.5 2.5 0 0 1 5 0v2"/>',
} as const;

function icon(name: keyof typeof ICONS): SVGSVGElement {
  const t = document.createElement("template");
  t.innerHTML = `<svg class="icon" viewBox="0 0 16 16" width="16" height="16" fill="none" stroke="currentColor" stroke-width="1.5" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">${ICONS[name]}</svg>`;
  return t.content.firstElementChild as SVGSVGElement;
}

function brandMark(): HTMLElement {
  const el = h("span", { class: "brand-mark", "aria-hidden": "true" });
  el.innerHTML =
    '<svg viewBox="0 0 16 16" width="16" height="16" fill="none" stroke="currentColor" stroke-width="1.7" stroke-linecap="round" stroke-linejoin="round"><path d="M6 4.5L2.5 8 6 11.5M10 4.5l3.5 3.5-3.5 3.5"/></svg>';
  return el;
}

function toast(message: string, kind: "info" | "error" = "info"): void {
  let box = document.querySelector<HTMLElement>(".toasts");
  if (!box) document.body.append((box = h("div", { class: "toasts", "aria-live": "polite" })));
  const t = h("div", { class: `toast toast-${kind}`, "data-testid": "toast", role: kind === "error" ? "alert" : "status" }, message);
  box.append(t);
  setTimeout(() => t.remove(), kind === "error" ? 7000 : 3500);
}

function errorText(e: unknown): string {
  if (e instanceof ApiError || e instanceof CollabError) return e.message;
  if (e instanceof TypeError) return "the server could not be reached";
  return e instanceof Error ? e.message : String(e);
}

function relativeTime(iso: string): string {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return "";
  const s = Math.round((t - Date.now()) / 1000);
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const a = Math.abs(s);
  if (a < 45) return rtf.format(s, "second");
  if (a < 2700) return rtf.format(Math.round(s / 60), "minute");
  if (a < 64800) return rtf.format(Math.round(s / 3600), "hour");
  return rtf.format(Math.round(s / 86400), "day");
}

// ---------------------------------------------------------------------------------------------
// Users' colours, file types

const PALETTE = [
  "#e03131", "#c2255c", "#9c36b5", "#6741d9", "#3b5bdb",
  "#1971c2", "#0c8599", "#099268", "#2f9e44", "#e8590c",
];

/** A stable colour per user name (FNV-1a into the palette). */
function colorFor(name: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return PALETTE[h % PALETTE.length]!;
}

function avatar(name: string, color: string): HTMLElement {
  // The initial is drawn by CSS (attr()), so that it stays out of the text of what holds it.
  const el = h("span", { class: "avatar", "aria-hidden": "true", "data-initial": (name.trim()[0] ?? "?").toUpperCase() });
  el.style.setProperty("--c", color);
  return el;
}

function extensionOf(title: string): string {
  const m = /\.([A-Za-z0-9]+)$/.exec(title.trim());
  return m ? m[1]!.toLowerCase() : "";
}

interface FileType {
  label: string;
  kind: string;
  language: () => Extension;
}

function fileType(title: string): FileType {
  const ext = extensionOf(title);
  switch (ext) {
    case "rs":
      return { label: "Rust", kind: "rs", language: () => rust() };
    case "js":
    case "mjs":
      return { label: "JavaScript", kind: "js", language: () => javascript() };
    case "jsx":
      return { label: "JavaScript (JSX)", kind: "js", language: () => javascript({ jsx: true }) };
    case "ts":
      return { label: "TypeScript", kind: "ts", language: () => javascript({ typescript: true }) };
    case "tsx":
      return { label: "TypeScript (TSX)", kind: "ts", language: () => javascript({ jsx: true, typescript: true }) };
    case "py":
      return { label: "Python", kind: "py", language: () => python() };
    case "md":
      return {
        label: "Markdown",
        kind: "md",
        language: () => markdown({ codeLanguages: fencedLanguage }),
      };
    default:
      return { label: "Plain text", kind: "txt", language: () => [] };
  }
}

/** Highlighting for fenced code blocks in Markdown. */
function fencedLanguage(info: string): Language | null {
  switch (info.trim().toLowerCase()) {
    case "rust":
    case "rs":
      return rustLanguage;
    case "js":
    case "javascript":
    case "mjs":
      return javascriptLanguage;
    case "ts":
    case "typescript":
      return typescriptLanguage;
    case "py":
    case "python":
      return pythonLanguage;
    default:
      return null;
  }
}

function fileBadge(title: string): HTMLElement {
  const t = fileType(title);
  return h("span", { class: `file-badge file-${t.kind}`, title: t.label, "aria-hidden": "true" }, t.kind.toUpperCase());
}

// ---------------------------------------------------------------------------------------------
// The app: a shell per (user, replica), a document view per open document

let config: Config | null = null;
let shell: Shell | null = null;
const root = (): HTMLElement => document.getElementById("app") ?? document.body;

function navigate(patch: Partial<Route>): void {
  writeRoute({ ...readRoute(), ...patch });
  render();
}

function render(): void {
  if (!config) return;
  const route = readRoute();
  const replicaIndex = Math.min(Math.max(route.replica, 1), config.replicas.length);
  const user = config.users.find((u) => u.name === route.user) ?? null;
  if (!user) {
    shell?.destroy();
    shell = null;
    renderSignIn(route.user);
    return;
  }
  if (!shell || shell.session.user !== user || shell.session.replicaIndex !== replicaIndex) {
    shell?.destroy();
    shell = new Shell(new Session(user, config.replicas[replicaIndex - 1]!, replicaIndex));
  }
  shell.show(route.doc);
}

function replicaPicker(current: number): HTMLElement | null {
  if (!config || config.replicas.length < 2) return null;
  const select = h(
    "select",
    {
      "data-testid": "replica",
      class: "replica-select",
      "aria-label": "Replica",
      onchange: (ev: Event) => navigate({ replica: Number((ev.target as HTMLSelectElement).value) }),
    },
    config.replicas.map((r, i) => h("option", { value: String(i + 1), selected: i + 1 === current }, r.name)),
  );
  return h("label", { class: "replica-picker", title: "Which replica this page talks to" }, h("span", { class: "dim" }, "Replica"), select);
}

function topbar(right: Child[], replica: number): HTMLElement {
  return h(
    "header",
    { class: "topbar" },
    h("div", { class: "brand" }, brandMark(), h("span", null, "collab")),
    replicaPicker(replica),
    h("div", { class: "spacer" }),
    ...right,
  );
}

function renderSignIn(unknownUser: string | null): void {
  const cfg = config!;
  const route = readRoute();
  const buttons = cfg.users.map((u) =>
    h(
      "button",
      {
        class: "signin-button",
        "data-testid": `signin-${u.name}`,
        onclick: () => navigate({ user: u.name, doc: route.doc }),
      },
      avatar(u.name, colorFor(u.name)),
      h("span", { class: "signin-name" }, u.name),
      h("span", { class: "signin-go", "aria-hidden": "true" }),
    ),
  );
  root().replaceChildren(
    topbar([], route.replica),
    h(
      "main",
      { class: "signin" },
      h(
        "div",
        { class: "card signin-card" },
        h("h1", null, "Sign in"),
        h("p", { class: "dim" }, "Choose who you are. Each user has a development token from the local stack."),
        unknownUser ? h("p", { class: "notice" }, `There is no user called “${unknownUser}” in config.json.`) : null,
        h("div", { class: "signin-list" }, buttons),
      ),
    ),
  );
}

/** The signed-in page: top bar, document list, and the open document. */
class Shell {
  private readonly sidebarList = h("ul", { class: "doc-list", "data-testid": "doc-list" });
  private readonly main = h("main", { class: "main" });
  private readonly panel = h("aside", { class: "panel", "aria-label": "Document details" });
  private readonly workspace: HTMLElement;
  private docs: DocumentSummary[] = [];
  private docsKey = "";
  private listState: "loading" | "ok" | "error" = "loading";
  private current: DocView | null = null;
  private currentId: string | null = null;
  private poll: ReturnType<typeof setInterval>;
  private destroyed = false;

  constructor(readonly session: Session) {
    const me = session.user.name;
    const title = h("input", {
      "data-testid": "new-title",
      class: "input",
      placeholder: "New file name",
      "aria-label": "New document title",
      maxlength: 512,
      required: true,
    });
    const create = h(
      "form",
      {
        class: "create-form",
        onsubmit: (ev: Event) => {
          ev.preventDefault();
          void this.create(title);
        },
      },
      title,
      h("button", { class: "button primary", type: "submit", "data-testid": "create", title: "Create" }, icon("plus"), h("span", null, "Create")),
    );
    this.workspace = h(
      "div",
      { class: "workspace no-doc" },
      h(
        "aside",
        { class: "sidebar", "aria-label": "Documents" },
        create,
        h(
          "div",
          { class: "section-head" },
          h("h2", null, "Documents"),
          h("button", { class: "icon-button", title: "Refresh", "aria-label": "Refresh the list", onclick: () => void this.refresh() }, icon("refresh")),
        ),
        this.sidebarList,
      ),
      this.main,
      this.panel,
    );
    root().replaceChildren(
      topbar(
        [
          h("div", { class: "me", "data-testid": "me" }, avatar(me, colorFor(me)), h("span", null, me)),
          h(
            "a",
            {
              href: "?",
              class: "signout",
              "data-testid": "signout",
              onclick: (ev: Event) => {
                ev.preventDefault();
                navigate({ user: null, doc: null });
              },
            },
            "Sign out",
          ),
        ],
        session.replicaIndex,
      ),
      this.workspace,
    );
    this.renderList();
    void this.refresh();
    this.poll = setInterval(() => {
      if (document.visibilityState === "visible") void this.refresh();
    }, 5000);
  }

  destroy(): void {
    this.destroyed = true;
    clearInterval(this.poll);
    this.current?.destroy();
    this.current = null;
  }

  /** Shows document `id` (or none) in the main area. */
  show(id: string | null): void {
    if (id === this.currentId && (id === null || (this.current && !this.current.failed))) return;
    this.current?.destroy();
    this.current = null;
    this.currentId = id;
    this.workspace.classList.remove("has-diff");
    this.panel.replaceChildren();
    if (id === null) {
      this.workspace.classList.add("no-doc");
      this.main.replaceChildren(
        h(
          "div",
          { class: "empty-state" },
          h("div", { class: "empty-art", "aria-hidden": "true" }, "{ }"),
          h("h2", null, "No document open"),
          h("p", { class: "dim" }, "Pick one from the list, or create a new file to start editing together."),
        ),
      );
    } else {
      this.workspace.classList.remove("no-doc");
      this.current = new DocView(this, id, this.main, this.panel, this.workspace);
    }
    this.renderList();
  }

  summary(id: string): DocumentSummary | undefined {
    return this.docs.find((d) => d.id === id);
  }

  async refresh(): Promise<void> {
    try {
      const { documents } = await this.session.request<{ documents: DocumentSummary[] }>("GET", "/documents");
      if (this.destroyed) return;
      documents.sort((a, b) => b.created_at.localeCompare(a.created_at) || a.id.localeCompare(b.id));
      const key = JSON.stringify(documents);
      const changed = key !== this.docsKey || this.listState !== "ok";
      this.docs = documents;
      this.docsKey = key;
      this.listState = "ok";
      if (changed) {
        this.renderList();
        this.current?.summaryChanged(this.summary(this.current.id));
      }
    } catch (e) {
      if (this.destroyed) return;
      if (this.listState !== "ok") {
        this.listState = "error";
        this.renderList(errorText(e));
      }
    }
  }

  private renderList(error?: string): void {
    const items: HTMLElement[] = [];
    if (this.listState === "loading") {
      items.push(h("li", { class: "list-note" }, "Loading…"));
    } else if (this.listState === "error") {
      items.push(h("li", { class: "list-note error-text" }, `Could not load the documents: ${error ?? "error"}`));
    } else if (this.docs.length === 0) {
      items.push(h("li", { class: "list-note" }, "No documents yet. Create one above."));
    }
    for (const d of this.docs) {
      const owner = d.role === "owner";
      items.push(
        h(
          "li",
          {
            class: `doc-item${d.id === this.currentId ? " active" : ""}`,
            "data-testid": "doc-item",
            "data-id": d.id,
            "data-role": d.role,
            tabindex: 0,
            role: "button",
            "aria-current": d.id === this.currentId ? "page" : null,
            onclick: () => navigate({ doc: d.id }),
            onkeydown: (ev: KeyboardEvent) => {
              if ((ev.key === "Enter" || ev.key === " ") && ev.target === ev.currentTarget) {
                ev.preventDefault();
                navigate({ doc: d.id });
              }
            },
          },
          fileBadge(d.title),
          h(
            "div",
            { class: "doc-item-text" },
            h("span", { class: "doc-item-title", "data-testid": "doc-title", title: d.title }, d.title),
            h(
              "span",
              { class: "doc-item-meta" },
              h("span", { class: `role role-${d.role}`, "data-testid": "doc-role" }, d.role),
              owner ? null : h("span", { class: "dim" }, ` · ${d.owner_id}`),
            ),
          ),
          owner
            ? h(
                "div",
                { class: "doc-item-actions" },
                h(
                  "button",
                  {
                    class: "icon-button",
                    "data-testid": "rename",
                    title: "Rename",
                    "aria-label": `Rename ${d.title}`,
                    onclick: (ev: Event) => {
                      ev.stopPropagation();
                      void this.rename(d);
                    },
                  },
                  icon("pencil"),
                ),
                h(
                  "button",
                  {
                    class: "icon-button danger",
                    "data-testid": "delete",
                    title: "Delete",
                    "aria-label": `Delete ${d.title}`,
                    onclick: (ev: Event) => {
                      ev.stopPropagation();
                      void this.remove(d);
                    },
                  },
                  icon("trash"),
                ),
              )
            : null,
        ),
      );
    }
    this.sidebarList.replaceChildren(...items);
  }

  private async create(input: HTMLInputElement): Promise<void> {
    const title = input.value.trim();
    if (!title) {
      input.focus();
      return;
    }
    try {
      const created = await this.session.request<DocumentSummary>("POST", "/documents", { title });
      if (this.destroyed) return;
      input.value = "";
      this.docs = [created, ...this.docs.filter((d) => d.id !== created.id)];
      this.listState = "ok";
      this.renderList();
      navigate({ doc: created.id });
      void this.refresh();
    } catch (e) {
      toast(`Could not create “${title}”: ${errorText(e)}`, "error");
    }
  }

  async rename(d: DocumentSummary): Promise<void> {
    const answer = prompt(`Rename “${d.title}” to:`, d.title);
    const title = answer?.trim();
    if (!title || title === d.title) return;
    try {
      const renamed = await this.session.request<DocumentSummary>("PATCH", doc(d.id), { title });
      if (this.destroyed) return;
      this.docs = this.docs.map((x) => (x.id === renamed.id ? { ...x, ...renamed } : x));
      this.docsKey = "";
      this.renderList();
      this.current?.summaryChanged(this.summary(d.id));
      void this.refresh();
    } catch (e) {
      toast(`Could not rename: ${errorText(e)}`, "error");
    }
  }

  async remove(d: DocumentSummary): Promise<void> {
    if (!confirm(`Delete “${d.title}” for everyone? This cannot be undone.`)) return;
    const isCurrent = this.currentId === d.id;
    if (isCurrent) this.current?.leaving();
    try {
      await this.session.request<void>("DELETE", doc(d.id));
      if (this.destroyed) return;
      this.docs = this.docs.filter((x) => x.id !== d.id);
      this.docsKey = "";
      this.renderList();
      if (isCurrent && readRoute().doc === d.id) navigate({ doc: null });
      toast(`Deleted “${d.title}”`);
      void this.refresh();
    } catch (e) {
      if (isCurrent) this.current?.stayed();
      toast(`Could not delete: ${errorText(e)}`, "error");
    }
  }
}

const STATUS_TEXT: Record<Status, string> = {
  online: "All changes are live",
  syncing: "Catching up with the server…",
  connecting: "Connecting…",
  offline: "Offline — edits are kept and sent when the connection returns",
  closed: "Closed",
};

/** One open document: header, editor, people, sharing, history. */
class DocView {
  private destroyed = false;
  private suppressEnd = false;
  /** Showing an error instead of the document (opening it again starts over). */
  failed = false;
  private doc: CollabDocument | null = null;
  private view: EditorView | null = null;
  private readonly language = new Compartment();
  private title = "";
  private role: Role | null = null;
  private readonly cleanups: (() => void)[] = [];
  private statusEl: HTMLElement | null = null;
  private statusPill: HTMLElement | null = null;
  private waitingEl: HTMLElement | null = null;
  private titleEl: HTMLElement | null = null;
  private badgeSlot: HTMLElement | null = null;
  private peersEl: HTMLElement | null = null;
  private collaboratorsEl: HTMLElement | null = null;
  private snapshotsEl: HTMLElement | null = null;
  private diffEl: HTMLElement | null = null;
  private diffFor: { version: number; text: string; created_at: string } | null = null;
  private diffTimer: ReturnType<typeof setTimeout> | null = null;
  private snapshotsKey = "";

  constructor(
    private readonly shell: Shell,
    readonly id: string,
    private readonly main: HTMLElement,
    private readonly panel: HTMLElement,
    private readonly workspace: HTMLElement,
  ) {
    this.main.replaceChildren(h("div", { class: "loading", "data-testid": "loading" }, h("span", { class: "spinner" }), "Opening…"));
    void this.start();
  }

  private get session(): Session {
    return this.shell.session;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.teardown();
    if (window.collab && window.collab.doc === this.doc) delete window.collab;
  }

  /** The document is about to be deleted from here: its end is not an error. */
  leaving(): void {
    this.suppressEnd = true;
  }

  stayed(): void {
    this.suppressEnd = false;
  }

  private teardown(): void {
    for (const fn of this.cleanups.splice(0)) fn();
    if (this.diffTimer) clearTimeout(this.diffTimer);
    this.view?.destroy();
    this.doc?.close();
  }

  private async start(): Promise<void> {
    const me = this.session.user;
    const [meta, opened] = await Promise.allSettled([
      this.session.request<DocumentSummary>("GET", doc(this.id)),
      open({
        apiUrl: this.session.replica.api,
        wsUrl: wsUrl(this.session.replica.ws),
        token: me.token,
        documentId: this.id,
        name: me.name,
        color: colorFor(me.name),
      }),
    ]);
    if (this.destroyed) {
      if (opened.status === "fulfilled") opened.value.close();
      return;
    }
    const notFound =
      (opened.status === "rejected" && opened.reason instanceof CollabError && opened.reason.code === "not_found") ||
      (meta.status === "rejected" && meta.reason instanceof ApiError && meta.reason.status === 404);
    if (notFound || opened.status === "rejected") {
      if (opened.status === "fulfilled") opened.value.close();
      this.showError(notFound ? "not_found" : opened.status === "rejected" ? opened.reason : "error", true);
      return;
    }
    const d = opened.value;
    this.doc = d;
    const summary = meta.status === "fulfilled" ? meta.value : this.shell.summary(this.id);
    this.title = summary?.title ?? "Untitled";
    this.role = summary?.role ?? (d.readOnly ? "viewer" : null);

    const statuses: string[] = [d.status];
    this.cleanups.push(
      d.on("status", (s) => {
        if (statuses[statuses.length - 1] !== s) statuses.push(s);
        this.updateStatus();
      }),
      d.on("change", () => {
        this.updateStatus();
        this.diffSoon();
      }),
      d.on("presence", () => this.renderPeers()),
      d.on("ended", (err) => this.ended(err)),
      d.on("error", (err) => console.warn("collab:", err.code, err.message)),
    );
    const tick = setInterval(() => this.updateStatus(), 250);
    this.cleanups.push(() => clearInterval(tick));

    this.renderMain(d);
    this.renderPanel();
    const view = this.view!;
    window.collab = { doc: d, view, statuses };
    // Tell the others we are here straight away, not only once the caret moves.
    const sel = view.state.selection.main;
    d.setPresence(sel.head, sel.anchor);
    if (!d.readOnly) view.focus();
    void this.loadCollaborators();
    void this.loadSnapshots();
    const poll = setInterval(() => {
      if (document.visibilityState === "visible") void this.loadSnapshots();
    }, 5000);
    this.cleanups.push(() => clearInterval(poll));
  }

  private renderMain(d: CollabDocument): void {
    const type = fileType(this.title);
    this.statusEl = h("span", { "data-testid": "status", class: "status-word" }, d.status);
    this.statusPill = h(
      "div",
      { class: "status-pill", "data-status": d.status, title: STATUS_TEXT[d.status] },
      h("span", { class: "dot", "aria-hidden": "true" }),
      this.statusEl,
    );
    this.waitingEl = h("span", { "data-testid": "waiting", class: "waiting-count" }, String(d.unacknowledged));
    this.titleEl = h("h1", { class: "doc-title", "data-testid": "title", title: this.title }, this.title);
    this.badgeSlot = h("span", { class: "badges" });
    this.renderBadges(d);
    const header = h(
      "div",
      { class: "doc-header" },
      h("div", { class: "doc-heading" }, fileBadge(this.title), this.titleEl, this.badgeSlot),
      h(
        "div",
        { class: "doc-state" },
        h("span", { class: "lang-name", "data-testid": "language" }, type.label),
        h("span", { class: "waiting", title: "Local edits the server has not acknowledged yet" }, this.waitingEl, h("span", { class: "dim" }, " unsent")),
        this.statusPill,
      ),
    );
    const editor = h("div", { class: "editor", "data-testid": "editor" });
    this.view = new EditorView({
      doc: d.text,
      extensions: [basicSetup, this.language.of(type.language()), collab(d), EditorView.lineWrapping, editorTheme],
      parent: editor,
    });
    this.main.replaceChildren(header, editor);
  }

  private renderBadges(d: CollabDocument): void {
    const slot = this.badgeSlot;
    if (!slot) return;
    replace(slot,
      this.role ? h("span", { class: `role role-${this.role}`, "data-testid": "role" }, this.role) : null,
      d.readOnly
        ? h("span", { class: "badge badge-readonly", "data-testid": "readonly", title: "You can read this document but not edit it" }, icon("lock"), "Read-only")
        : null,
    );
  }

  private updateStatus(): void {
    const d = this.doc;
    if (!d || this.destroyed) return;
    const s = d.status;
    if (this.statusEl && this.statusEl.textContent !== s) {
      this.statusEl.textContent = s;
      this.statusPill?.setAttribute("data-status", s);
      this.statusPill?.setAttribute("title", STATUS_TEXT[s]);
    }
    const waiting = String(d.unacknowledged);
    if (this.waitingEl && this.waitingEl.textContent !== waiting) {
      this.waitingEl.textContent = waiting;
      this.waitingEl.parentElement?.classList.toggle("pending", d.unacknowledged > 0);
    }
  }

  /** The list's entry for this document changed (a rename, a new role). */
  summaryChanged(summary: DocumentSummary | undefined): void {
    if (!summary || !this.doc || !this.view || this.destroyed) return;
    this.role = summary.role;
    this.renderBadges(this.doc);
    if (summary.title === this.title) return;
    const before = fileType(this.title);
    this.title = summary.title;
    if (this.titleEl) {
      this.titleEl.textContent = summary.title;
      this.titleEl.title = summary.title;
    }
    const after = fileType(summary.title);
    const badge = this.titleEl?.previousElementSibling;
    if (badge) badge.replaceWith(fileBadge(summary.title));
    const lang = this.main.querySelector('[data-testid="language"]');
    if (lang) lang.textContent = after.label;
    if (before.label !== after.label) this.view.dispatch({ effects: this.language.reconfigure(after.language()) });
  }

  // -- the right panel ------------------------------------------------------------------------

  private renderPanel(): void {
    this.peersEl = h("div", { class: "peers", "data-testid": "peers" });
    this.renderPeers();
    const sections: HTMLElement[] = [
      h("section", { class: "panel-section" }, h("h2", null, "People here"), this.peersEl),
    ];

    this.collaboratorsEl = h("ul", { class: "collaborators", "data-testid": "collaborators" }, h("li", { class: "list-note" }, "Loading…"));
    const share = this.role === "owner" ? this.shareForm() : null;
    sections.push(
      h("section", { class: "panel-section" }, h("h2", null, share ? "Share" : "Access"), share, this.collaboratorsEl),
    );

    this.snapshotsEl = h("ul", { class: "snapshots" }, h("li", { class: "list-note" }, "Loading…"));
    this.diffEl = h("div", { class: "diff-pane", "data-testid": "diff", hidden: true });
    sections.push(
      h(
        "section",
        { class: "panel-section history", "data-testid": "history" },
        h(
          "div",
          { class: "section-head" },
          h("h2", null, "History"),
          h("button", { class: "icon-button", title: "Refresh", "aria-label": "Refresh the history", onclick: () => void this.loadSnapshots(true) }, icon("refresh")),
        ),
        this.snapshotsEl,
        this.diffEl,
      ),
    );
    this.panel.replaceChildren(...sections);
  }

  private renderPeers(): void {
    const d = this.doc;
    const el = this.peersEl;
    if (!d || !el || this.destroyed) return;
    const me = this.session.user.name;
    const chip = (p: { name: string; user: string; color: string; connection: string }, you: boolean) => {
      const c = h(
        "span",
        {
          class: `peer${you ? " you" : ""}`,
          "data-testid": "peer",
          "data-user": p.user,
          "data-connection": p.connection || null,
          title: you ? `${p.name} (you)` : p.name,
        },
        avatar(p.name, p.color),
        h("span", { class: "peer-name" }, p.name),
        you ? h("span", { class: "peer-you" }, " (you)") : null,
      );
      c.style.setProperty("--c", p.color);
      return c;
    };
    const seen = new Set<string>();
    const others: Peer[] = [];
    for (const p of d.peers()) {
      if (seen.has(p.connection)) continue;
      seen.add(p.connection);
      others.push(p);
    }
    others.sort((a, b) => a.name.localeCompare(b.name) || a.connection.localeCompare(b.connection));
    replace(el,
      chip({ name: me, user: me, color: colorFor(me), connection: "" }, true),
      ...others.map((p) => chip(p, false)),
      others.length === 0 ? h("p", { class: "dim small" }, "Nobody else is here right now.") : null,
    );
  }

  private shareForm(): HTMLElement {
    const me = this.session.user.name;
    const others = (config?.users ?? []).map((u) => u.name).filter((n) => n !== me);
    const listId = `share-users-${Math.random().toString(36).slice(2)}`;
    const user = h("input", {
      class: "input",
      "data-testid": "share-user",
      placeholder: "User, e.g. bob",
      "aria-label": "User to share with",
      list: listId,
      autocomplete: "off",
    });
    const role = h(
      "select",
      { class: "select", "data-testid": "share-role", "aria-label": "Role" },
      h("option", { value: "editor" }, "editor"),
      h("option", { value: "viewer" }, "viewer"),
    );
    return h(
      "form",
      {
        class: "share-form",
        onsubmit: (ev: Event) => {
          ev.preventDefault();
          void this.share(user, role);
        },
      },
      user,
      h("datalist", { id: listId }, others.map((n) => h("option", { value: n }))),
      role,
      h("button", { class: "button primary", type: "submit", "data-testid": "share" }, "Share"),
    );
  }

  private async share(input: HTMLInputElement, role: HTMLSelectElement): Promise<void> {
    const user = input.value.trim();
    if (!user) {
      input.focus();
      return;
    }
    try {
      const list = await this.session.request<{ collaborators: Collaborator[] }>(
        "PUT",
        `${doc(this.id)}/collaborators/${encodeURIComponent(user)}`,
        { role: role.value },
      );
      if (this.destroyed) return;
      input.value = "";
      this.renderCollaborators(list.collaborators);
      toast(`Shared with ${user} as ${role.value}`);
    } catch (e) {
      toast(`Could not share with ${user}: ${errorText(e)}`, "error");
    }
  }

  private async unshare(user: string): Promise<void> {
    try {
      const list = await this.session.request<{ collaborators: Collaborator[] }>(
        "DELETE",
        `${doc(this.id)}/collaborators/${encodeURIComponent(user)}`,
      );
      if (!this.destroyed) this.renderCollaborators(list.collaborators);
    } catch (e) {
      toast(`Could not remove ${user}: ${errorText(e)}`, "error");
    }
  }

  private async loadCollaborators(): Promise<void> {
    try {
      const list = await this.session.request<{ collaborators: Collaborator[] }>("GET", `${doc(this.id)}/collaborators`);
      if (!this.destroyed) this.renderCollaborators(list.collaborators);
    } catch (e) {
      this.collaboratorsEl?.replaceChildren(h("li", { class: "list-note error-text" }, `Could not load: ${errorText(e)}`));
    }
  }

  private renderCollaborators(list: Collaborator[]): void {
    const el = this.collaboratorsEl;
    if (!el || this.destroyed) return;
    const owner = this.role === "owner";
    const me = this.session.user.name;
    el.replaceChildren(
      ...list.map((c) =>
        h(
          "li",
          { class: "collaborator", "data-testid": "collaborator", "data-user": c.user_id, "data-role": c.role },
          avatar(c.user_id, colorFor(c.user_id)),
          h("span", { class: "collaborator-name" }, c.user_id, c.user_id === me ? h("span", { class: "dim" }, " (you)") : null),
          h("span", { class: `role role-${c.role}` }, c.role),
          owner && c.role !== "owner"
            ? h(
                "button",
                {
                  class: "icon-button danger",
                  "data-testid": "unshare",
                  title: `Remove ${c.user_id}`,
                  "aria-label": `Remove ${c.user_id}`,
                  onclick: () => void this.unshare(c.user_id),
                },
                icon("close"),
              )
            : null,
        ),
      ),
    );
  }

  // -- history --------------------------------------------------------------------------------

  private async loadSnapshots(force = false): Promise<void> {
    const el = this.snapshotsEl;
    if (!el) return;
    let snapshots: SnapshotMeta[];
    try {
      ({ snapshots } = await this.session.request<{ snapshots: SnapshotMeta[] }>("GET", `${doc(this.id)}/snapshots`));
    } catch (e) {
      if (!this.destroyed && (force || !this.snapshotsKey)) {
        el.replaceChildren(h("li", { class: "list-note error-text" }, `Could not load the history: ${errorText(e)}`));
        this.snapshotsKey = "";
      }
      return;
    }
    if (this.destroyed) return;
    const key = JSON.stringify(snapshots.map((s) => [s.version, s.created_at]));
    if (key === this.snapshotsKey && !force) return;
    this.snapshotsKey = key;
    if (snapshots.length === 0) {
      el.replaceChildren(
        h(
          "li",
          { class: "list-note", "data-testid": "no-snapshots" },
          "No snapshots yet. One is written each time the server compacts the document's log, after enough edits.",
        ),
      );
      return;
    }
    const newest = [...snapshots].sort((a, b) => b.version - a.version);
    el.replaceChildren(
      ...newest.map((s) =>
        h(
          "li",
          {
            class: `snapshot${this.diffFor?.version === s.version ? " active" : ""}`,
            "data-testid": "snapshot",
            "data-version": s.version,
            tabindex: 0,
            role: "button",
            title: new Date(s.created_at).toLocaleString(),
            onclick: () => void this.openSnapshot(s),
            onkeydown: (ev: KeyboardEvent) => {
              if (ev.key === "Enter" || ev.key === " ") {
                ev.preventDefault();
                void this.openSnapshot(s);
              }
            },
          },
          icon("clock"),
          h("span", { class: "snapshot-name" }, `Snapshot #${s.version}`),
          h("span", { class: "dim small" }, relativeTime(s.created_at)),
        ),
      ),
    );
  }

  private async openSnapshot(s: SnapshotMeta): Promise<void> {
    const pane = this.diffEl;
    if (!pane) return;
    for (const li of this.snapshotsEl?.querySelectorAll(".snapshot") ?? []) {
      li.classList.toggle("active", li.getAttribute("data-version") === String(s.version));
    }
    try {
      const snap = await this.session.request<{ version: number; text: string }>("GET", `${doc(this.id)}/snapshots/${s.version}`);
      if (this.destroyed || !this.doc) return;
      this.diffFor = { version: snap.version, text: snap.text, created_at: s.created_at };
      this.renderDiff();
    } catch (e) {
      toast(`Could not load snapshot #${s.version}: ${errorText(e)}`, "error");
    }
  }

  private closeDiff(): void {
    this.diffFor = null;
    if (this.diffEl) {
      this.diffEl.hidden = true;
      this.diffEl.replaceChildren();
    }
    this.workspace.classList.remove("has-diff");
    for (const li of this.snapshotsEl?.querySelectorAll(".snapshot") ?? []) li.classList.remove("active");
  }

  private diffSoon(): void {
    if (!this.diffFor || this.diffTimer) return;
    this.diffTimer = setTimeout(() => {
      this.diffTimer = null;
      this.renderDiff();
    }, 300);
  }

  private renderDiff(): void {
    const pane = this.diffEl;
    const snap = this.diffFor;
    if (!pane || !snap || !this.doc || this.destroyed) return;
    const previousBody = pane.querySelector(".diff-body");
    const scrollTop = previousBody?.scrollTop ?? 0;
    const ops = diffLines(snap.text, this.doc.text);
    const { added, removed } = summarize(ops);
    const rows = toRows(ops);
    const oldCol = h("div", { class: "diff-col diff-old", "data-testid": "diff-old", "aria-label": `Snapshot #${snap.version}` });
    const newCol = h("div", { class: "diff-col diff-new", "data-testid": "diff-new", "aria-label": "Current text" });
    fillColumns(rows, oldCol, newCol);
    const body = h("div", { class: "diff-body" }, oldCol, newCol);
    replace(pane,
      h(
        "div",
        { class: "diff-head" },
        h("div", { class: "diff-side-title" }, icon("clock"), `Snapshot #${snap.version}`, h("span", { class: "dim small" }, ` · ${relativeTime(snap.created_at)}`)),
        h(
          "div",
          { class: "diff-side-title" },
          "Current",
          h("span", { class: "diff-stats" }, h("span", { class: "stat-add" }, `+${added}`), " ", h("span", { class: "stat-del" }, `−${removed}`)),
          h("div", { class: "spacer" }),
          h("button", { class: "icon-button", "data-testid": "diff-close", title: "Close the diff", "aria-label": "Close the diff", onclick: () => this.closeDiff() }, icon("close")),
        ),
      ),
      added === 0 && removed === 0 ? h("div", { class: "diff-nochange" }, "No differences: the current text is the same as this snapshot.") : null,
      body,
    );
    pane.hidden = false;
    this.workspace.classList.add("has-diff");
    body.scrollTop = scrollTop;
  }

  // -- errors ---------------------------------------------------------------------------------

  private ended(err: CollabError): void {
    if (this.destroyed || this.suppressEnd) return;
    this.updateStatus();
    void this.shell.refresh();
    this.showError(err, false);
  }

  /** Replaces the document (and everything showing its text) with an explanation. */
  private showError(reason: unknown, opening: boolean): void {
    const code = reason === "not_found" ? "not_found" : reason instanceof CollabError || reason instanceof ApiError ? reason.code : "error";
    const status = this.doc?.status;
    this.failed = true;
    this.view?.destroy();
    this.view = null;
    this.diffFor = null;
    this.workspace.classList.remove("has-diff");
    this.panel.replaceChildren();
    this.workspace.classList.add("no-doc");
    let title: string;
    let detail: string;
    switch (code) {
      case "not_found":
        title = "Document not found";
        detail = opening
          ? "It does not exist on this replica, or you do not have access to it."
          : "This document was not found any more: it was deleted, or your access to it was removed.";
        break;
      case "forbidden":
        title = "No access";
        detail = "You are not allowed to open this document.";
        break;
      case "unauthorized":
        title = "Signed out";
        detail = "The server refused your token. Sign in again.";
        break;
      case "refused":
        title = "Changes refused";
        detail = "The server refused this editor's changes, so this copy can no longer sync. Reload the page to continue.";
        break;
      default:
        title = "Could not open the document";
        detail = `Something went wrong: ${errorText(reason)}.`;
    }
    replace(this.main,
      status
        ? h(
            "div",
            { class: "doc-header compact" },
            h("div", { class: "doc-heading" }, h("h1", { class: "doc-title dim", "data-testid": "title" }, this.title)),
            h("div", { class: "doc-state" }, this.statusPill),
          )
        : null,
      h(
        "div",
        { class: "error-wrap" },
        h(
          "div",
          { class: "card error-card", "data-testid": "error", role: "alert", "data-code": code },
          h("h2", null, title),
          h("p", null, detail),
          h(
            "div",
            { class: "error-actions" },
            h("button", { class: "button", onclick: () => navigate({ doc: null }) }, "Back to documents"),
            code === "not_found" || code === "forbidden"
              ? null
              : h(
                  "button",
                  {
                    class: "button primary",
                    onclick: () => {
                      this.shell.show(null);
                      navigate({ doc: this.id });
                    },
                  },
                  "Retry",
                ),
          ),
        ),
      ),
    );
  }
}

/** Fills the two diff columns, folding long unchanged runs down to a few lines of context. */
function fillColumns(rows: DiffRow[], oldCol: HTMLElement, newCol: HTMLElement): void {
  const CONTEXT = 3;
  const changed = rows.map((r) => r.left?.kind !== "same" || r.right?.kind !== "same");
  const anyChange = changed.some(Boolean);
  // Line numbers and +/− marks are drawn by CSS, so a line's text is exactly the line.
  const line = (cell: DiffRow["left"] | DiffRow["right"]) =>
    cell
      ? h(
          "div",
          { class: `diff-line diff-${cell.kind}`, "data-kind": cell.kind, "data-line": cell.no },
          h("span", { class: "tx" }, cell.text),
        )
      : h("div", { class: "diff-line diff-empty", "data-kind": "empty" }, h("span", { class: "tx" }));
  let i = 0;
  while (i < rows.length) {
    if (changed[i] || !anyChange) {
      oldCol.append(line(rows[i]!.left));
      newCol.append(line(rows[i]!.right));
      i++;
      continue;
    }
    let j = i;
    while (j < rows.length && !changed[j]) j++;
    // rows[i..j) are unchanged: keep CONTEXT lines next to each change.
    const keepHead = i === 0 ? 0 : CONTEXT;
    const keepTail = j === rows.length ? 0 : CONTEXT;
    if (j - i <= keepHead + keepTail + 2) {
      for (let k = i; k < j; k++) {
        oldCol.append(line(rows[k]!.left));
        newCol.append(line(rows[k]!.right));
      }
    } else {
      for (let k = i; k < i + keepHead; k++) {
        oldCol.append(line(rows[k]!.left));
        newCol.append(line(rows[k]!.right));
      }
      const hidden = rows.slice(i + keepHead, j - keepTail);
      const folds = [0, 1].map(() =>
        h("div", { class: "diff-fold", role: "button", tabindex: 0, title: "Show these lines" }, `⋯ ${hidden.length} unchanged lines`),
      );
      const expand = () => {
        folds[0]!.replaceWith(...hidden.map((r) => line(r.left)));
        folds[1]!.replaceWith(...hidden.map((r) => line(r.right)));
      };
      for (const f of folds) f.addEventListener("click", expand);
      oldCol.append(folds[0]!);
      newCol.append(folds[1]!);
      for (let k = j - keepTail; k < j; k++) {
        oldCol.append(line(rows[k]!.left));
        newCol.append(line(rows[k]!.right));
      }
    }
    i = j;
  }
}

const editorTheme = EditorView.theme({
  "&": { height: "100%", fontSize: "13.5px", backgroundColor: "#fff" },
  ".cm-scroller": {
    fontFamily: 'ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace',
    lineHeight: "1.6",
  },
  ".cm-gutters": { backgroundColor: "#fafbfc", borderRight: "1px solid #eef0f3", color: "#9aa3ae" },
  ".cm-activeLineGutter": { backgroundColor: "#f0f3f7" },
  ".cm-activeLine": { backgroundColor: "#f7f9fc" },
  "&.cm-focused": { outline: "none" },
  ".cm-content": { padding: "10px 0" },
});

// ---------------------------------------------------------------------------------------------
// Start

async function main(): Promise<void> {
  try {
    const res = await fetch("./config.json", { cache: "no-store" });
    if (!res.ok) throw new Error(`config.json answered ${res.status}`);
    const cfg = (await res.json()) as Partial<Config>;
    if (!Array.isArray(cfg.replicas) || cfg.replicas.length === 0 || !Array.isArray(cfg.users)) {
      throw new Error("config.json needs a non-empty `replicas` array and a `users` array");
    }
    config = { replicas: cfg.replicas, users: cfg.users };
  } catch (e) {
    root().replaceChildren(
      h(
        "main",
        { class: "signin" },
        h(
          "div",
          { class: "card error-card", "data-testid": "config-error" },
          h("h2", null, "Could not start"),
          h("p", null, `Loading the configuration failed: ${e instanceof Error ? e.message : String(e)}. Is \`make dev\` running?`),
        ),
      ),
    );
    return;
  }
  render();
}

void main();
