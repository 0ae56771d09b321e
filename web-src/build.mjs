// Build the ComputeNet dashboard into src/computenet/web/static.
//
// 1. Map data: China's outline (with Hong Kong, Macao and Taiwan merged in, no
//    internal borders) from world-atlas's countries-50m (ISC; Natural Earth 4.1.0
//    admin-0, public domain), simplified and rounded so it stays a few kB.
// 2. The app: TypeScript + Preact bundled and minified by esbuild.
// 3. index.html with cache-busting hashes, and LICENSES.txt for what we ship.
//
// The output is byte-for-byte reproducible from package-lock.json and src/.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";
import topojsonClient from "topojson-client";
import topojsonSimplify from "topojson-simplify";

const { merge } = topojsonClient;
const { presimplify, simplify } = topojsonSimplify;
const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "computenet", "web", "static");
const require = (p) => JSON.parse(readFileSync(join(here, "node_modules", p), "utf8"));

// ISO 3166 numeric ids in world-atlas: China, Hong Kong, Macao, Taiwan.
const CHINA_IDS = new Set(["156", "344", "446", "158"]);
// Minimum triangle area (square degrees) a point must span to be kept.
const SIMPLIFY_WEIGHT = 0.004;
// Islands smaller than this (square degrees) are dropped.
const MIN_RING_AREA = 0.08;

function ringArea(ring) {
  let a = 0;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    a += (ring[j][0] - ring[i][0]) * (ring[j][1] + ring[i][1]);
  }
  return Math.abs(a / 2);
}

function chinaOutline() {
  const topo = require("world-atlas/countries-50m.json");
  const simple = simplify(presimplify(topo), SIMPLIFY_WEIGHT);
  const geoms = simple.objects.countries.geometries.filter((g) => CHINA_IDS.has(g.id));
  const merged = merge(simple, geoms);
  const polygons = [];
  for (const poly of merged.coordinates) {
    const rings = poly
      .filter((ring) => ringArea(ring) >= MIN_RING_AREA)
      .map((ring) => {
        const pts = [];
        for (const [lon, lat] of ring) {
          const p = [Math.round(lon * 50) / 50, Math.round(lat * 50) / 50];
          const last = pts[pts.length - 1];
          if (!last || last[0] !== p[0] || last[1] !== p[1]) pts.push(p);
        }
        return pts;
      })
      .filter((ring) => ring.length >= 4);
    if (rings.length) polygons.push(rings);
  }
  return {
    source:
      "Natural Earth 4.1.0 admin-0 countries 1:50m (public domain) via world-atlas 2.0.2 (ISC); simplified",
    polygons,
  };
}

const outline = chinaOutline();
const outlinePlugin = {
  name: "china-outline",
  setup(build) {
    build.onResolve({ filter: /^virtual:china-outline$/ }, (args) => ({
      path: args.path,
      namespace: "generated",
    }));
    build.onLoad({ filter: /.*/, namespace: "generated" }, () => ({
      contents: JSON.stringify(outline),
      loader: "json",
    }));
  },
};

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const result = await esbuild.build({
  entryPoints: { app: join(here, "src", "main.tsx") },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
  outdir: out,
  write: false,
  plugins: [outlinePlugin],
  logLevel: "warning",
});

const hashes = {};
for (const file of result.outputFiles) {
  const name = file.path.slice(out.length + 1);
  writeFileSync(file.path, file.contents);
  hashes[name] = createHash("sha256").update(file.contents).digest("hex").slice(0, 12);
}

const html = readFileSync(join(here, "index.html"), "utf8")
  .replace("{{app.js}}", `web/app.js?v=${hashes["app.js"]}`)
  .replace("{{app.css}}", `web/app.css?v=${hashes["app.css"]}`);
writeFileSync(join(out, "index.html"), html);

const licences = [
  ["preact", "preact/LICENSE"],
  ["js-yaml", "js-yaml/LICENSE"],
  ["world-atlas (map outline, derived from Natural Earth, public domain)", "world-atlas/LICENSE"],
];
let text =
  "Third-party software and data shipped in this dashboard\n" +
  "=======================================================\n\n" +
  "Map outline: " + outline.source + ".\n" +
  "Natural Earth: 'All versions of Natural Earth raster + vector map data found on this\n" +
  "website are in the public domain.' (naturalearthdata.com/about/terms-of-use)\n";
for (const [name, path] of licences) {
  text += `\n--- ${name} ---\n` + readFileSync(join(here, "node_modules", path), "utf8");
}
writeFileSync(join(out, "LICENSES.txt"), text);

let total = 0;
for (const f of ["index.html", "app.js", "app.css", "LICENSES.txt"]) {
  const size = readFileSync(join(out, f)).length;
  total += size;
  console.log(`${f.padEnd(14)} ${(size / 1024).toFixed(1).padStart(7)} kB`);
}
console.log(`${"total".padEnd(14)} ${(total / 1024).toFixed(1).padStart(7)} kB -> ${out}`);
