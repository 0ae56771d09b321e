// The network map: China's outline, centers placed by lat/lon (sized by capacity,
// colored by load), user sites, and links drawn with their current traffic.

import { useMemo } from "preact/hooks";
// Generated at build time from world-atlas (Natural Earth); see build.mjs.
import outline from "virtual:china-outline";

import { Legend } from "./charts";
import { fmtNum, load } from "./format";
import { isRegion } from "./region";
import type { CenterView, LinkView, SiteView } from "./types";

const RAD = Math.PI / 180;
// Albers equal-area conic, the usual projection for maps of China.
const PHI1 = 25 * RAD;
const PHI2 = 47 * RAD;
const LAMBDA0 = 105 * RAD;
const N = (Math.sin(PHI1) + Math.sin(PHI2)) / 2;
const C = Math.cos(PHI1) ** 2 + 2 * N * Math.sin(PHI1);
const RHO0 = Math.sqrt(C) / N;
const SCALE = 1000;

/** (lon, lat) in degrees → SVG coordinates (y down). */
export function project(lon: number, lat: number): [number, number] {
  const rho = Math.sqrt(C - 2 * N * Math.sin(lat * RAD)) / N;
  const theta = N * (lon * RAD - LAMBDA0);
  return [SCALE * rho * Math.sin(theta), -SCALE * (RHO0 - rho * Math.cos(theta))];
}

const OUTLINE = (() => {
  let d = "";
  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  for (const poly of outline.polygons) {
    for (const ring of poly) {
      ring.forEach(([lon, lat], i) => {
        const [x, y] = project(lon, lat);
        minX = Math.min(minX, x);
        maxX = Math.max(maxX, x);
        minY = Math.min(minY, y);
        maxY = Math.max(maxY, y);
        d += `${i ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)}`;
      });
      d += "Z";
    }
  }
  return { d, minX, minY, maxX, maxY };
})();

/** Load 0..1 → color: green (idle) through amber to red (full). */
export function loadColor(frac: number): string {
  const stops: [number, [number, number, number]][] = [
    [0, [26, 150, 65]],
    [0.5, [230, 160, 20]],
    [1, [205, 40, 40]],
  ];
  const f = Math.max(0, Math.min(1, frac));
  const i = f <= 0.5 ? 0 : 1;
  const [f0, c0] = stops[i];
  const [f1, c1] = stops[i + 1];
  const t = (f - f0) / (f1 - f0);
  const c = c0.map((v, k) => Math.round(v + (c1[k] - v) * t));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function shortName(c: { id: string; name?: string }): string {
  const n = (c.name || c.id).split(" (")[0];
  return n.length > 18 ? c.id : n;
}

export interface MapProps {
  centers: CenterView[];
  sites: SiteView[];
  links: LinkView[];
  /** Active transfers derived from staging jobs when links carry no traffic figures: "a|b" → count. */
  derivedTransfers?: Map<string, number>;
  selected: string | null;
  onSelect: (id: string) => void;
  /** Centers running a ready service replica → the services (a ring marks them). */
  serving?: Map<string, string[]>;
}

export function NetworkMap({ centers, sites, links, derivedTransfers, selected, onSelect, serving }: MapProps) {
  const nodes = useMemo(() => {
    const m = new Map<string, { x: number; y: number }>();
    for (const n of [...centers, ...sites]) {
      const [x, y] = project(n.lon, n.lat);
      m.set(n.id, { x, y });
    }
    return m;
  }, [centers, sites]);

  const maxChips = Math.max(1, ...centers.map((c) => load(c.pools).total));
  const radius = (total: number) => 9 + 17 * Math.sqrt(total / maxChips);
  // Room around the outline for labels of coastal centers and sites (drawn to the right).
  const pad = 40;
  const right = 150;
  const vb = `${OUTLINE.minX - pad} ${OUTLINE.minY - pad} ${OUTLINE.maxX - OUTLINE.minX + pad + right} ${OUTLINE.maxY - OUTLINE.minY + 2 * pad}`;
  const maxBw = Math.max(1, ...links.map((l) => l.bandwidth_gbps));

  const onKey = (id: string) => (e: KeyboardEvent) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      onSelect(id);
    }
  };

  return (
    <figure class="map">
      <svg
        viewBox={vb}
        role="group"
        aria-label={`Map of the network: ${centers.length} centers, ${links.length} links. Select a center for details.`}
      >
        <path d={OUTLINE.d} class="land" aria-hidden="true" />
        <g class="links" aria-hidden="true">
          {links.map((l) => {
            const a = nodes.get(l.a);
            const b = nodes.get(l.b);
            if (!a || !b) return null;
            // A slight curve keeps parallel routes apart and reads as a flow.
            const mx = (a.x + b.x) / 2 + (b.y - a.y) * 0.12;
            const my = (a.y + b.y) / 2 - (b.x - a.x) * 0.12;
            const d = `M${a.x.toFixed(1)} ${a.y.toFixed(1)}Q${mx.toFixed(1)} ${my.toFixed(1)} ${b.x.toFixed(1)} ${b.y.toFixed(1)}`;
            const derived = derivedTransfers?.get(`${l.a}|${l.b}`) ?? derivedTransfers?.get(`${l.b}|${l.a}`) ?? 0;
            const traffic = l.traffic_gbps ?? 0;
            const active = traffic > 0 || (l.transfers ?? 0) > 0 || derived > 0;
            const util = traffic > 0 ? Math.min(1, traffic / l.bandwidth_gbps) : derived > 0 ? 0.5 : 0;
            const base = 1.5 + 3 * (Math.log1p(l.bandwidth_gbps) / Math.log1p(maxBw));
            const key = `${l.a}|${l.b}`;
            return (
              <g key={key} class={active ? "link link-active" : "link"} data-link={key}>
                <path d={d} class="link-base" style={{ strokeWidth: base }} />
                {active && <path d={d} class="link-flow" style={{ strokeWidth: 2 + 7 * util }} />}
                {active && (
                  <text x={(a.x + 2 * mx + b.x) / 4} y={(a.y + 2 * my + b.y) / 4 - 8} class="link-label" text-anchor="middle">
                    {traffic > 0 ? `${fmtNum(traffic, 2)} Gb/s` : `${derived || l.transfers} transfer${(derived || l.transfers) === 1 ? "" : "s"}`}
                  </text>
                )}
              </g>
            );
          })}
        </g>
        <g class="sites">
          {sites.map((s) => {
            const p = nodes.get(s.id);
            if (!p) return null;
            return (
              <g key={s.id} class="site" aria-label={`user site ${s.name || s.id}`} role="img">
                <rect x={p.x - 5} y={p.y - 5} width={10} height={10} />
                <text x={p.x + 9} y={p.y + 16} class="site-label">
                  {s.name || s.id}
                </text>
              </g>
            );
          })}
        </g>
        <g class="centers">
          {centers.map((c) => {
            const p = nodes.get(c.id);
            if (!p) return null;
            const l = load(c.pools);
            const r = radius(l.total);
            const region = isRegion(c);
            const members = region ? (c.members ?? []) : [];
            const memberPts = members.map((m) => {
              const [x, y] = project(m.lon, m.lat);
              return { m, x, y };
            });
            // A region is a group: a dashed ring around its own dot and its member centers.
            const ring = Math.max(r + 10, ...memberPts.map((q) => Math.hypot(q.x - p.x, q.y - p.y) + 14));
            const what = region
              ? `region ${c.name || c.id}${members.length ? ` of ${members.length} centers` : ""}: ${l.busy} of ${l.total} chips busy`
              : `${c.name || c.id}: ${l.busy} of ${l.total} chips busy`;
            const served = serving?.get(c.id) ?? [];
            const label =
              `${what} (${Math.round(l.frac * 100)}%), ${c.online ? "online" : "offline"}, ${c.queued} queued` +
              (served.length ? `; serving ${served.join(", ")}` : "");
            const left = p.x > (OUTLINE.minX + OUTLINE.maxX) / 2 + 250;
            const gap = region ? ring : r;
            return (
              <g
                key={c.id}
                class={`center${region ? " region" : ""}${selected === c.id ? " selected" : ""}${c.online ? "" : " offline"}`}
                data-center={c.id}
                data-region={region ? c.id : undefined}
                // Lower case: SVG attributes are case-sensitive and only "tabindex" makes it focusable.
                tabindex={0}
                role="button"
                aria-pressed={selected === c.id}
                aria-label={label}
                onClick={() => onSelect(c.id)}
                onKeyDown={onKey(c.id)}
              >
                <title>{label}</title>
                {region && <circle class="region-ring" cx={p.x} cy={p.y} r={ring} />}
                <circle class="focus-ring" cx={p.x} cy={p.y} r={(region ? ring : r) + 7} />
                {served.length > 0 && (
                  <circle class="replica-ring" data-replica-center={c.id} cx={p.x} cy={p.y} r={(region ? ring : r) + 3.5} />
                )}
                <circle class="dot" cx={p.x} cy={p.y} r={r} fill={c.online ? loadColor(l.frac) : "#9aa3ad"} />
                {memberPts.map(({ m, x, y }) => {
                  const ml = load(m.pools);
                  return (
                    <circle
                      key={m.id}
                      class="member"
                      data-member={m.id}
                      cx={x}
                      cy={y}
                      r={6}
                      fill={m.online === false ? "#9aa3ad" : loadColor(ml.frac)}
                    />
                  );
                })}
                <text x={left ? p.x - gap - 6 : p.x + gap + 6} y={p.y + 5} text-anchor={left ? "end" : "start"} class="center-label">
                  {shortName(c)}
                  {c.online ? "" : " (offline)"}
                </text>
              </g>
            );
          })}
        </g>
      </svg>
      <figcaption>
        <Legend
          items={[
            { label: "idle", color: loadColor(0) },
            { label: "half busy", color: loadColor(0.5) },
            { label: "full", color: loadColor(1) },
            { label: "offline", color: "#9aa3ad" },
            { label: "link carrying data", color: "#1f6fd1" },
            ...(serving?.size ? [{ label: "ring: runs a service replica", color: "#1b7f5a" }] : []),
            ...(centers.some(isRegion) ? [{ label: "dashed ring: a region (a network of its own)", color: "#0b2545" }] : []),
          ]}
        />
        <span class="muted">Circle area ∝ chips. Outline: Natural Earth (public domain), simplified.</span>
      </figcaption>
    </figure>
  );
}
