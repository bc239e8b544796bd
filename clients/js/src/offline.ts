// Keeping unacknowledged local edits across a page reload: the replica (with its session and how
// far the server acknowledged it) saved in IndexedDB while edits wait, removed once all are
// acknowledged. On open, a saved replica of the same document and user resumes: its session is
// reused and its waiting ops are resent (the server counts those it already has as duplicates).

/** What is kept for one document. */
export interface SavedReplica {
  session: number;
  ssn: number;
  /** The first sequence number the server has not acknowledged. */
  acked: number;
  /** The replica, encoded. */
  replica: Uint8Array;
}

/** Where saved replicas go; {@link indexedDbStore} in browsers. */
export interface OfflineStore {
  load(key: string): Promise<SavedReplica | null>;
  save(key: string, value: SavedReplica): Promise<void>;
  remove(key: string): Promise<void>;
}

const DB = "collab-client";
const STORE = "replicas";

/** An {@link OfflineStore} in IndexedDB, or `null` where the page has none (Node, workers without it). */
export function indexedDbStore(): OfflineStore | null {
  const idb = (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if (!idb) return null;
  let db: Promise<IDBDatabase> | null = null;
  const connect = () =>
    (db ??= new Promise((resolve, reject) => {
      const req = idb.open(DB, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    }));
  const run = async <T>(mode: IDBTransactionMode, f: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> => {
    const tx = (await connect()).transaction(STORE, mode);
    const req = f(tx.objectStore(STORE));
    return new Promise((resolve, reject) => {
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  };
  return {
    async load(key) {
      const v = (await run("readonly", (s) => s.get(key))) as SavedReplica | undefined;
      return v ?? null;
    },
    async save(key, value) {
      await run("readwrite", (s) => s.put(value, key));
    },
    async remove(key) {
      await run("readwrite", (s) => s.delete(key));
    },
  };
}

/** A store in memory (tests; a page that wants no persistence passes `null` instead). */
export function memoryStore(): OfflineStore {
  const m = new Map<string, SavedReplica>();
  return {
    load: async (k) => m.get(k) ?? null,
    save: async (k, v) => {
      m.set(k, { ...v, replica: v.replica.slice() });
    },
    remove: async (k) => {
      m.delete(k);
    },
  };
}
