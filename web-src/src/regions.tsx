// Regions: centers that are whole networks of their own (docs/federation.md).
//
// A region joins this plane as one center, through `cnet agent --backend network`
// and a network file that tags it `region`. Its pools carry what the region's
// agent reports: `largest_free` (the largest job that fits now in one of its
// centers), `used` and `queued`. Its member centers are shown when its agent
// lists them (`members`, sent by `cnet agent --backend network` with its
// heartbeat); otherwise the region is shown by its capacity. Either way a link
// to its own plane when the network file gives one (a `url:` tag, read through
// GET /api/v1/resolve).

import { api } from "./api";
import { Meter } from "./components";
import { load } from "./format";
import { usePoll } from "./hooks";
import { loadColor } from "./map";
import type { CenterView, PoolView, ResolveView } from "./types";

function num(v: number | string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

/** A region's capacity per chip type: total, free, the largest job that fits now, used, queued. */
export function RegionCapacity({ region }: { region: CenterView }) {
  // An offline region reports nothing: its declared chips, and no free ones or shapes.
  const off = !region.online;
  return (
    <div class="table-wrap">
    <table class="data compact" aria-label={`Capacity of region ${region.name || region.id}`} data-testid="region-capacity">
      <thead>
        <tr>
          <th scope="col">Chip</th>
          <th scope="col" class="num">Total</th>
          <th scope="col" class="num">Free</th>
          <th scope="col" class="num" title="the most chips one job can get now, in one of the region's centers">
            Largest job now
          </th>
          <th scope="col" class="num">Queued</th>
          <th scope="col">Busy</th>
        </tr>
      </thead>
      <tbody>
        {region.pools.map((p: PoolView) => {
          const l = load([p]);
          const largest = num(p.largest_free) ?? num(p.free);
          return (
            <tr key={String(p.chip)} data-chip={p.chip}>
              <th scope="row">{p.chip}</th>
              <td class="num">{l.total}</td>
              <td class="num">{off ? "—" : (p.free ?? "—")}</td>
              <td class="num" data-testid="largest-free">
                {off ? "—" : (largest ?? "—")}
              </td>
              <td class="num">{p.queued ?? "—"}</td>
              <td>{off ? <span class="muted small">offline</span> : <Meter frac={l.frac} color={loadColor(l.frac)} label={`${l.busy} of ${l.total} busy`} />}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
    </div>
  );
}

/** The region's own control plane, from its `url:` tag (resolved once a minute). */
function useRegionUrl(region: CenterView): string | null {
  const ident = region.identifier;
  const got = usePoll(
    (signal) => (ident ? api<ResolveView>(`/api/v1/resolve/${encodeURIComponent(ident)}`, { signal }) : Promise.resolve(null)),
    `resolve:${ident ?? region.id}`,
    60_000,
  );
  const url = got.data?.reach.region_url;
  // Only http(s) links: the value comes from a network file.
  return url && /^https?:\/\//.test(url) ? url : null;
}

/** One region as a group: its state, its capacity, and its member centers if this plane lists them. */
export function RegionGroup({ region, onSelect, selected }: { region: CenterView; onSelect: (id: string) => void; selected: boolean }) {
  const url = useRegionUrl(region);
  const members = region.members ?? [];
  const l = load(region.pools);
  return (
    <article class={`region-card${selected ? " selected" : ""}`} data-testid="region-group" data-region={region.id} aria-labelledby={`region-${region.id}`}>
      <header class="card-head">
        <h3 id={`region-${region.id}`} class="region-title">
          <button type="button" class="link-button" onClick={() => onSelect(region.id)} aria-pressed={selected}>
            {region.name || region.id}
          </button>
          <span class="badge tag-region">region</span>
        </h3>
        <span class="muted small">
          {region.online ? (
            <>
              <span class="ok">online</span> · {l.busy}/{l.total} chips busy
            </>
          ) : (
            <>
              <span class="bad">offline</span> · {l.total} chips declared
            </>
          )}{" "}
          · {region.running} running · {region.queued} queued
        </span>
      </header>
      <RegionCapacity region={region} />
      {members.length > 0 ? (
        <>
          <h4 class="small">Member centers ({members.length})</h4>
          <ul class="members" aria-label={`Member centers of ${region.name || region.id}`}>
            {members.map((m) => {
              const ml = load(m.pools);
              return (
                <li key={m.id} data-member={m.id}>
                  <strong>{m.name || m.id}</strong>{" "}
                  <span class="muted small">
                    {m.online === false ? "offline" : "online"} · {ml.busy}/{ml.total} busy
                  </span>
                </li>
              );
            })}
          </ul>
          {url ? (
            <p class="muted small">
              More on <a href={url} rel="noopener noreferrer">the region's own dashboard</a>.
            </p>
          ) : null}
        </>
      ) : (
        <p class="muted small" data-testid="region-members-note">
          This plane does not list the region's own centers: shown is the capacity its network agent reports.
          {url ? (
            <>
              {" "}
              Its centers are on <a href={url} rel="noopener noreferrer">the region's own dashboard</a>.
            </>
          ) : null}
        </p>
      )}
    </article>
  );
}
