// Formatting of money, energy, times and durations. Times are shown in China
// Standard Time, the network's timezone (tariff hours are CST hours).

export const TZ = "Asia/Shanghai";

const money2 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const num1 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
const num2 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });
const num3 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 3 });

/** Decimal string or number as a number (for display and charts only; sums stay on the server). */
export function dec(v: string | number | null | undefined): number {
  if (v === null || v === undefined || v === "") return 0;
  const n = typeof v === "number" ? v : Number(v);
  return Number.isFinite(n) ? n : 0;
}

/** ¥ with two decimals, e.g. "¥1,234.50"; "—" when unknown. */
export function cny(v: string | number | null | undefined): string {
  if (v === null || v === undefined || v === "") return "—";
  return `¥${money2.format(dec(v))}`;
}

/** A tariff in ¥/kWh with up to 3 decimals. */
export function perKwh(v: string | number | null | undefined): string {
  return v === null || v === undefined ? "—" : `¥${num3.format(dec(v))}/kWh`;
}

export function fmtNum(v: number | null | undefined, digits: 1 | 2 | 3 = 1): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  return (digits === 1 ? num1 : digits === 2 ? num2 : num3).format(v);
}

const parts = new Intl.DateTimeFormat("en-CA", {
  timeZone: TZ,
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
});

function pick(d: Date): Record<string, string> {
  const o: Record<string, string> = {};
  for (const p of parts.formatToParts(d)) o[p.type] = p.value;
  return o;
}

export function toDate(iso: string | Date | null | undefined): Date | null {
  if (!iso) return null;
  const d = iso instanceof Date ? iso : new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** "2026-05-14 14:20" in CST. */
export function dateTime(iso: string | Date | null | undefined, seconds = false): string {
  const d = toDate(iso);
  if (!d) return "—";
  const p = pick(d);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}${seconds ? `:${p.second}` : ""}`;
}

/** "05-14 14:20" in CST: compact for tables. */
export function shortTime(iso: string | Date | null | undefined): string {
  const d = toDate(iso);
  if (!d) return "—";
  const p = pick(d);
  return `${p.month}-${p.day} ${p.hour}:${p.minute}`;
}

/** Hour of the day (0-23) in CST. */
export function cstHour(iso: string | Date | null | undefined): number | null {
  const d = toDate(iso);
  return d ? Number(pick(d).hour) % 24 : null;
}

/** "2026-05" in CST: the billing period containing `iso`. */
export function period(iso: string | Date | null | undefined): string {
  const d = toDate(iso) ?? new Date();
  const p = pick(d);
  return `${p.year}-${p.month}`;
}

/** Seconds as "2d 3h", "3h 10m", "45m", "12s". */
export function duration(s: number | null | undefined): string {
  if (s === null || s === undefined || !Number.isFinite(s)) return "—";
  const sign = s < 0 ? "−" : "";
  let t = Math.round(Math.abs(s));
  if (t < 60) return `${sign}${t}s`;
  const d = Math.floor(t / 86400);
  t -= d * 86400;
  const h = Math.floor(t / 3600);
  t -= h * 3600;
  const m = Math.floor(t / 60);
  if (d) return `${sign}${d}d${h ? ` ${h}h` : ""}`;
  if (h) return `${sign}${h}h${m ? ` ${m}m` : ""}`;
  return `${sign}${m}m`;
}

/** Seconds between two instants, or null. */
export function between(a: string | null | undefined, b: string | null | undefined): number | null {
  const x = toDate(a);
  const y = toDate(b);
  return x && y ? (y.getTime() - x.getTime()) / 1000 : null;
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** Chips busy / total over a center's pools, and the load as a fraction in [0, 1]. */
export function load(
  pools: { count?: number | string; total?: number | string; free?: number | string }[] | undefined,
): {
  busy: number;
  total: number;
  frac: number;
} {
  let total = 0;
  let free = 0;
  for (const p of pools ?? []) {
    const c = Number(p.total ?? p.count ?? 0) || 0;
    total += c;
    free += p.free === undefined ? c : Number(p.free) || 0;
  }
  const busy = Math.max(0, total - free);
  return { busy, total, frac: total ? busy / total : 0 };
}
