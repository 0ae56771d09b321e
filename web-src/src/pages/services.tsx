// Services: each inference service with its replicas (center, state, chip, endpoint),
// its traffic (requests/s, TTFB percentiles) and cost over the last hour, and totals.
// Data: GET /api/v1/services and /api/v1/services/{name}/metrics (docs/services.md).

import { api } from "../api";
import { Empty, ErrorBox, LiveNote, Loading, Section, Stat, StateBadge } from "../components";
import { SeriesChart } from "../charts";
import { cny, fmtNum, plural } from "../format";
import { href, usePoll } from "../hooks";
import type { ServiceMetrics, ServiceView } from "../types";

const METRICS_MS = 5000;

function ms(v: number | null | undefined): string {
  return v === null || v === undefined ? "—" : `${fmtNum(v, v < 10 ? 2 : 1)} ms`;
}

function ServiceCard({ svc }: { svc: ServiceView }) {
  const name = encodeURIComponent(svc.name);
  const metrics = usePoll(
    (signal) => api<ServiceMetrics>(`/api/v1/services/${name}/metrics?minutes=60`, { signal }),
    `svc-metrics:${svc.name}`,
    METRICS_MS,
  );
  const m = metrics.data;
  const t = m?.totals;
  const times = m?.series.map((p) => p.t) ?? [];
  const centers = [...new Set(svc.replicas.map((r) => r.center).filter((c): c is string => !!c))];
  return (
    <Section
      title={svc.name}
      id={`svc-${svc.name}`}
      actions={<LiveNote updatedAt={metrics.updatedAt} error={metrics.error} />}
    >
      <div class="service-body" data-testid={`service-${svc.name}`}>
        <p class="muted">
          {svc.ready}/{plural(svc.wanted, "replica")} ready (min {svc.spec.replicas.min}, max{" "}
          {svc.spec.replicas.max}); objective p99 TTFB ≤ {fmtNum(svc.spec.latency.p99_ttfb_ms, 1)} ms
          {centers.length ? `; at ${centers.join(", ")}` : ""}. Reach it at <code>/services/{svc.name}/…</code> on a{" "}
          <code>cnet gateway</code>.
        </p>
        {metrics.error && !m ? (
          <ErrorBox error={metrics.error} title="Cannot read the service's metrics" />
        ) : (
          <div class="stats">
            <Stat label="Requests served" value={<span data-testid="service-requests">{t ? t.requests : "…"}</span>} sub={t ? `${fmtNum(t.error_rate * 100, 2)} % errors` : undefined} />
            <Stat label="TTFB p50 / p99" value={`${ms(t?.p50_ttfb_ms)} / ${ms(t?.p99_ttfb_ms)}`} sub={`latency p99 ${ms(t?.p99_latency_ms)}`} />
            <Stat label="Cost so far" value={<span data-testid="service-cost">{t ? cny(t.cost_cny) : "…"}</span>} sub={t ? `${cny(t.cost_cny_per_hour)}/h now` : undefined} />
            <Stat label="Per 1,000 requests" value={t?.cny_per_1k_requests != null ? cny(t.cny_per_1k_requests) : "—"} sub={t?.cu_hours_per_request != null ? `${fmtNum(t.cu_hours_per_request * 1000, 3)} CU·h per 1k` : undefined} />
          </div>
        )}
        <div class="table-wrap">
          <table class="data" aria-label={`Replicas of ${svc.name}`}>
            <thead>
              <tr>
                <th scope="col">Slot</th>
                <th scope="col">Job</th>
                <th scope="col">State</th>
                <th scope="col">Center</th>
                <th scope="col">Chip</th>
                <th scope="col">Endpoint</th>
              </tr>
            </thead>
            <tbody>
              {svc.replicas.length ? (
                svc.replicas.map((r) => (
                  <tr key={r.job_id}>
                    <td>{r.slot}</td>
                    <td class="mono small">
                      <a href={href(`jobs/${encodeURIComponent(r.job_id)}`)}>{r.job_id}</a>
                    </td>
                    <td>
                      <StateBadge state={r.state} />
                    </td>
                    <td data-testid="replica-center">
                      {r.center ? <a href={href(`network?center=${encodeURIComponent(r.center)}`)}>{r.center}</a> : "—"}
                    </td>
                    <td>{r.chip ?? "—"}</td>
                    <td class="mono small">{r.endpoint ?? (r.ready ? "" : "starting")}</td>
                  </tr>
                ))
              ) : (
                <tr>
                  <td colSpan={6} class="muted">
                    No replicas: scaled to zero. The first request through a gateway starts one.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
        {m && (
          <div class="chart-grid">
            <SeriesChart times={times} title="Requests per second" unit="req/s" lines={[{ label: "requests", color: "#2f63a8", values: m.series.map((p) => p.requests_per_s) }]} />
            <SeriesChart
              times={times}
              title="Time to first byte"
              unit="ms"
              lines={[
                { label: "p50", color: "#1b7f5a", values: m.series.map((p) => p.p50_ttfb_ms) },
                { label: "p99", color: "#c4620a", values: m.series.map((p) => p.p99_ttfb_ms) },
              ]}
            />
            <SeriesChart times={times} title="Cost per hour" unit="¥/h" lines={[{ label: "replicas' cost", color: "#7a4fb0", values: m.series.map((p) => p.cost_cny_per_hour) }]} />
          </div>
        )}
      </div>
    </Section>
  );
}

export function ServicesPage() {
  const services = usePoll((signal) => api<ServiceView[]>("/api/v1/services", { signal }), "services");
  return (
    <div class="page">
      <div class="page-head">
        <h1>Services</h1>
        <LiveNote updatedAt={services.updatedAt} error={services.error} />
      </div>
      {services.loading ? (
        <Loading what="Loading services" />
      ) : services.error && !services.data ? (
        <ErrorBox error={services.error} title="Cannot list the services" />
      ) : !services.data?.length ? (
        <Empty title="No services yet">
          Deploy one with <code>cnet serve deploy FILE.yaml</code> (see docs/services.md), then send requests through{" "}
          <code>cnet gateway</code>.
        </Empty>
      ) : (
        services.data.map((s) => <ServiceCard key={s.name} svc={s} />)
      )}
    </div>
  );
}
