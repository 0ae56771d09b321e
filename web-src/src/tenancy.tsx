// The tenant's quotas with their use and its fair-share standing (GET /api/v1/tenancy),
// shown on the bills page under the bill (docs/tenancy.md).

import { api, qs } from "./api";
import { Section } from "./components";
import { cny, dec } from "./format";
import { usePoll } from "./hooks";
import type { QuotaView, TenancyView } from "./types";

function amount(q: QuotaView, v: string): string {
  return q.kind === "cny" ? cny(v) : `${dec(v)}`;
}

/** Quotas (used of limit) and fair-share standing of `tenant` ("" = the caller's own). */
export function Tenancy({ tenant }: { tenant: string }) {
  const got = usePoll(
    (signal) => api<TenancyView>(`/api/v1/tenancy${qs({ tenant: tenant || undefined })}`, { signal }),
    `tenancy:${tenant}`,
  );
  const t = got.data;
  if (!t) return null; // an older server without tenancy, or still loading: nothing to add
  const pct = (x: number) => `${Math.round(x * 100)} %`;
  return (
    <Section title="Quotas and fair share" id="tenancy">
      <p class="muted" data-testid="tenancy-standing">
        Weight {t.weight} — share {pct(t.share)} of the tenants with work, used {pct(t.used_share)} of their recent
        CU·h ({t.usage_cu_hours.toFixed(1)} CU·h, half-life {t.half_life_days} days). Priority ceiling:{" "}
        {t.priority_ceiling ?? "none"}.
      </p>
      {t.quotas.length > 0 && (
        <div class="table-wrap">
          <table class="data" aria-label="Quotas" data-testid="quotas">
            <thead>
              <tr>
                <th scope="col">Quota</th>
                <th scope="col" class="num">Used</th>
                <th scope="col" class="num">Limit</th>
              </tr>
            </thead>
            <tbody>
              {t.quotas.map((q) => (
                <tr key={q.label}>
                  <th scope="row">{q.label}</th>
                  <td class="num">{amount(q, q.used)}</td>
                  <td class="num strong">{amount(q, q.limit)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Section>
  );
}
