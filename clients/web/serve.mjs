// The development server for the page: serves clients/web/dist and the config.json that
// `make dev` writes, and proxies `/api/<n>/...` to replica n's HTTP API so the page calls it from
// its own origin (no CORS in development). WebSockets go straight to the gateways.
//
//   node serve.mjs --listen 127.0.0.1:9100 --config .dev/web/config.json --api 1=http://127.0.0.1:9101/lambda-url/api ...

import { createServer, request } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const listen = opt("--listen") ?? "127.0.0.1:9100";
const configPath = opt("--config");
const root = opt("--root") ?? fileURLToPath(new URL("./dist/", import.meta.url));
const apis = new Map();
args.forEach((a, i) => {
  if (a === "--api") {
    const [n, url] = args[i + 1].split(/=(.*)/s);
    apis.set(n, new URL(url.endsWith("/") ? url : `${url}/`));
  }
});
if (!configPath || apis.size === 0) {
  console.error("usage: serve.mjs --listen HOST:PORT --config FILE --api 1=URL [--api 2=URL ...]");
  process.exit(2);
}

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".map": "application/json",
  ".png": "image/png",
};
/** Bodies the proxy forwards are bounded like the API's own (1 MiB) plus slack. */
const MAX_BODY = 2 << 20;

function proxy(req, res, target) {
  const up = request(
    target,
    { method: req.method, headers: { ...req.headers, host: target.host }, timeout: 30_000 },
    (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    },
  );
  up.on("timeout", () => up.destroy(new Error("upstream timed out")));
  up.on("error", (e) => {
    if (!res.headersSent) res.writeHead(502, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: "unavailable", message: `the API did not answer: ${e.message}` }));
  });
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      req.destroy();
      up.destroy();
    }
  });
  req.pipe(up);
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? "/", "http://local");
  const m = url.pathname.match(/^\/api\/(\d+)(\/.*)?$/);
  if (m) {
    const base = apis.get(m[1]);
    if (!base) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "not_found", message: `no replica ${m[1]}` }));
      return;
    }
    proxy(req, res, new URL(`${(m[2] ?? "/").slice(1)}${url.search}`, base));
    return;
  }
  try {
    if (url.pathname === "/config.json") {
      const body = await readFile(configPath);
      res.writeHead(200, { "content-type": TYPES[".json"], "cache-control": "no-store" });
      res.end(body);
      return;
    }
    const path = normalize(decodeURIComponent(url.pathname)).replace(/^(\.\.[/\\])+/, "");
    const file = join(root, path.endsWith("/") ? join(path, "index.html") : path);
    if (!file.startsWith(root)) throw new Error("outside the root");
    const body = await readFile(file);
    res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
    res.end(body);
  } catch {
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found");
  }
});
const [host, port] = listen.split(":");
server.listen(Number(port), host, () => console.log(`serving ${root} on http://${listen}/`));
