// Simulations: the reports `cnet sim compare --out DIR` wrote, listed and openable.
// The server's routes for them are proposed (GET /api/v1/sim/reports[/{id}[/html]]);
// until they exist this page says so instead of failing.

import { useEffect, useState } from "preact/hooks";

import { api, ApiError } from "../api";
import { Empty, ErrorBox, Loading, Section } from "../components";
import { cny, dateTime, fmtNum } from "../format";
import { href, usePoll } from "../hooks";
import type { SimReport, SimReportSummary } from "../types";

function NotYet() {
  return (
    <Empty title="No simulation reports">
      Reports appear here after <code>cnet sim compare --network china --workload … --policies all --out DIR</code> has
      run and the server publishes them. This server does not list reports yet.
    </Empty>
  );
}

export function SimsPage() {
  const reports = usePoll((signal) => api<SimReportSummary[]>("/api/v1/sim/reports", { signal }), "sims", 10_000);
  const missing = reports.error && (reports.error.status === 404 || reports.error.status === 405);
  return (
    <div class="page">
      <div class="page-head">
        <h1>Simulations</h1>
        <button type="button" class="secondary" onClick={reports.refresh}>
          Refresh
        </button>
      </div>
      {reports.loading ? (
        <Loading what="Loading reports" />
      ) : missing ? (
        <NotYet />
      ) : reports.error && !reports.data ? (
        <ErrorBox error={reports.error} title="Cannot list the reports" />
      ) : !reports.data?.length ? (
        <Empty title="No simulation reports yet">
          Run <code>cnet sim compare … --out DIR</code> to make one.
        </Empty>
      ) : (
        <div class="table-wrap">
          <table class="data" aria-label="Simulation reports">
            <thead>
              <tr>
                <th scope="col">Report</th>
                <th scope="col">Written</th>
                <th scope="col">Network</th>
                <th scope="col">Workload</th>
                <th scope="col">Policies</th>
                <th scope="col" class="num">LP bound</th>
              </tr>
            </thead>
            <tbody>
              {reports.data.map((r) => (
                <tr key={r.id}>
                  <th scope="row">
                    <a href={href(`sims/${encodeURIComponent(r.id)}`)}>{r.name || r.id}</a>
                  </th>
                  <td>{dateTime(r.created_at)}</td>
                  <td>{r.network ?? "—"}</td>
                  <td class="mono small">{r.workload ?? "—"}</td>
                  <td>{(r.policies ?? []).join(", ") || "—"}</td>
                  <td class="num">{cny(r.bound_cny)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return "—";
  if (typeof v === "number") return fmtNum(v, Math.abs(v) < 10 ? 3 : 1);
  if (typeof v === "string" && /^-?\d+(\.\d+)?$/.test(v)) return fmtNum(Number(v), 2);
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

export function SimReportPage({ id }: { id: string }) {
  const report = usePoll((signal) => api<SimReport>(`/api/v1/sim/reports/${encodeURIComponent(id)}`, { signal }), `sim:${id}`, 0);
  const [html, setHtml] = useState<string | null>(null);
  const [htmlError, setHtmlError] = useState<ApiError | null>(null);
  const r = report.data;

  useEffect(() => {
    setHtml(null);
    setHtmlError(null);
    if (!r?.html_url) return;
    // Fetched with the token, shown sandboxed (no scripts) so a report cannot act as the user.
    api<string>(r.html_url, { text: true }).then(setHtml, (e) => setHtmlError(e as ApiError));
  }, [r?.html_url]);

  const rows = r?.result?.policies ?? [];
  const cols = [...new Set(rows.flatMap((p) => Object.keys(p)))];
  return (
    <div class="page">
      <p>
        <a href={href("sims")}>← Simulations</a>
      </p>
      {report.loading ? (
        <Loading what="Loading the report" />
      ) : report.error ? (
        report.error.status === 404 ? (
          <NotYet />
        ) : (
          <ErrorBox error={report.error} title="Cannot open the report" />
        )
      ) : r ? (
        <>
          <div class="page-head">
            <h1>{r.name || r.id}</h1>
          </div>
          <p class="muted">
            {[r.network && `network ${r.network}`, r.workload && `workload ${r.workload}`, r.created_at && `written ${dateTime(r.created_at)}`]
              .filter(Boolean)
              .join(" · ")}
          </p>
          {rows.length > 0 && (
            <Section title="Policies compared" id="policies">
              <div class="table-wrap">
                <table class="data" aria-label="Policies">
                  <thead>
                    <tr>
                      {cols.map((c) => (
                        <th scope="col" key={c}>
                          {c.replace(/_/g, " ")}
                        </th>
                      ))}
                    </tr>
                  </thead>
                  <tbody>
                    {rows.map((p, i) => (
                      <tr key={i}>
                        {cols.map((c) => (
                          <td key={c} class={typeof p[c] === "number" ? "num" : ""}>
                            {cell(p[c])}
                          </td>
                        ))}
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
              {r.result?.bound_cny !== undefined && <p>LP lower bound: {cny(r.result.bound_cny as string)}</p>}
            </Section>
          )}
          <Section title="Report" id="report">
            <ErrorBox error={htmlError} title="Cannot load the HTML report" />
            {html ? (
              <iframe class="report" title={`Report ${r.name || r.id}`} sandbox="" srcdoc={html} />
            ) : r.html_url && !htmlError ? (
              <Loading what="Loading the HTML report" />
            ) : (
              !r.html_url && <p class="muted">This report has no HTML page.</p>
            )}
          </Section>
        </>
      ) : null}
    </div>
  );
}
