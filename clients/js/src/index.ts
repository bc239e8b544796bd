// @collab/client: the collab backend's editor client.
//
//   import { open } from "@collab/client";
//   import { collab } from "@collab/client/codemirror";
//   const doc = await open({ apiUrl, wsUrl, token, documentId });
//   new EditorView({ doc: doc.text, extensions: [basicSetup, collab(doc)], parent });

export { open, CollabDocument, CollabError } from "./client.js";
export type { OpenOptions, Status, DocumentEvents, Peer } from "./client.js";
export { CollabText, EditRefused, countChars } from "./text.js";
export type { ChangeEvent, ChangeOrigin, TextOptions } from "./text.js";
export { loadWasm, Replica, fromBase64 } from "./replica.js";
export type { Anchor, CharId, Op, Patch, Version, ApplyReport } from "./replica.js";
export { indexedDbStore, memoryStore } from "./offline.js";
export type { OfflineStore, SavedReplica } from "./offline.js";
