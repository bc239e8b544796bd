// Loading the WebAssembly build of the RGA (clients/wasm) and the typed forms of what crosses the
// boundary. Everything positional is in UTF-16 code units, as JS strings count.

import init, { initSync, Replica } from "../wasm/rga_wasm.js";

export { Replica };

/** A character identifier: the site that made it and its sequence number there. */
export interface CharId {
  sid: number;
  seq: number;
}

/** A stable place in the text: just after a character, or the start (`null`). */
export type Anchor = CharId | null;

/** A version vector: per site, the highest sequence number received. */
export type Version = Record<string, number>;

/** An RGA op in its wire form (see docs/openapi.yaml, `Op`). */
export type Op =
  | { type: "insert"; id: S4Vector; after: CharId | null; text: string }
  | { type: "delete"; id: S4Vector; targets: { sid: number; seq: number; len?: number }[] }
  | { type: "update"; id: S4Vector; target: CharId; value: string };

/** An S4Vector identifier. */
export interface S4Vector {
  ssn: number;
  sum: number;
  sid: number;
  seq: number;
}

/** One change to the text, in UTF-16 units: at `index`, remove `delete`, then insert `insert`. */
export interface Patch {
  index: number;
  delete: number;
  insert: string;
}

/** What applying a batch of remote ops did. */
export interface ApplyReport {
  changes: Patch[];
  applied: number;
  duplicates: number;
  pending: number;
  errors: { id: CharId; error: string }[];
}

/** What undoing this site's own insert removed. */
export interface Removal {
  ops: Op[];
  changes: Patch[];
  removed: { anchor: Anchor; text: string }[];
}

let loaded: Promise<void> | null = null;

/**
 * Loads the WebAssembly module once. In a browser it is fetched next to the glue (or from
 * `source`, a URL or the module's bytes); in Node it is read from the package.
 */
export function loadWasm(source?: URL | string | BufferSource): Promise<void> {
  if (!loaded) {
    loaded = (async () => {
      if (source !== undefined && typeof source !== "string" && !(source instanceof URL)) {
        initSync({ module: source });
        return;
      }
      const nodeVersion = (globalThis as { process?: { versions?: { node?: string } } }).process
        ?.versions?.node;
      if (source === undefined && nodeVersion) {
        const { readFile } = await import("node:fs/promises");
        const bytes = await readFile(new URL("../wasm/rga_wasm_bg.wasm", import.meta.url));
        initSync({ module: bytes });
        return;
      }
      await init({ module_or_path: source });
    })();
    loaded.catch(() => {
      loaded = null;
    });
  }
  return loaded;
}

/** Base64 (standard alphabet) to bytes, in browsers and Node. */
export function fromBase64(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
