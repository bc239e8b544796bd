// The client an editor embeds: opens a session over HTTP, keeps a local replica, sends local ops
// over the WebSocket (one unacknowledged batch at a time), applies pushed ops in any order, and
// survives the network: it reconnects with backoff, catches up over HTTP, and resends whatever
// was not acknowledged (the server counts resent ops as duplicates, however they are cut).

import { fromBase64, loadWasm, Replica, type Anchor, type ApplyReport, type Op, type Version } from "./replica.js";
import { CollabText, countChars, type TextEvents } from "./text.js";
import type { Peer } from "./codemirror.js";
import { indexedDbStore, type OfflineStore } from "./offline.js";

export type { Peer };

/** Where the connection stands. */
export type Status = "connecting" | "syncing" | "online" | "offline" | "closed";

/** Why a document ended. */
export class CollabError extends Error {
  constructor(
    /**
     * `not_found`, `forbidden`, `unauthorized`, `access_revoked` (a collaborator removed while
     * connected), `document_deleted`, `refused` (the server refused this client's ops) or `closed`.
     */
    readonly code: string,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "CollabError";
  }
}

export interface OpenOptions {
  /** The HTTP API, e.g. `https://abc.execute-api.eu-west-1.amazonaws.com` (make dev: `API_URL`). */
  apiUrl: string;
  /** The WebSocket API (make dev: `WS_URL`). */
  wsUrl: string;
  /** A bearer token. */
  token: string;
  /** Called for a fresh token when the server refuses the current one. */
  getToken?: () => string | Promise<string>;
  documentId: string;
  /** Shown to the other editors. */
  name?: string;
  color?: string;
  /** Most ops per batch (the server's `MAX_BATCH_OPS`, default 1000). */
  maxBatchOps?: number;
  /** Most chars in the document (the server's `MAX_DOCUMENT_CHARS`, default 2 Mi). */
  maxChars?: number;
  /** Reconnect backoff: first delay and cap, in ms (defaults 250 and 10 000), with jitter. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** How long to wait for an acknowledgement or a pong before treating the socket as dead (ms). */
  timeoutMs?: number;
  /** The WebAssembly module, if it is not beside the package (a URL or its bytes). */
  wasm?: URL | string | BufferSource;
  /**
   * Where unacknowledged edits survive a reload: IndexedDB by default where the page has it;
   * `null` for none.
   */
  offline?: OfflineStore | null;
  /** Implementations to use instead of the globals (tests cut the network through these). */
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
}

export interface DocumentEvents extends TextEvents {
  status: Status;
  presence: Peer[];
  /** Something went wrong that the client handled (a malformed push, a refused batch, ...). */
  error: CollabError;
  /** The document ended (deleted, access removed, ...). */
  ended: CollabError;
}

interface PeerState {
  connection: string;
  user: string;
  name: string;
  color: string;
  anchors: { head: Anchor; tail: Anchor } | null;
  /** When its last presence arrived (ms). */
  seen: number;
}

interface SessionJson {
  session: number;
  ssn: number;
  snapshot: string;
}

interface Batch {
  requestId: string;
  /** The seq after the batch's last op: acknowledged, everything before it is stored. */
  end: number;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * API Gateway takes WebSocket frames up to 32 KB and browsers send each message as one frame:
 * keep a message under that, with room for the envelope.
 */
const MAX_MESSAGE = 30_000;
/** The media type of a binary op batch (`GET /operations` answers it to `Accept`). */
const OPS_BINARY = "application/x-rga-ops";
/** A backlog larger than one message goes over HTTP instead, in bodies up to this (1 MiB limit). */
const MAX_HTTP_BODY = 900_000;
const PRESENCE_EVERY_MS = 80;
/** Pings keep the socket alive and renew this editor's presence. */
const PING_EVERY_MS = 15_000;
/** A peer not heard from for this long is gone even if its `presence_gone` never came. */
const PRESENCE_EXPIRES_MS = 50_000;

/**
 * Opens `documentId`: a session (or, for a viewer, a read-only copy), the local replica, and the
 * connection. Resolves once the text is loaded; the socket connects in the background.
 */
export async function open(options: OpenOptions): Promise<CollabDocument> {
  await loadWasm(options.wasm);
  const http = new Http(options);
  const store = options.offline === undefined ? indexedDbStore() : options.offline;
  const key = `${options.apiUrl}|${options.documentId}|${subject(options.token)}`;
  const saved = await store?.load(key).catch(() => null);
  if (store && saved) {
    // Edits from before a reload wait in the saved replica: resume its session and resend them.
    const replica = Replica.decode(saved.replica, saved.session, saved.ssn);
    return new CollabDocument(options, http, replica, saved.session, false, { store, key, acked: saved.acked });
  }
  const id = encodeURIComponent(options.documentId);
  const res = await http.request("POST", `/documents/${id}/sessions?omit=text`);
  if (res.status === 201) {
    const s = (await res.json()) as SessionJson;
    const replica = Replica.decode(fromBase64(s.snapshot), s.session, s.ssn);
    return new CollabDocument(options, http, replica, s.session, false, store ? { store, key } : undefined);
  }
  if (res.status === 404) {
    // Sessions are for editors; a viewer can still read: no session, the whole log, read-only.
    const meta = await http.request("GET", `/documents/${id}`);
    if (meta.ok && ((await meta.json()) as { role?: string }).role === "viewer") {
      const doc = new CollabDocument(options, http, new Replica(0, 1), 0, true);
      await doc.catchUp();
      return doc;
    }
  }
  throw await http.error(res);
}

/** A collaborative document: the text, local edits, status, presence. */
export class CollabDocument extends CollabText<DocumentEvents> {
  /** This editor's session (its RGA site id); 0 for a viewer. */
  readonly session: number;
  private readonly options: OpenOptions;
  private readonly http: Http;
  private _status: Status = "connecting";
  private socket: WebSocket | null = null;
  /** Gives up on the current socket now (and reconnects), without waiting for a closing handshake. */
  private drop: (() => void) | null = null;
  private acked: number;
  private inFlight: Batch | null = null;
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private pongTimer: ReturnType<typeof setTimeout> | null = null;
  private flushQueued = false;
  private closed = false;
  private peerStates = new Map<string, PeerState>();
  private presence: { head: Anchor; tail: Anchor } | null = null;
  private presenceTimer: ReturnType<typeof setTimeout> | null = null;
  private presenceDirty = false;
  private batchCount = 0;
  private readonly saving: { store: OfflineStore; key: string } | null;
  private saveTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly ssn: number;
  private unlisten: (() => void) | null = null;

  /** @internal use {@link open}. */
  constructor(
    options: OpenOptions,
    http: Http,
    replica: Replica,
    session: number,
    readOnly: boolean,
    saving?: { store: OfflineStore; key: string; acked?: number },
  ) {
    super(replica, { readOnly, maxChars: options.maxChars });
    this.options = options;
    this.http = http;
    this.session = session;
    this.acked = saving?.acked ?? replica.nextSeq();
    this.saving = saving ? { store: saving.store, key: saving.key } : null;
    this.ssn = replica.ssn;
    // A browser says when the network goes and comes back: act at once rather than on a timeout.
    const w = globalThis as { addEventListener?: (t: string, f: () => void) => void; removeEventListener?: (t: string, f: () => void) => void };
    if (w.addEventListener && w.removeEventListener) {
      const offline = () => this.drop?.();
      const online = () => this.reconnectNow();
      w.addEventListener("offline", offline);
      w.addEventListener("online", online);
      this.unlisten = () => {
        w.removeEventListener?.("offline", offline);
        w.removeEventListener?.("online", online);
      };
    }
    this.connect();
  }

  /** Reconnects now (the network is back) instead of waiting out the backoff. */
  private reconnectNow(): void {
    if (this.closed || this.socket) return;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.attempt = Math.min(this.attempt, 1);
    this.connect();
  }

  /** Where the connection stands. */
  get status(): Status {
    return this._status;
  }

  /** Local edits (sequence numbers) not yet acknowledged by the server. */
  get unacknowledged(): number {
    return this.session === 0 ? 0 : this.replica.nextSeq() - this.acked;
  }

  /** The other editors here now, with their carets resolved against the current text. */
  peers(): Peer[] {
    const out: Peer[] = [];
    for (const p of this.peerStates.values()) {
      if (!p.anchors) continue;
      out.push({
        connection: p.connection,
        user: p.user,
        name: p.name,
        color: p.color,
        head: this.resolve(p.anchors.head),
        tail: this.resolve(p.anchors.tail),
      });
    }
    return out;
  }

  /** Tells the others where this editor's caret (`head`) and selection end (`tail`) are. */
  setPresence(head: number, tail: number = head): void {
    this.presence = { head: this.anchorAt(head), tail: this.anchorAt(tail) };
    this.presenceDirty = true;
    if (!this.presenceTimer) this.sendPresence();
  }

  /** Stops everything; the document can no longer be edited. */
  close(): void {
    this.end(new CollabError("closed", "closed by the client"), false);
  }

  protected override localEdit(): void {
    this.saveSoon();
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => {
        this.flushQueued = false;
        this.flush();
      });
    }
  }

  private setStatus(s: Status): void {
    if (this._status === s) return;
    this._status = s;
    this.emit("status", s);
  }

  private wsUrl(): string {
    const u = this.options.wsUrl;
    return `${u}${u.includes("?") ? "&" : "?"}document=${encodeURIComponent(this.options.documentId)}`;
  }

  private connect(): void {
    if (this.closed) return;
    this.setStatus(this.attempt === 0 ? "connecting" : "offline");
    const WS = this.options.WebSocket ?? globalThis.WebSocket;
    let ws: WebSocket;
    try {
      ws = new WS(this.wsUrl(), [this.http.token]);
    } catch (e) {
      this.retryLater();
      return;
    }
    this.socket = ws;
    let opened = false;
    let gone = false;
    // A handshake that neither opens nor fails (a black-holed network) is given up on.
    const handshake = setTimeout(() => lost(), this.options.timeoutMs ?? 10_000);
    const lost = () => {
      clearTimeout(handshake);
      if (gone || this.socket !== ws) return;
      gone = true;
      this.socket = null;
      this.stopPings();
      if (this.inFlight) {
        clearTimeout(this.inFlight.timer);
        this.inFlight = null;
      }
      try {
        ws.close();
      } catch {
        // Already closing.
      }
      if (this.closed) return;
      this.setStatus("offline");
      if (!opened) {
        // The handshake failed: find out over HTTP whether it is the network or the token.
        void this.probe().then(() => this.retryLater());
      } else {
        this.retryLater();
      }
    };
    ws.onopen = () => {
      clearTimeout(handshake);
      if (gone) return;
      opened = true;
      this.setStatus("syncing");
      this.startPings();
      void this.sync();
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (!gone) this.receive(ev.data);
    };
    ws.onclose = lost;
    this.drop = lost;
    // Some implementations report a refused connection only as an error.
    ws.onerror = () => {
      if (!opened) lost();
    };
  }

  private retryLater(): void {
    if (this.closed || this.reconnectTimer) return;
    const initial = this.options.backoff?.initialMs ?? 250;
    const max = this.options.backoff?.maxMs ?? 10_000;
    const delay = Math.min(max, initial * 2 ** Math.min(this.attempt, 16)) * (0.5 + Math.random() / 2);
    this.attempt++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  /** After a failed handshake: a cheap authenticated request that says why. */
  private async probe(): Promise<void> {
    try {
      const res = await this.http.request(
        "GET",
        `/documents/${encodeURIComponent(this.options.documentId)}/operations?limit=1&cursor=-1`,
      );
      if (!res.ok) await this.failed(res);
    } catch {
      // The network: retry.
    }
  }

  /** Catches up over HTTP, then resends what was not acknowledged. */
  private async sync(): Promise<void> {
    try {
      await this.catchUp();
    } catch {
      this.drop?.();
      return;
    }
    if (this.closed || !this.socket) return;
    this.attempt = 0;
    this.setStatus("online");
    if (this.presence) this.presenceDirty = true;
    this.sendPresence();
    this.flush();
  }

  /** @internal Applies every op the server has that this replica lacks (paged). */
  async catchUp(): Promise<void> {
    const id = encodeURIComponent(this.options.documentId);
    const since = encodeURIComponent(versionParam(JSON.parse(this.replica.version()) as Version));
    let cursor: number | null = 0;
    while (cursor !== null && !this.closed) {
      // The binary op batch: about a tenth of the JSON's bytes, and no JSON parse on either side.
      const res = await this.http.request(
        "GET",
        `/documents/${id}/operations?since=${since}&cursor=${cursor}`,
        undefined,
        OPS_BINARY,
      );
      if (!res.ok) {
        await this.failed(res);
        throw new CollabError("unavailable", `catching up failed (${res.status})`, res.status);
      }
      if (res.headers.get("content-type")?.startsWith(OPS_BINARY)) {
        const bytes = new Uint8Array(await res.arrayBuffer());
        let report: ApplyReport;
        try {
          report = this.applyRemoteBinary(bytes);
        } catch (e) {
          throw new CollabError("unavailable", `a malformed catch-up page: ${String(e)}`);
        }
        this.reportErrors(report);
        const next = res.headers.get("x-next-cursor");
        cursor = next === null ? null : Number(next);
      } else {
        const page = (await res.json()) as { ops: Op[]; next_cursor: number | null };
        if (page.ops.length > 0) this.applyPush(page.ops);
        cursor = page.next_cursor;
      }
    }
  }

  /** Handles a refused HTTP answer: a new token, or the end of the document. */
  private async failed(res: Response): Promise<void> {
    if (res.status === 401) {
      if (!this.options.getToken) {
        this.end(new CollabError("unauthorized", "the server refused the token", 401));
        return;
      }
      await this.http.refresh();
    } else if (res.status === 404 || res.status === 403) {
      this.end(await this.http.error(res));
    }
  }

  private applyPush(ops: Op[]): void {
    this.reportErrors(this.applyRemote(JSON.stringify(ops)));
  }

  private reportErrors(report: ApplyReport): void {
    for (const e of report.errors) {
      this.emit("error", new CollabError("refused", `a pushed op was refused: ${e.error}`));
    }
  }

  private receive(data: unknown): void {
    let msg: { type?: string; [k: string]: unknown };
    try {
      msg = JSON.parse(String(data)) as typeof msg;
      if (typeof msg !== "object" || msg === null) throw new Error("not an object");
    } catch (e) {
      console.warn("collab: skipping a malformed message", e);
      return;
    }
    this.alive();
    try {
      switch (msg.type) {
        case "ops":
          if (msg.document === this.options.documentId && Array.isArray(msg.ops)) {
            this.applyPush(msg.ops as Op[]);
          }
          break;
        case "ack":
          if (this.inFlight && msg.request_id === this.inFlight.requestId) {
            clearTimeout(this.inFlight.timer);
            this.acked = Math.max(this.acked, this.inFlight.end);
            this.inFlight = null;
            this.emit("status", this._status);
            this.saveSoon();
            this.flush();
          }
          break;
        case "error":
          this.refused(msg as { request_id?: string; error?: string; message?: string });
          break;
        case "presence":
          this.peerStates.set(String(msg.connection), {
            connection: String(msg.connection),
            user: String(msg.user),
            name: typeof msg.name === "string" ? msg.name : String(msg.user),
            color: typeof msg.color === "string" ? msg.color : colorOf(String(msg.user)),
            anchors: (msg.anchors as PeerState["anchors"]) ?? null,
            seen: Date.now(),
          });
          this.emit("presence", this.peers());
          break;
        case "presence_gone":
          if (this.peerStates.delete(String(msg.connection))) this.emit("presence", this.peers());
          break;
        case "pong":
          break;
        default:
          console.warn("collab: skipping a message of unknown type", msg.type);
      }
    } catch (e) {
      console.warn("collab: skipping a message that could not be applied", e);
    }
  }

  private refused(msg: { request_id?: string; error?: string; message?: string }): void {
    const code = msg.error ?? "error";
    const err = new CollabError(code, msg.message ?? code);
    // The server closes the socket after these: access ended, or the token did.
    if (code === "access_revoked" || code === "document_deleted") {
      this.end(err);
      return;
    }
    if (code === "token_expired") {
      // A fresh token before the reconnect that follows the close; without `getToken` the
      // reconnect is refused and ends the document as `unauthorized`.
      void this.http.refresh();
      return;
    }
    if (!this.inFlight || msg.request_id !== this.inFlight.requestId) {
      this.emit("error", err);
      return;
    }
    clearTimeout(this.inFlight.timer);
    this.inFlight = null;
    if (code === "not_found" || code === "forbidden") {
      this.end(err);
    } else if (code === "unauthorized") {
      void this.http.refresh().then(() => this.drop?.());
    } else if (code === "unavailable" || code === "internal") {
      // Transient: try again shortly.
      setTimeout(() => this.flush(), 250 + Math.random() * 750);
    } else {
      // The server will never take these ops: this copy cannot sync any more.
      this.end(new CollabError("refused", `the server refused this editor's ops: ${err.message}`));
    }
  }

  /** Sends the next batch of unacknowledged local ops, if none is in flight. */
  private flush(): void {
    const ws = this.socket;
    if (this.closed || this.inFlight || this.session === 0 || this._status !== "online") return;
    if (!ws || ws.readyState !== 1) return;
    if (this.replica.nextSeq() <= this.acked) return;
    const ops = JSON.parse(this.replica.ownOpsFrom(this.acked)) as Op[];
    const max = this.options.maxBatchOps ?? 1000;
    const batch: Op[] = [];
    let bytes = 0;
    let overHttp = false;
    for (const op of ops) {
      const size = utf8Length(JSON.stringify(op)) + 1;
      if (!overHttp && batch.length > 0 && bytes + size > MAX_MESSAGE) overHttp = true;
      if (batch.length > 0 && (batch.length >= max || bytes + size > MAX_HTTP_BODY)) break;
      batch.push(op);
      bytes += size;
    }
    const last = batch[batch.length - 1];
    if (!last) return;
    overHttp ||= bytes > MAX_MESSAGE;
    const end = last.id.seq + (last.type === "insert" ? countChars(last.text) : 1);
    const requestId = `${this.session}:${this.acked}-${end}:${++this.batchCount}`;
    const timer = setTimeout(() => {
      // No answer: the socket is dead even if it does not know yet.
      if (this.inFlight?.requestId === requestId && this.socket === ws) this.drop?.();
    }, this.options.timeoutMs ?? 10_000);
    this.inFlight = { requestId, end, timer };
    if (overHttp) {
      // More than a WebSocket message holds (a paste, a long offline spell): one HTTP request.
      void this.postOverHttp(batch, requestId);
      return;
    }
    ws.send(JSON.stringify({ type: "ops", session: this.session, ops: batch, request_id: requestId }));
  }

  private async postOverHttp(ops: Op[], requestId: string): Promise<void> {
    const id = encodeURIComponent(this.options.documentId);
    try {
      const res = await this.http.request("POST", `/documents/${id}/operations`, {
        session: this.session,
        ops,
      });
      if (this.inFlight?.requestId !== requestId) return;
      if (res.ok) {
        this.receive(JSON.stringify({ type: "ack", request_id: requestId }));
        return;
      }
      const body = (await res.json().catch(() => ({}))) as { error?: string; message?: string };
      this.refused({ request_id: requestId, error: body.error ?? String(res.status), message: body.message });
    } catch {
      if (this.inFlight?.requestId === requestId) this.drop?.();
    }
  }

  /** Saves the replica while edits wait for their acknowledgement; forgets it once none do. */
  private saveSoon(): void {
    if (!this.saving || this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = null;
      const { store, key } = this.saving!;
      const done =
        this.unacknowledged > 0
          ? store.save(key, { session: this.session, ssn: this.ssn, acked: this.acked, replica: this.replica.encode() })
          : store.remove(key);
      done.catch((e: unknown) => console.warn("collab: saving the offline copy failed", e));
    }, 300);
  }

  private sendPresence(): void {
    const ws = this.socket;
    if (!this.presenceDirty || !this.presence || !ws || ws.readyState !== 1 || this._status !== "online") {
      return;
    }
    this.presenceDirty = false;
    const msg: Record<string, unknown> = { type: "presence", anchors: this.presence };
    if (this.options.name) msg.name = this.options.name.slice(0, 64);
    if (this.options.color) msg.color = this.options.color.slice(0, 32);
    ws.send(JSON.stringify(msg));
    this.presenceTimer = setTimeout(() => {
      this.presenceTimer = null;
      this.sendPresence();
    }, PRESENCE_EVERY_MS);
  }

  private startPings(): void {
    this.stopPings();
    this.pingTimer = setInterval(() => {
      const ws = this.socket;
      if (!ws || ws.readyState !== 1) return;
      ws.send('{"type":"ping"}');
      this.expirePeers();
      if (this.presence) {
        this.presenceDirty = true;
        if (!this.presenceTimer) this.sendPresence();
      }
      if (!this.pongTimer) {
        this.pongTimer = setTimeout(() => {
          if (this.socket === ws) this.drop?.();
        }, this.options.timeoutMs ?? 10_000);
      }
    }, PING_EVERY_MS);
  }

  private expirePeers(): void {
    const old = Date.now() - PRESENCE_EXPIRES_MS;
    let changed = false;
    for (const [k, p] of this.peerStates) {
      if (p.seen < old) changed = this.peerStates.delete(k);
    }
    if (changed) this.emit("presence", this.peers());
  }

  private alive(): void {
    if (this.pongTimer) {
      clearTimeout(this.pongTimer);
      this.pongTimer = null;
    }
  }

  private stopPings(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
    this.alive();
  }

  private end(reason: CollabError, notify = true): void {
    if (this.closed) return;
    this.closed = true;
    this.unlisten?.();
    this.setReadOnly(true);
    for (const t of [this.reconnectTimer, this.presenceTimer, this.inFlight?.timer]) {
      if (t) clearTimeout(t);
    }
    this.stopPings();
    if (this.saveTimer) {
      // Keep what waits now rather than in 300 ms: the page may be going away.
      clearTimeout(this.saveTimer);
      this.saveTimer = null;
      if (this.saving && this.unacknowledged > 0) {
        const { store, key } = this.saving;
        const copy = { session: this.session, ssn: this.ssn, acked: this.acked, replica: this.replica.encode() };
        store.save(key, copy).catch(() => {});
      }
    }
    const ws = this.socket;
    this.socket = null;
    ws?.close();
    this.setStatus("closed");
    if (notify) this.emit("ended", reason);
  }
}

/** HTTP with the bearer token, refreshed through `getToken` on 401. */
class Http {
  token: string;
  private readonly options: OpenOptions;
  private refreshing: Promise<void> | null = null;

  constructor(options: OpenOptions) {
    this.options = options;
    this.token = options.token;
  }

  async request(method: string, path: string, body?: unknown, accept?: string): Promise<Response> {
    const send = () =>
      (this.options.fetch ?? globalThis.fetch)(`${this.options.apiUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(accept === undefined ? {} : { accept }),
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
      });
    let res = await send();
    if (res.status === 401 && this.options.getToken) {
      await this.refresh();
      res = await send();
    }
    return res;
  }

  refresh(): Promise<void> {
    const get = this.options.getToken;
    if (!get) return Promise.resolve();
    this.refreshing ??= (async () => {
      try {
        this.token = await get();
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  async error(res: Response): Promise<CollabError> {
    const body = (await res.json().catch(() => ({}))) as { error?: string; message?: string };
    const code =
      res.status === 404 ? "not_found" : res.status === 403 ? "forbidden" : res.status === 401 ? "unauthorized" : (body.error ?? "error");
    return new CollabError(code, body.message ?? `HTTP ${res.status}`, res.status);
  }
}

/** The token's `sub` (to keep users' offline copies apart), or "" if it is not a JWT. */
function subject(token: string): string {
  try {
    const part = token.split(".")[1] ?? "";
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    return String((JSON.parse(json) as { sub?: unknown }).sub ?? "");
  } catch {
    return "";
  }
}

/** A version as the `since` query parameter: `site:seq,site:seq`. */
function versionParam(v: Version): string {
  return Object.entries(v)
    .map(([site, seq]) => `${site}:${seq}`)
    .join(",");
}

/** Bytes of `s` in UTF-8. */
function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) n += c < 0x800 || (c >= 0xd800 && c <= 0xdfff) ? 1 : 2;
  }
  return n;
}

/** A stable colour for a user without one. */
function colorOf(user: string): string {
  let h = 0;
  for (let i = 0; i < user.length; i++) h = (h * 31 + user.charCodeAt(i)) >>> 0;
  return `hsl(${h % 360} 70% 45%)`;
}
