// Hand-made SVG charts: stacked bars for money, the 24-hour tariff, a job's phases.
// Each chart carries a text summary (aria-label) so it is not only a picture.

import { cny, fmtNum } from "./format";

export const KIND_COLORS = { energy: "#c4620a", service: "#2f63a8", transfer: "#7a4fb0" } as const;
export type Kind = keyof typeof KIND_COLORS;
export const KINDS: Kind[] = ["energy", "service", "transfer"];

export function Legend({ items }: { items: { label: string; color: string }[] }) {
  return (
    <ul class="legend">
      {items.map((i) => (
        <li key={i.label}>
          <span class="swatch" style={{ background: i.color }} aria-hidden="true" />
          {i.label}
        </li>
      ))}
    </ul>
  );
}

export interface StackRow {
  label: string;
  parts: Record<Kind, number>;
  /** The exact total as the server gave it (shown instead of the sum of the parts). */
  total?: string | number;
}

/** One horizontal bar per row, split into energy / service / transfer, with the total at the end. */
export function StackedBars({ rows, title }: { rows: StackRow[]; title: string }) {
  const totals = rows.map((r) => KINDS.reduce((s, k) => s + Math.max(0, r.parts[k]), 0));
  const max = Math.max(1e-9, ...totals);
  const summary = rows
    .map((r, i) => `${r.label} ${cny(r.total ?? totals[i])} (${KINDS.filter((k) => r.parts[k] > 0).map((k) => `${k} ${cny(r.parts[k])}`).join(", ")})`)
    .join("; ");
  return (
    <figure class="chart">
      <div class="bars" role="img" aria-label={`${title}: ${summary}`}>
        {rows.map((r, i) => (
          <div class="bars-row" key={r.label}>
            <span class="bars-label" title={r.label}>
              {r.label}
            </span>
            <span class="bars-track">
              {KINDS.map((k) =>
                r.parts[k] > 0 ? (
                  <span
                    key={k}
                    class="bars-seg"
                    style={{ width: `${(r.parts[k] / max) * 100}%`, background: KIND_COLORS[k] }}
                    title={`${r.label} · ${k}: ${cny(r.parts[k])}`}
                  />
                ) : null,
              )}
            </span>
            <span class="bars-total">{cny(r.total ?? totals[i])}</span>
          </div>
        ))}
      </div>
      <Legend items={KINDS.map((k) => ({ label: k, color: KIND_COLORS[k] }))} />
    </figure>
  );
}

/** 24 hourly prices as bars; the current hour outlined; peak hours darker. */
export function TariffChart({ hourly, hour, label }: { hourly: number[]; hour: number | null; label: string }) {
  if (hourly.length !== 24) return <p class="muted">No hourly tariff.</p>;
  const max = Math.max(...hourly, 1e-9);
  const min = Math.min(...hourly);
  const W = 480;
  const H = 150;
  const left = 40;
  const bottom = 22;
  const bw = (W - left - 4) / 24;
  const y = (v: number) => H - bottom - (v / max) * (H - bottom - 10);
  const summary =
    `${label}: from ${fmtNum(min, 3)} to ${fmtNum(max, 3)} ¥/kWh over the day` +
    (hour !== null ? `; now (hour ${hour}) ${fmtNum(hourly[hour], 3)} ¥/kWh` : "");
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={summary}>
        {[0, max / 2, max].map((v) => (
          <g key={v}>
            <line x1={left} x2={W} y1={y(v)} y2={y(v)} class="grid" />
            <text x={left - 4} y={y(v) + 4} text-anchor="end" class="axis">
              {fmtNum(v, 2)}
            </text>
          </g>
        ))}
        {hourly.map((v, h) => {
          const level = max === min ? "mid" : v >= max - 1e-9 ? "peak" : v <= min + 1e-9 ? "valley" : "mid";
          return (
            <rect
              key={h}
              x={left + h * bw + 1}
              y={y(v)}
              width={bw - 2}
              height={H - bottom - y(v)}
              class={`tariff-bar tariff-${level}${h === hour ? " tariff-now" : ""}`}
            >
              <title>{`${String(h).padStart(2, "0")}:00 ${fmtNum(v, 3)} ¥/kWh`}</title>
            </rect>
          );
        })}
        {[0, 6, 12, 18, 23].map((h) => (
          <text key={h} x={left + h * bw + bw / 2} y={H - 6} text-anchor="middle" class="axis">
            {`${h}h`}
          </text>
        ))}
      </svg>
      <figcaption class="muted">
        ¥/kWh by hour (CST){hour !== null ? `; outlined: now, ${hour}:00` : ""}. Valley hours light, peak hours dark.
      </figcaption>
    </figure>
  );
}

export interface Phase {
  label: string;
  seconds: number;
  color: string;
}

/** A job's life as one bar: waiting, moving data, running. */
export function PhaseBar({ phases, title }: { phases: Phase[]; title: string }) {
  const shown = phases.filter((p) => p.seconds > 0);
  const total = shown.reduce((s, p) => s + p.seconds, 0);
  if (!total) return null;
  return (
    <div class="phasebar" role="img" aria-label={`${title}: ${shown.map((p) => `${p.label} ${Math.round(p.seconds)} s`).join(", ")}`}>
      {shown.map((p) => (
        <span
          key={p.label}
          class="phase"
          style={{ flexGrow: p.seconds, background: p.color }}
          title={`${p.label}`}
        >
          <span class="phase-text">{p.label}</span>
        </span>
      ))}
    </div>
  );
}

export interface Line {
  label: string;
  color: string;
  /** One value per point (null: no value that minute). */
  values: (number | null)[];
}

/** Values over time as lines (one per series) on a shared axis; minutes along the bottom. */
export function SeriesChart({ times, lines, title, unit }: { times: string[]; lines: Line[]; title: string; unit: string }) {
  const W = 480;
  const H = 150;
  const left = 46;
  const bottom = 22;
  const all = lines.flatMap((l) => l.values.filter((v): v is number => v !== null));
  if (!times.length || !all.length) return <p class="muted">No {title.toLowerCase()} yet.</p>;
  const max = Math.max(...all, 1e-9);
  const n = times.length;
  const x = (i: number) => left + (n === 1 ? (W - left) / 2 : (i / (n - 1)) * (W - left - 6));
  const y = (v: number) => H - bottom - (v / max) * (H - bottom - 10);
  const last = (l: Line) => [...l.values].reverse().find((v) => v !== null) ?? null;
  const summary = `${title}: ` + lines.map((l) => `${l.label} now ${fmtNum(last(l), 2)} ${unit}, at most ${fmtNum(Math.max(0, ...l.values.filter((v): v is number => v !== null)), 2)}`).join("; ");
  const hhmm = (iso: string) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={summary}>
        {[0, max / 2, max].map((v) => (
          <g key={v}>
            <line x1={left} x2={W} y1={y(v)} y2={y(v)} class="grid" />
            <text x={left - 4} y={y(v) + 4} text-anchor="end" class="axis">
              {fmtNum(v, v < 10 ? 2 : 1)}
            </text>
          </g>
        ))}
        {lines.map((l) => {
          const pts = l.values.map((v, i) => (v === null ? null : `${x(i)},${y(v)}`)).filter((p): p is string => p !== null);
          return (
            <g key={l.label}>
              {pts.length > 1 && <polyline points={pts.join(" ")} fill="none" stroke={l.color} stroke-width={2} />}
              {l.values.map((v, i) =>
                v === null ? null : (
                  <circle key={i} cx={x(i)} cy={y(v)} r={2.5} fill={l.color}>
                    <title>{`${hhmm(times[i])} ${l.label}: ${fmtNum(v, 2)} ${unit}`}</title>
                  </circle>
                ),
              )}
            </g>
          );
        })}
        {[0, n - 1].filter((i, k, a) => a.indexOf(i) === k).map((i) => (
          <text key={i} x={x(i)} y={H - 6} text-anchor={i === 0 && n > 1 ? "start" : "end"} class="axis">
            {hhmm(times[i])}
          </text>
        ))}
      </svg>
      <figcaption class="chart-title">{title}</figcaption>
      <Legend items={lines.map((l) => ({ label: `${l.label} (${unit})`, color: l.color }))} />
    </figure>
  );
}
