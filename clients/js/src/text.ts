// A local replica of one document as an editor sees it: the text in UTF-16 units, local edits
// that apply at once, remote ops that patch it, anchors, and per-user undo. No network here: the
// client (client.ts) adds that, and the benchmark drives this class alone.

import { Replica, type Anchor, type ApplyReport, type Patch, type Removal } from "./replica.js";

/** Who made a change: this editor, another one (or a catch-up), or this editor's undo/redo. */
export type ChangeOrigin = "local" | "remote" | "undo";

/** A change to the text, as patches in UTF-16 units that apply in sequence. */
export interface ChangeEvent {
  changes: Patch[];
  origin: ChangeOrigin;
  /** For undo and redo: the selection to restore (UTF-16 offsets). */
  selection?: { anchor: number; head: number };
}

/** A local edit that the document refused before applying it. */
export class EditRefused extends Error {
  constructor(
    readonly code: "read_only" | "too_large" | "out_of_range",
    message: string,
  ) {
    super(message);
    this.name = "EditRefused";
  }
}

type UndoItem =
  | { kind: "inserted"; from: number; to: number }
  | { kind: "deleted"; anchor: string; text: string };

interface UndoGroup {
  items: UndoItem[];
  /** This site's first sequence number in the group: characters from it on were typed in it. */
  firstSeq: number;
  /** The selection before the group's first edit, as two anchors (JSON). */
  selection?: [string, string];
  at: number;
}

export interface TextOptions {
  /** Refuse every local edit (a viewer). */
  readOnly?: boolean;
  /** Most chars the document may hold (the server's `MAX_DOCUMENT_CHARS`); default 2 Mi. */
  maxChars?: number;
  /** Edits closer together than this (ms) undo as one step; default 500. */
  undoDelay?: number;
}

type Listener<T> = (value: T) => void;

/** A minimal typed event emitter. */
export class Emitter<Events extends Record<string, unknown>> {
  private listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Calls `fn` on every `event`; returns a function that stops it. */
  on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn as Listener<never>);
    return () => set.delete(fn as Listener<never>);
  }

  protected emit<K extends keyof Events>(event: K, value: Events[K]): void {
    for (const fn of this.listeners.get(event) ?? []) {
      try {
        (fn as Listener<Events[K]>)(value);
      } catch (e) {
        console.error(`a ${String(event)} listener threw`, e);
      }
    }
  }
}

export interface TextEvents extends Record<string, unknown> {
  change: ChangeEvent;
}

/** The document's text as a local RGA replica. */
export class CollabText<E extends TextEvents = TextEvents> extends Emitter<E> {
  readonly replica: Replica;
  private cached: string | null = null;
  private undoStack: UndoGroup[] = [];
  private redoStack: UndoGroup[] = [];
  private readonly maxChars: number;
  private readonly undoDelay: number;
  private _readOnly: boolean;

  constructor(replica: Replica, options: TextOptions = {}) {
    super();
    this.replica = replica;
    this._readOnly = options.readOnly ?? false;
    this.maxChars = options.maxChars ?? 2 * 1024 * 1024;
    this.undoDelay = options.undoDelay ?? 500;
  }

  /** Whether local edits are refused. */
  get readOnly(): boolean {
    return this._readOnly;
  }

  protected setReadOnly(value: boolean): void {
    this._readOnly = value;
  }

  /** The current text. */
  get text(): string {
    return (this.cached ??= this.replica.text());
  }

  /** Its length in UTF-16 code units. */
  get length(): number {
    return this.replica.length;
  }

  /** Inserts `text` at `index`. */
  insert(index: number, text: string, selection?: { anchor: number; head: number }): void {
    this.replace(index, 0, text, selection);
  }

  /** Deletes `length` units at `index` (whole characters: never half a surrogate pair). */
  delete(index: number, length: number, selection?: { anchor: number; head: number }): void {
    this.replace(index, length, "", selection);
  }

  /**
   * Replaces `length` units at `index` with `text`, at once (the ops go out later). Throws
   * {@link EditRefused}, before changing anything, for a viewer, a range outside the text, or a
   * document that would exceed its size limit. `selection` is the selection before the edit,
   * restored by undo.
   */
  replace(
    index: number,
    length: number,
    text: string,
    selection?: { anchor: number; head: number },
  ): void {
    if (this._readOnly) throw new EditRefused("read_only", "this document is read-only for you");
    if (length === 0 && text === "") return;
    const total = this.replica.length;
    if (!(index >= 0 && length >= 0 && index + length <= total)) {
      throw new EditRefused(
        "out_of_range",
        `the range ${index}+${length} is outside a text of ${total} UTF-16 units`,
      );
    }
    // UTF-16 units never undercount chars: only a text near the limit needs counting.
    if (text.length > 0 && total - length + text.length > this.maxChars) {
      const chars = this.replica.charsAt(total) - this.replica.charsAt(index + length) +
        this.replica.charsAt(index) + countChars(text);
      if (chars > this.maxChars) {
        throw new EditRefused(
          "too_large",
          `the document would hold ${chars} chars, more than its limit of ${this.maxChars}`,
        );
      }
    }
    const items: UndoItem[] = [];
    const group = this.openGroup();
    // Deleting what this same undo group typed (typing, then backspace) needs no restoring:
    // undoing the group removes those characters anyway.
    const typedHere = group !== null && length <= 10_000 && this.replica.ownSince(index, length, group.firstSeq);
    if (length > 0 && !typedHere) {
      items.push({
        kind: "deleted",
        anchor: this.replica.anchorAt(index),
        text: this.replica.slice(index, index + length),
      });
    }
    const from = this.replica.nextSeq();
    let at: number;
    try {
      at = this.replica.splice(index, length, text);
    } catch (e) {
      throw new EditRefused("too_large", String((e as Error).message ?? e));
    }
    const to = this.replica.nextSeq();
    if (text.length > 0) items.push({ kind: "inserted", from, to });
    this.cached = null;
    this.record(items, selection, from);
    // Where it landed: whole characters only (a range inside a surrogate pair widens to it).
    const removed = total + text.length - this.replica.length;
    this.emit("change", { changes: [{ index: at, delete: removed, insert: text }], origin: "local" });
    this.localEdit();
  }

  /** Called after every local edit (the client sends it). */
  protected localEdit(): void {}

  /** Applies remote ops (a JSON array); emits their changes. */
  applyRemote(opsJson: string): ApplyReport {
    const report = JSON.parse(this.replica.apply(opsJson)) as ApplyReport;
    if (report.changes.length > 0) {
      this.cached = null;
      this.emit("change", { changes: report.changes, origin: "remote" });
    }
    return report;
  }

  /** Applies remote ops in the binary batch form (`GET /operations` with `Accept:
   * application/x-rga-ops`); emits their changes. */
  applyRemoteBinary(bytes: Uint8Array): ApplyReport {
    const report = JSON.parse(this.replica.applyBinary(bytes)) as ApplyReport;
    if (report.changes.length > 0) {
      this.cached = null;
      this.emit("change", { changes: report.changes, origin: "remote" });
    }
    return report;
  }

  /** A stable reference to offset `index` (survives everyone's edits). */
  anchorAt(index: number): Anchor {
    return JSON.parse(this.replica.anchorAt(index)) as Anchor;
  }

  /** The current offset of an anchor. */
  resolve(anchor: Anchor): number {
    return this.replica.resolve(JSON.stringify(anchor));
  }

  /** Whether there is something of this user's to undo / redo. */
  get canUndo(): boolean {
    return this.undoStack.length > 0;
  }
  get canRedo(): boolean {
    return this.redoStack.length > 0;
  }

  /** Undoes this user's last edit group (only their own edits; as new ops). */
  undo(): boolean {
    return this.step(this.undoStack, this.redoStack);
  }

  /** Redoes the last undone group. */
  redo(): boolean {
    return this.step(this.redoStack, this.undoStack);
  }

  /** The undo group the next edit joins, if it is soon enough after the last one. */
  private openGroup(): UndoGroup | null {
    const last = this.undoStack[this.undoStack.length - 1];
    return last && Date.now() - last.at < this.undoDelay ? last : null;
  }

  private record(items: UndoItem[], selection?: { anchor: number; head: number }, firstSeq = 0): void {
    if (items.length === 0) return;
    this.redoStack.length = 0;
    const now = Date.now();
    const last = this.openGroup();
    if (last) {
      last.items.push(...items);
      last.at = now;
      return;
    }
    const group: UndoGroup = { items, at: now, firstSeq };
    if (selection) {
      group.selection = [this.replica.anchorAt(selection.anchor), this.replica.anchorAt(selection.head)];
    }
    this.undoStack.push(group);
    if (this.undoStack.length > 500) this.undoStack.shift();
  }

  private step(from: UndoGroup[], to: UndoGroup[]): boolean {
    if (this._readOnly) return false;
    const group = from.pop();
    if (!group) return false;
    const changes: Patch[] = [];
    const inverse: UndoItem[] = [];
    for (let i = group.items.length - 1; i >= 0; i--) {
      const item = group.items[i]!;
      if (item.kind === "inserted") {
        const r = JSON.parse(this.replica.deleteOwn(item.from, item.to)) as Removal;
        changes.push(...r.changes);
        for (const { anchor, text } of r.removed) {
          inverse.push({ kind: "deleted", anchor: JSON.stringify(anchor), text });
        }
      } else {
        const index = this.replica.resolve(item.anchor);
        const seq = this.replica.nextSeq();
        this.replica.splice(index, 0, item.text);
        changes.push({ index, delete: 0, insert: item.text });
        inverse.push({ kind: "inserted", from: seq, to: this.replica.nextSeq() });
      }
    }
    to.push({ items: inverse, selection: group.selection, at: 0, firstSeq: Infinity });
    if (changes.length === 0) return from.length > 0 ? this.step(from, to) : false;
    this.cached = null;
    const event: ChangeEvent = { changes, origin: "undo" };
    if (group.selection) {
      event.selection = {
        anchor: this.replica.resolve(group.selection[0]),
        head: this.replica.resolve(group.selection[1]),
      };
    }
    this.emit("change", event);
    this.localEdit();
    return true;
  }
}

/** Unicode scalar values in a string (what the server's limits count). */
export function countChars(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}
