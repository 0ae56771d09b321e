// Jobs page: a filterable, live table of the caller's jobs (all tenants' for an admin).

import { api, qs } from "../api";
import { Empty, ErrorBox, LiveNote, Loading, StateBadge } from "../components";
import { cny, shortTime } from "../format";
import { href, navigate, usePoll } from "../hooks";
import { useSession } from "../session";
import { JOB_STATES, type JobView } from "../types";

const LIMIT = 500;

export function JobsPage({ query }: { query: URLSearchParams }) {
  const { me } = useSession();
  const state = query.get("state") ?? "";
  const text = query.get("q") ?? "";
  const jobs = usePoll(
    (signal) => api<JobView[]>(`/api/v1/jobs${qs({ state, limit: LIMIT })}`, { signal }),
    `jobs:${state}`,
  );
  const setFilter = (k: string, v: string) => {
    const next: Record<string, string | undefined> = { state, q: text };
    next[k] = v || undefined;
    navigate("jobs", next, true);
  };

  const needle = text.trim().toLowerCase();
  const rows = (jobs.data ?? [])
    .filter(
      (j) =>
        !needle ||
        [j.id, j.name, j.workload_class, j.center ?? "", j.chip ?? "", j.tenant].some((s) => s.toLowerCase().includes(needle)),
    )
    .sort((a, b) => (a.submitted_at < b.submitted_at ? 1 : a.submitted_at > b.submitted_at ? -1 : a.id < b.id ? 1 : -1));
  const admin = me.role === "admin";

  return (
    <div class="page">
      <div class="page-head">
        <h1>Jobs</h1>
        <LiveNote updatedAt={jobs.updatedAt} error={jobs.error} />
        <a class="button primary" href={href("quote")}>
          New job (quote)
        </a>
      </div>
      <form class="filters" role="search" aria-label="Filter jobs" onSubmit={(e) => e.preventDefault()}>
        <div class="field">
          <label for="f-state">State</label>
          <select id="f-state" value={state} onChange={(e) => setFilter("state", (e.target as HTMLSelectElement).value)}>
            <option value="">All states</option>
            {JOB_STATES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </div>
        <div class="field grow">
          <label for="f-text">Search</label>
          <input
            id="f-text"
            type="search"
            placeholder="id, name, class, center, chip…"
            value={text}
            onInput={(e) => setFilter("q", (e.target as HTMLInputElement).value)}
          />
        </div>
        <p class="muted count" aria-live="polite">
          {jobs.data ? `${rows.length} of ${jobs.data.length} job${jobs.data.length === 1 ? "" : "s"}` : ""}
        </p>
      </form>
      <ErrorBox error={jobs.error && !jobs.data ? jobs.error : null} title="Cannot load jobs" />
      {jobs.loading ? (
        <Loading what="Loading jobs" />
      ) : rows.length === 0 && jobs.data ? (
        <Empty title={jobs.data.length ? "No job matches these filters" : state ? `No ${state} jobs` : "No jobs yet"}>
          {jobs.data.length || state ? (
            <button type="button" class="link-button" onClick={() => navigate("jobs", {}, true)}>
              Clear the filters
            </button>
          ) : (
            <>
              Ask for a <a href={href("quote")}>quote</a> and submit one.
            </>
          )}
        </Empty>
      ) : (
        <div class="table-wrap">
          <table class="data" aria-label="Jobs">
            <thead>
              <tr>
                <th scope="col">Job</th>
                <th scope="col">State</th>
                {admin && <th scope="col">Tenant</th>}
                <th scope="col">Class</th>
                <th scope="col">Center</th>
                <th scope="col">Chips</th>
                <th scope="col">Submitted</th>
                <th scope="col" class="num">Estimate</th>
                <th scope="col" class="num">Cost</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((j) => (
                <tr key={j.id} data-job={j.id}>
                  <th scope="row">
                    <a href={href(`jobs/${encodeURIComponent(j.id)}`)}>{j.name}</a>
                    <div class="muted mono small">{j.id}</div>
                  </th>
                  <td>
                    <StateBadge state={j.state} />
                    {j.attempts > 1 && <span class="muted small"> attempt {j.attempts}</span>}
                  </td>
                  {admin && <td>{j.tenant}</td>}
                  <td>{j.workload_class}</td>
                  <td>{j.center ?? <span class="muted">—</span>}</td>
                  <td class="nowrap">{j.chip ? `${j.chip} × ${j.chips}` : <span class="muted">—</span>}</td>
                  <td class="nowrap">{shortTime(j.submitted_at)}</td>
                  <td class="num">{cny(j.estimated_cny)}</td>
                  <td class="num">{cny(j.cost_cny)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
