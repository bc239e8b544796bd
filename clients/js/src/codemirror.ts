// The CodeMirror 6 binding: keeps an EditorView and a CollabText in step, draws the other
// peers' carets and selections, and routes undo/redo to the document's per-user undo.
// Only types come from ./text.js, so this module loads without the WebAssembly build.

import {
  Annotation,
  ChangeSet,
  EditorSelection,
  EditorState,
  Prec,
  StateEffect,
  Text,
  Transaction,
  type Extension,
  type Range,
  type TransactionSpec,
} from "@codemirror/state";
import {
  Decoration,
  EditorView,
  ViewPlugin,
  WidgetType,
  keymap,
  type DecorationSet,
  type PluginValue,
  type ViewUpdate,
} from "@codemirror/view";
import type { Patch } from "./replica.js";
import type { ChangeEvent, CollabText } from "./text.js";

/** Another connection's presence: who, and where (UTF-16 offsets in the current text). */
export interface Peer {
  connection: string;
  user: string;
  name: string;
  color: string;
  head: number;
  tail: number;
}

/** What a document with presence offers (the network client does). */
export interface PresenceSource {
  peers(): Peer[];
  setPresence(head: number, tail: number): void;
  on(event: "presence", fn: (peers: Peer[]) => void): () => void;
}

export interface CollabOptions {
  /** Bind Mod-z / Mod-Shift-z / Mod-y to the document's undo and redo; default true. */
  undoKeys?: boolean;
  /** Most chars the editor lets the document grow to; should match its `maxChars` (2 Mi). */
  maxChars?: number;
}

/**
 * A document the binding accepts: any CollabText, with presence if it has `peers` and
 * `setPresence` (its "presence" event is then subscribed through its `on`).
 */
export type CollabDoc = CollabText & Partial<Pick<PresenceSource, "peers" | "setPresence">>;

/** Marks a transaction that comes from the document (remote, undo, resync): not sent back. */
export const remoteChange = Annotation.define<boolean>();

/** Asks the plugin to redraw the peers. */
const presenceChanged = StateEffect.define<null>();

/**
 * Binds an editor whose initial doc is `doc.text` to `doc`. The editor's edits go to the
 * document, the document's remote changes and undo/redo come back to the editor, and the peers
 * of a document with presence are drawn. Undo is the document's (only this user's edits, as new
 * ops): do not add CodeMirror's `history()` along with the undo keys. The binding also fixes the
 * line separator to "\n", so that editor offsets are the document's UTF-16 offsets. A document
 * read-only at creation makes the editor read-only; edits are refused whenever it is.
 */
export function collab(doc: CollabDoc, options: CollabOptions = {}): Extension {
  const maxChars = options.maxChars ?? 2 * 1024 * 1024;
  const extensions: Extension[] = [
    Prec.highest(EditorState.lineSeparator.of("\n")),
    EditorState.transactionFilter.of((tr) => {
      if (!tr.docChanged || tr.annotation(remoteChange)) return tr;
      if (doc.readOnly) return [];
      // UTF-16 units never undercount chars, so only a text over the limit in units is counted.
      if (tr.newDoc.length > maxChars) {
        const after = countChars(tr.newDoc);
        if (after > maxChars && after > countChars(tr.startState.doc)) return [];
      }
      return tr;
    }),
    ViewPlugin.define((view) => new CollabPlugin(view, doc), {
      decorations: (plugin) => plugin.decorations,
    }),
    baseTheme,
  ];
  if (doc.readOnly) extensions.push(EditorState.readOnly.of(true), EditorView.editable.of(false));
  if (options.undoKeys !== false) {
    const undo = () => {
      doc.undo();
      return true;
    };
    const redo = () => {
      doc.redo();
      return true;
    };
    extensions.push(
      Prec.high(
        keymap.of([
          { key: "Mod-z", run: undo },
          { key: "Mod-Shift-z", run: redo },
          { key: "Mod-y", run: redo },
        ]),
      ),
    );
  }
  return extensions;
}

/** The per-view half of the binding. */
class CollabPlugin implements PluginValue {
  decorations: DecorationSet = Decoration.none;
  /** A resync is queued: the editor and the document may differ until it runs. */
  private stale = false;
  private destroyed = false;
  /** Inside `update`, where dispatching is not allowed. */
  private updating = false;
  private presenceDirty = false;
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    private readonly view: EditorView,
    private readonly doc: CollabDoc,
  ) {
    this.unsubscribe.push(doc.on("change", (event) => this.fromDoc(event)));
    if (doc.peers) {
      this.unsubscribe.push(doc.on("presence", () => this.presenceEvent()));
      this.decorations = this.drawPeers();
    }
    if (view.state.doc.length !== doc.length) this.resync("the editor did not start at doc.text");
  }

  update(update: ViewUpdate): void {
    this.updating = true;
    try {
      for (const tr of update.transactions) {
        if (tr.docChanged && !tr.annotation(remoteChange)) this.toDoc(tr);
      }
      if (update.docChanged || update.selectionSet) {
        const { head, anchor } = update.state.selection.main;
        this.doc.setPresence?.(head, anchor);
      }
    } finally {
      this.updating = false;
    }
    const redraw = this.presenceDirty || update.docChanged ||
      update.transactions.some((tr) => tr.effects.some((e) => e.is(presenceChanged)));
    if (redraw && this.doc.peers) {
      this.presenceDirty = false;
      this.decorations = this.drawPeers();
    }
  }

  destroy(): void {
    this.destroyed = true;
    for (const fn of this.unsubscribe) fn();
  }

  /** Sends an editor transaction's changes to the document, as splices in sequence. */
  private toDoc(tr: Transaction): void {
    if (this.stale) return;
    const { anchor, head } = tr.startState.selection.main;
    const splices = changesToSplices(tr.changes);
    try {
      splices.forEach((s, i) => {
        this.doc.replace(s.index, s.delete, s.insert, i === 0 ? { anchor, head } : undefined);
      });
    } catch (e) {
      this.resync(e);
    }
  }

  /** Applies the document's remote and undo changes to the editor (its own are there already). */
  private fromDoc(event: ChangeEvent): void {
    if (event.origin === "local" || this.stale || this.destroyed) return;
    try {
      const changes = patchesToChangeSet(event.changes, this.view.state.doc.length);
      const annotations = [remoteChange.of(true), Transaction.addToHistory.of(false)];
      const spec: TransactionSpec = { changes, annotations };
      if (event.origin === "remote") {
        annotations.push(Transaction.remote.of(true));
      } else {
        spec.userEvent = "undo";
        spec.scrollIntoView = true;
        const sel = event.selection;
        if (sel) {
          const n = changes.newLength;
          spec.selection = EditorSelection.single(clamp(sel.anchor, n), clamp(sel.head, n));
        }
      }
      this.view.dispatch(spec);
    } catch (e) {
      this.resync(e);
      return;
    }
    const length = this.view.state.doc.length;
    if (length !== this.doc.length) {
      this.resync(`the editor holds ${length} units, the document ${this.doc.length}`);
    }
  }

  private presenceEvent(): void {
    if (this.destroyed) return;
    if (this.updating) this.presenceDirty = true;
    else this.view.dispatch({ effects: presenceChanged.of(null) });
  }

  /** The peers' carets and selections, at their current offsets clamped to the editor's text. */
  private drawPeers(): DecorationSet {
    const length = this.view.state.doc.length;
    const ranges: Range<Decoration>[] = [];
    for (const peer of this.doc.peers?.() ?? []) {
      const head = clamp(peer.head, length);
      const tail = clamp(peer.tail, length);
      const color = safeColor(peer.color);
      if (head !== tail) {
        const mark = Decoration.mark({
          class: "cm-collab-selection",
          attributes: { style: `background-color: color-mix(in srgb, ${color} 25%, transparent)` },
        });
        ranges.push(mark.range(Math.min(head, tail), Math.max(head, tail)));
      }
      const caret = Decoration.widget({ widget: new CaretWidget(peer.name, color), side: 1 });
      ranges.push(caret.range(head));
    }
    return Decoration.set(ranges, true);
  }

  /**
   * Brings the editor back to `doc.text` after an error, on a microtask (a view cannot be
   * updated from inside its update), replacing only the part that differs.
   */
  private resync(reason: unknown): void {
    console.warn("collab: the editor is out of step with the document; resynchronising:", reason);
    if (this.stale) return;
    this.stale = true;
    queueMicrotask(() => {
      this.stale = false;
      if (this.destroyed) return;
      const current = this.view.state.doc.toString();
      const target = this.doc.text;
      const shorter = Math.min(current.length, target.length);
      let from = 0;
      while (from < shorter && current[from] === target[from]) from++;
      let end = 0;
      while (
        end < shorter - from &&
        current[current.length - 1 - end] === target[target.length - 1 - end]
      ) end++;
      const insert = target.slice(from, target.length - end);
      this.view.dispatch({
        changes: { from, to: current.length - end, insert },
        annotations: [remoteChange.of(true), Transaction.addToHistory.of(false)],
      });
    });
  }
}

/** A peer's caret: a thin line in their colour with their name above it. */
class CaretWidget extends WidgetType {
  constructor(
    readonly name: string,
    readonly color: string,
  ) {
    super();
  }

  override eq(other: CaretWidget): boolean {
    return other.name === this.name && other.color === this.color;
  }

  toDOM(): HTMLElement {
    const caret = document.createElement("span");
    caret.className = "cm-collab-caret";
    caret.style.borderLeftColor = this.color;
    // A word joiner gives the empty caret the line's height.
    caret.append("\u2060");
    const label = document.createElement("span");
    label.className = "cm-collab-caret-label";
    label.style.backgroundColor = this.color;
    label.textContent = this.name;
    caret.append(label);
    return caret;
  }
}

const baseTheme = EditorView.baseTheme({
  ".cm-collab-selection": { borderRadius: "1px" },
  ".cm-collab-caret": {
    position: "relative",
    borderLeft: "2px solid",
    marginLeft: "-1px",
    marginRight: "-1px",
    pointerEvents: "none",
  },
  ".cm-collab-caret-label": {
    position: "absolute",
    bottom: "100%",
    left: "-2px",
    padding: "0 3px",
    borderRadius: "3px 3px 3px 0",
    color: "white",
    fontSize: "0.7em",
    fontFamily: "sans-serif",
    lineHeight: "1.3",
    whiteSpace: "nowrap",
    userSelect: "none",
    zIndex: "10",
  },
});

/**
 * The patches of one change event (UTF-16 units, applying in sequence, to a text of `length`
 * units) as one ChangeSet. Throws a RangeError for a patch outside its text.
 */
export function patchesToChangeSet(patches: Patch[], length: number): ChangeSet {
  let current = length;
  let sets = patches.map((p) => {
    const insert = Text.of(p.insert.split("\n"));
    const set = ChangeSet.of({ from: p.index, to: p.index + p.delete, insert }, current);
    current = set.newLength;
    return set;
  });
  // Composing pairwise keeps a long batch of patches O(n log n) rather than O(n²).
  while (sets.length > 1) {
    const next: ChangeSet[] = [];
    for (let i = 0; i < sets.length; i += 2) {
      const a = sets[i]!;
      const b = sets[i + 1];
      next.push(b ? a.compose(b) : a);
    }
    sets = next;
  }
  return sets[0] ?? ChangeSet.empty(length);
}

/**
 * A ChangeSet as splices that apply in sequence: each range starts where it lands after the
 * ranges before it (`fromB`, the old start shifted by their net length change).
 */
export function changesToSplices(changes: ChangeSet): Patch[] {
  const splices: Patch[] = [];
  changes.iterChanges((fromA, toA, fromB, _toB, inserted) => {
    splices.push({ index: fromB, delete: toA - fromA, insert: inserted.toString() });
  });
  return splices;
}

/** Unicode scalar values in a CodeMirror text (a surrogate pair never spans a line break). */
function countChars(text: Text): number {
  let pairs = 0;
  for (const chunk of text) pairs += chunk.match(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g)?.length ?? 0;
  return text.length - pairs;
}

/** `n` as an integer offset in [0, length]. */
function clamp(n: number, length: number): number {
  return Math.max(0, Math.min(length, Math.floor(n) || 0));
}

/** A peer's colour if it is a plain CSS colour (it goes into a style attribute), else grey. */
function safeColor(color: string): string {
  const plain = /^(#[0-9a-f]{3,8}|[a-z]+|(rgba?|hsla?)\([\w\s.,%/+-]*\))$/i;
  return plain.test(color) ? color : "#888";
}
