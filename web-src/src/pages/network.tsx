// Network page: the map, a table of centers, and the selected center's details.

import { useMemo } from "preact/hooks";

import { api, qs } from "../api";
import { TariffChart } from "../charts";
import { Empty, ErrorBox, LiveNote, Loading, Meter, Section, Stat } from "../components";
import { cstHour, dateTime, dec, duration, fmtNum, load, perKwh } from "../format";
import { navigate, usePoll } from "../hooks";
import { loadColor, NetworkMap } from "../map";
import { isRegion } from "../region";
import { RegionCapacity, RegionGroup } from "../regions";
import { useSession } from "../session";
import type { CenterView, JobDetail, JobView, LinkView, ServiceView } from "../types";

/** Hop-shortest path between two nodes over the links (for drawing transfers). */
function path(links: LinkView[], from: string, to: string): string[] {
  const adj = new Map<string, string[]>();
  for (const l of links) {
    adj.set(l.a, [...(adj.get(l.a) ?? []), l.b]);
    adj.set(l.b, [...(adj.get(l.b) ?? []), l.a]);
  }
  const prev = new Map<string, string>([[from, from]]);
  const queue = [from];
  while (queue.length) {
    const n = queue.shift()!;
    if (n === to) break;
    for (const m of adj.get(n) ?? []) if (!prev.has(m)) (prev.set(m, n), queue.push(m));
  }
  if (!prev.has(to)) return [];
  const out = [to];
  while (out[0] !== from) out.unshift(prev.get(out[0])!);
  return out;
}

/**
 * Transfers in flight, from the caller's STAGING jobs (source replica → placed center).
 * Used only when the server's links carry no `traffic_gbps` of their own.
 */
function useDerivedTransfers(links: LinkView[], enabled: boolean): Map<string, number> {
  const staging = usePoll(
    async (signal) => {
      if (!enabled) return [] as JobDetail[];
      const jobs = await api<JobView[]>(`/api/v1/jobs${qs({ state: "STAGING", limit: 20 })}`, { signal });
      return Promise.all(jobs.slice(0, 8).map((j) => api<JobDetail>(`/api/v1/jobs/${encodeURIComponent(j.id)}`, { signal })));
    },
    `staging:${enabled}`,
  );
  return useMemo(() => {
    const m = new Map<string, number>();
    for (const j of staging.data ?? []) {
      const dest = j.placement?.center;
      if (!dest) continue;
      for (const src of Object.values(j.placement?.source_replicas ?? {})) {
        const hops = path(links, src, dest);
        for (let i = 1; i < hops.length; i++) {
          const k = `${hops[i - 1]}|${hops[i]}`;
          m.set(k, (m.get(k) ?? 0) + 1);
        }
      }
    }
    return m;
  }, [staging.data, links]);
}

/** How long ago a real-time instant was (heartbeats are in real time, not network time). */
function ago(iso: string): string {
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (!Number.isFinite(s)) return "—";
  if (Math.abs(s) > 86400) return dateTime(iso, true);
  return s < 1.5 ? "just now" : `${duration(s)} ago`;
}

export function NetworkPage({ selected }: { selected: string | null }) {
  const { network } = useSession();
  const centers = usePoll((signal) => api<CenterView[]>("/api/v1/centers", { signal }), "centers");
  const links = network.data?.links ?? [];
  const hasTraffic = links.some((l) => l.traffic_gbps !== undefined || l.transfers !== undefined);
  const derived = useDerivedTransfers(links, Boolean(network.data) && !hasTraffic);
  const list = centers.data ?? [];
  const current = list.find((c) => c.id === selected) ?? null;
  const regions = list.filter(isRegion);
  const select = (id: string) => navigate("network", { center: id === selected ? undefined : id }, true);
  // Service replicas on the map: a ring around each center running a ready one.
  const services = usePoll((signal) => api<ServiceView[]>("/api/v1/services", { signal }), "map-services", 5000);
  const serving = useMemo(() => {
    const m = new Map<string, string[]>();
    for (const svc of services.data ?? [])
      for (const r of svc.replicas)
        if (r.ready && r.center && !(m.get(r.center) ?? []).includes(svc.name)) m.set(r.center, [...(m.get(r.center) ?? []), svc.name]);
    return m;
  }, [services.data]);

  const totals = list.reduce(
    (acc, c) => {
      const l = load(c.pools);
      return { busy: acc.busy + l.busy, total: acc.total + l.total, queued: acc.queued + c.queued, running: acc.running + c.running, online: acc.online + (c.online ? 1 : 0) };
    },
    { busy: 0, total: 0, queued: 0, running: 0, online: 0 },
  );

  return (
    <div class="page">
      <div class="page-head">
        <h1>Network{network.data ? `: ${network.data.name}` : ""}</h1>
        <LiveNote updatedAt={centers.updatedAt} error={centers.error} />
      </div>
      <ErrorBox error={!centers.data ? centers.error : null} title="Cannot load the centers" />
      {list.length > 0 && (
        <div class="stats" aria-label="Network totals">
          <Stat label="Centers online" value={`${totals.online} / ${list.length}`} />
          <Stat label="Chips busy" value={`${totals.busy} / ${totals.total}`} sub={`${Math.round((totals.total ? totals.busy / totals.total : 0) * 100)}% load`} />
          <Stat label="Jobs running" value={totals.running} />
          <Stat label="Jobs queued" value={totals.queued} />
        </div>
      )}
      <div class="network-layout">
        <Section title="Map" id="map">
          {centers.loading ? (
            <Loading what="Loading the map" />
          ) : (
            <NetworkMap
              centers={list}
              sites={network.data?.sites ?? []}
              links={links}
              derivedTransfers={derived}
              selected={current?.id ?? null}
              onSelect={select}
              serving={serving}
            />
          )}
        </Section>
        <div class="side" aria-live="polite">
          {current ? (
            <CenterPanel center={current} now={network.data?.now ?? null} onClose={() => navigate("network", {}, true)} />
          ) : (
            <Section title="Center details" id="center">
              <Empty title="No center selected">Click a center on the map, or pick one in the table below (Tab, then Enter).</Empty>
            </Section>
          )}
        </div>
      </div>
      {regions.length > 0 && (
        <Section title={`Regions (${regions.length})`} id="regions">
          <p class="muted small">
            Each region is a network of its own that joins this one as a single center: this plane picks the region, the region
            picks its center.
          </p>
          <div class="regions" data-testid="regions">
            {regions.map((r) => (
              <RegionGroup key={r.id} region={r} selected={r.id === current?.id} onSelect={select} />
            ))}
          </div>
        </Section>
      )}
      <Section title="Centers" id="centers">
        {list.length === 0 && !centers.loading ? (
          <Empty title="No centers">The network has no centers yet.</Empty>
        ) : (
          <div class="table-wrap">
            <table class="data">
              <thead>
                <tr>
                  <th scope="col">Center</th>
                  <th scope="col">Hub</th>
                  <th scope="col">Status</th>
                  <th scope="col">Chips busy</th>
                  <th scope="col" class="num">Tariff now</th>
                  <th scope="col" class="num">PUE</th>
                  <th scope="col" class="num">Running</th>
                  <th scope="col" class="num">Queued</th>
                </tr>
              </thead>
              <tbody>
                {list.map((c) => {
                  const l = load(c.pools);
                  return (
                    <tr key={c.id} class={c.id === current?.id ? "selected" : ""}>
                      <th scope="row">
                        <button type="button" class="link-button" onClick={() => select(c.id)} aria-pressed={c.id === current?.id}>
                          {c.name || c.id}
                        </button>
                      </th>
                      <td>
                        {c.hub} <span class="muted">({c.region})</span>
                      </td>
                      <td>{c.online ? <span class="ok">online</span> : <span class="bad">offline</span>}</td>
                      <td>
                        <Meter frac={l.frac} color={loadColor(l.frac)} label={`${l.busy} of ${l.total} busy`} /> {l.busy}/{l.total}
                      </td>
                      <td class="num">{perKwh(c.tariff_now)}</td>
                      <td class="num">{fmtNum(c.pue, 2)}</td>
                      <td class="num">{c.running}</td>
                      <td class="num">{c.queued}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </Section>
    </div>
  );
}

function CenterPanel({ center: c, now, onClose }: { center: CenterView; now: string | null; onClose: () => void }) {
  const l = load(c.pools);
  const hourly = (c.tariff_hourly ?? []).map(dec);
  return (
    <Section
      title={c.name || c.id}
      id="center"
      actions={
        <button type="button" class="secondary small" onClick={onClose} aria-label={`Close details of ${c.name || c.id}`}>
          Close
        </button>
      }
    >
      <p class="muted" data-testid="center-panel">
        {c.id} · {c.hub} · {c.region} · {isRegion(c) ? "a region (network backend)" : `${c.backend} backend`} ·{" "}
        {c.online ? <span class="ok">online</span> : <span class="bad">offline</span>}
        {c.last_heartbeat ? ` · last heartbeat ${ago(c.last_heartbeat)}` : ""}
      </p>
      <div class="stats compact">
        <Stat label="Tariff now" value={perKwh(c.tariff_now)} />
        <Stat label="PUE" value={fmtNum(c.pue, 2)} />
        <Stat label="Queue" value={`${c.queued} queued`} sub={`${c.running} running`} />
        <Stat label="Carbon" value={`${fmtNum(c.carbon_kg_per_kwh, 2)} kg/kWh`} />
        <Stat label="Service" value={`¥${fmtNum(dec(c.service_price_per_cuh), 2)}/CU·h`} />
        <Stat label="Free chips" value={`${l.total - l.busy} / ${l.total}`} />
      </div>
      {isRegion(c) ? (
        <>
          <h3>Region capacity</h3>
          <RegionCapacity region={c} />
        </>
      ) : (
        <>
      <h3>Pools</h3>
      <table class="data compact">
        <thead>
          <tr>
            <th scope="col">Chip</th>
            <th scope="col" class="num">Free</th>
            <th scope="col" class="num">Total</th>
            <th scope="col">Busy</th>
          </tr>
        </thead>
        <tbody>
          {c.pools.map((p) => {
            const pl = load([p]);
            return (
              <tr key={String(p.chip)}>
                <th scope="row">{p.chip}</th>
                <td class="num">{p.free ?? "—"}</td>
                <td class="num">{pl.total}</td>
                <td>
                  <Meter frac={pl.frac} color={loadColor(pl.frac)} label={`${pl.busy} of ${pl.total} busy`} />
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
        </>
      )}
      <h3>Tariff over the day</h3>
      <TariffChart hourly={hourly} hour={cstHour(now)} label={`Tariff of ${c.name || c.id}`} />
    </Section>
  );
}
