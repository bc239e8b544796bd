// Builds the page into dist/: the bundle (src/app.ts -> dist/app.js), index.html, app.css and the
// client's WebAssembly module, which the client's glue fetches next to the bundle
// (`new URL("rga_wasm_bg.wasm", import.meta.url)`).
//
//   node build.mjs            build once
//   node build.mjs --watch    rebuild on change

import * as esbuild from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const watch = process.argv.includes("--watch");

// @collab/client is a symlink to ../js, whose files would resolve @codemirror/state and
// @codemirror/view from clients/js/node_modules: a second copy of @codemirror/state breaks
// CodeMirror (its facets and fields are compared by identity). Every import of these packages,
// wherever it comes from, goes to this package's copy.
const shared = ["@codemirror/state", "@codemirror/view", "@codemirror/language"];
const alias = Object.fromEntries(shared.map((name) => [name, join(here, "node_modules", name)]));

const copies = [
  [join(here, "index.html"), join(dist, "index.html")],
  [join(here, "app.css"), join(dist, "app.css")],
  [join(here, "../js/dist/wasm/rga_wasm_bg.wasm"), join(dist, "rga_wasm_bg.wasm")],
];

async function copyAssets() {
  for (const [from, to] of copies) await copyFile(from, to);
}

/** Fails the build if any package ended up in the bundle from two places. */
function checkSingleCopies(metafile) {
  const byPackage = new Map();
  for (const input of Object.keys(metafile.inputs)) {
    const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (!m) continue;
    const root = input.slice(0, m.index + m[0].length);
    const roots = byPackage.get(m[1]) ?? new Set();
    roots.add(root);
    byPackage.set(m[1], roots);
  }
  const dupes = [...byPackage].filter(([, roots]) => roots.size > 1);
  for (const [name, roots] of dupes) {
    console.error(`build: ${name} is bundled from ${roots.size} places: ${[...roots].join(", ")}`);
  }
  return dupes.length === 0;
}

const options = {
  absWorkingDir: here,
  entryPoints: ["src/app.ts"],
  outfile: "dist/app.js",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  sourcemap: true,
  metafile: true,
  alias,
  // The client reads its .wasm with node:fs only under Node; the browser never takes that path.
  external: ["node:*"],
  logLevel: "info",
  legalComments: "linked",
};

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });

if (watch) {
  const ctx = await esbuild.context({
    ...options,
    plugins: [
      {
        name: "assets",
        setup(build) {
          build.onEnd(async (result) => {
            if (result.errors.length === 0) await copyAssets();
          });
        },
      },
    ],
  });
  await ctx.watch();
  console.log("build: watching for changes");
} else {
  const result = await esbuild.build(options);
  await copyAssets();
  if (!checkSingleCopies(result.metafile)) process.exit(1);
  const cm = Object.keys(result.metafile.inputs).filter((p) => p.includes("node_modules/@codemirror/state/"));
  console.log(`build: @codemirror/state bundled from ${cm.map((p) => relative(here, resolve(here, p))).join(", ")}`);
  const out = result.metafile.outputs["dist/app.js"];
  console.log(`build: dist/app.js ${(out.bytes / 1024).toFixed(1)} KiB`);
}
