// Job page: state, timeline, placement and reasons, cost breakdown, live logs.

import { Fragment } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";

import { api, ApiError, qs } from "../api";
import { KIND_COLORS, PhaseBar, StackedBars } from "../charts";
import { Empty, ErrorBox, LiveNote, Loading, Section, Stat, StateBadge } from "../components";
import { between, cny, dateTime, dec, duration, fmtNum } from "../format";
import { href, POLL_MS, usePoll } from "../hooks";
import { type JobDetail, type LogChunk, type PathHop, TERMINAL } from "../types";

/** Keep at most this much log text in the page (the start is dropped). */
const MAX_LOG_CHARS = 400_000;

export function JobPage({ id }: { id: string }) {
  const [finished, setFinished] = useState(false);
  const job = usePoll(
    (signal) => api<JobDetail>(`/api/v1/jobs/${encodeURIComponent(id)}`, { signal }),
    `job:${id}`,
    finished ? 10 * POLL_MS : POLL_MS,
  );
  const [cancelError, setCancelError] = useState<ApiError | null>(null);
  const [cancelling, setCancelling] = useState(false);
  const j = job.data;
  useEffect(() => setFinished(Boolean(j && TERMINAL.has(j.state))), [j?.state]);

  if (job.error && !j) {
    return (
      <div class="page">
        <p>
          <a href={href("jobs")}>← Jobs</a>
        </p>
        <ErrorBox
          error={job.error.status === 404 ? new ApiError(404, { error: `there is no job ${id} that you can see`, hint: "jobs of other tenants are hidden; check the id" }) : job.error}
          title="Cannot show this job"
        />
      </div>
    );
  }
  if (!j) return <Loading what="Loading the job" />;

  const cancel = async () => {
    if (!window.confirm(`Cancel job ${j.name} (${j.id})?`)) return;
    setCancelling(true);
    setCancelError(null);
    try {
      await api(`/api/v1/jobs/${encodeURIComponent(j.id)}/cancel`, { method: "POST" });
      job.refresh();
    } catch (exc) {
      setCancelError(exc as ApiError);
    } finally {
      setCancelling(false);
    }
  };

  const p = j.placement;
  const wait = j.wait_s ?? between(j.submitted_at, j.started_at);
  const phases = [
    { label: `waiting ${duration(wait)}`, seconds: wait ?? 0, color: "#5d6875" },
    { label: `moving data ${duration(j.transfer_s)}`, seconds: j.transfer_s ?? 0, color: KIND_COLORS.transfer },
    { label: `running ${duration(j.run_s)}`, seconds: j.run_s ?? 0, color: "#1a7f4b" },
  ];
  const why = p?.reasons ?? [];
  // The job's own reasons say why it waits, or how it ended; show them apart from the placement's.
  const status = j.reasons.filter((r) => !why.includes(r));
  const usageEntries = Object.entries(j.usage ?? {});
  const actual = {
    energy: dec(j.usage?.energy_cny as string | undefined),
    service: dec(j.usage?.service_cny as string | undefined),
    transfer: dec(j.usage?.transfer_cny as string | undefined),
  };
  const hasActualSplit = actual.energy + actual.service + actual.transfer > 0;

  return (
    <div class="page">
      <p>
        <a href={href("jobs")}>← Jobs</a>
      </p>
      <div class="page-head">
        <h1>
          {j.name} <StateBadge state={j.state} />
        </h1>
        <LiveNote updatedAt={job.updatedAt} error={job.error} />
        {!TERMINAL.has(j.state) && (
          <button type="button" class="danger" onClick={cancel} disabled={cancelling}>
            {cancelling ? "Cancelling…" : "Cancel job"}
          </button>
        )}
      </div>
      <ErrorBox error={cancelError} title="Cannot cancel" />
      <p class="muted mono" data-testid="job-id">
        {j.id} · tenant {j.tenant} · class {j.workload_class}
        {j.attempts > 1 ? ` · attempt ${j.attempts}` : ""}
      </p>
      <div class="stats">
        <Stat label="Center" value={j.center ?? "—"} sub={j.chip ? `${j.chip} × ${j.chips}` : undefined} />
        <Stat label="Submitted" value={dateTime(j.submitted_at)} sub={j.deadline ? `deadline ${dateTime(j.deadline)}` : "no deadline"} />
        <Stat label="Finished" value={dateTime(j.finished_at)} sub={j.exit_code !== null && j.exit_code !== undefined ? `exit code ${j.exit_code}` : undefined} />
        <Stat label="Estimate" value={cny(j.estimated_cny)} />
        <Stat label="Cost" value={cny(j.cost_cny)} sub={TERMINAL.has(j.state) ? "metered" : "so far / when done"} />
      </div>
      {j.path && j.path.length > 1 && <JobPath hops={j.path} />}
      <div class="grid2">
        <Section title="Timeline" id="timeline">
          <PhaseBar phases={phases} title="Time spent" />
          {j.events.length === 0 ? (
            <Empty title="No events yet" />
          ) : (
            <ol class="timeline">
              {j.events.map((e, i) => (
                <li key={i}>
                  <time dateTime={e.at}>{dateTime(e.at, true)}</time>
                  {e.state && <StateBadge state={e.state} />}
                  <span>{e.message}</span>
                  {e.center && !e.message.includes(e.center) && <span class="muted"> @ {e.center}</span>}
                </li>
              ))}
            </ol>
          )}
        </Section>
        <Section title="Placement and reasons" id="placement">
          {p ? (
            <dl class="kv">
              <dt>Where</dt>
              <dd>
                {p.center}, {p.chip} × {p.count}
              </dd>
              <dt>Planned start</dt>
              <dd>{dateTime(p.planned_start)}</dd>
              <dt>Estimated finish</dt>
              <dd>{dateTime(p.finish)}</dd>
              <dt>Data transfer</dt>
              <dd>
                {duration(p.transfer_s)}
                {p.source_replicas && Object.keys(p.source_replicas).length
                  ? ` from ${Object.entries(p.source_replicas).map(([d, c]) => `${d} @ ${c}`).join(", ")}`
                  : ""}
              </dd>
              <dt>Run time</dt>
              <dd>{duration(p.run_s)}</dd>
              <dt>Energy</dt>
              <dd>
                {fmtNum(p.kwh, 2)} kWh, {fmtNum(p.co2_kg, 2)} kg CO₂, {fmtNum(p.cu_hours, 2)} CU·h
              </dd>
            </dl>
          ) : (
            <p class="muted">Not placed yet.</p>
          )}
          {why.length > 0 && (
            <>
              <h3>Why here</h3>
              <ul class="reasons" data-testid="placement-reasons">
                {why.map((r, i) => (
                  <li key={i}>{r}</li>
                ))}
              </ul>
            </>
          )}
          {status.length > 0 && (
            <>
              <h3>{j.state === "PENDING" ? "Why it waits" : "Status"}</h3>
              <ul class="reasons" data-testid="job-reasons">
                {status.map((r, i) => (
                  <li key={i}>{r}</li>
                ))}
              </ul>
            </>
          )}
        </Section>
      </div>
      <Section title="Cost breakdown" id="cost">
        {p || hasActualSplit ? (
          <StackedBars
            title="Cost by kind"
            rows={[
              ...(p
                ? [{ label: "estimate", parts: { energy: dec(p.cost.energy_cny), service: dec(p.cost.service_cny), transfer: dec(p.cost.transfer_cny) }, total: j.estimated_cny ?? undefined }]
                : []),
              ...(hasActualSplit ? [{ label: "metered", parts: actual, total: j.cost_cny ?? undefined }] : []),
            ]}
          />
        ) : (
          <p class="muted">No estimate yet: the job is not placed.</p>
        )}
        {usageEntries.length > 0 && (
          <>
            <h3>Metered usage</h3>
            <dl class="kv">
              {usageEntries.map(([k, v]) => (
                <Fragment key={k}>
                  <dt>{k.replace(/_/g, " ")}</dt>
                  <dd>{k.endsWith("_cny") ? cny(v) : typeof v === "number" ? fmtNum(v, 3) : v}</dd>
                </Fragment>
              ))}
            </dl>
          </>
        )}
      </Section>
      <Logs id={j.id} finished={TERMINAL.has(j.state)} />
      <Section title="Spec" id="spec">
        <details>
          <summary>The job as submitted</summary>
          <pre class="code">{JSON.stringify(j.spec, null, 2)}</pre>
        </details>
      </Section>
    </div>
  );
}

/**
 * Where a delegated job runs, level by level: this plane's placement first, then each
 * region below it as the region reported it (JobDetail.path), each with its state,
 * its reason and its place in that level's queue.
 */
function JobPath({ hops }: { hops: PathHop[] }) {
  const leaf = hops[hops.length - 1];
  const summary = hops.map((h) => `${h.network}: ${h.center ?? "not placed yet"}`).join(", then ");
  return (
    <Section title="Path through the levels" id="path">
      <p class="muted small">
        {hops.length} levels: {summary}.{leaf.center ? ` It runs at ${leaf.center}.` : ""}
      </p>
      <ol class="path" data-testid="job-path" aria-label="Path through the levels">
        {hops.map((h, i) => (
          <li key={i} class="hop" data-network={h.network} data-center={h.center ?? ""}>
            <div class="hop-level">
              {i === 0 ? "this plane" : `level ${i + 1}`} · <strong>{h.network}</strong>
            </div>
            <div class="hop-where">
              <strong>{h.center ?? "not placed yet"}</strong>
              {h.chip ? (
                <span class="muted">
                  {" "}
                  {h.chip} × {h.count ?? "?"}
                </span>
              ) : null}
            </div>
            <div>
              <StateBadge state={h.state} />
              {h.position ? <span class="muted small"> #{h.position} in its queue</span> : null}
            </div>
            {h.reason && <p class="hop-reason small">{h.reason}</p>}
            {h.job_id && <div class="mono small muted">{h.job_id}</div>}
          </li>
        ))}
      </ol>
    </Section>
  );
}

/** Logs, fetched from the last offset every poll until the server says they are complete. */
function Logs({ id, finished }: { id: string; finished: boolean }) {
  const [text, setText] = useState("");
  const [complete, setComplete] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const [follow, setFollow] = useState(true);
  const offset = useRef(0);
  const pre = useRef<HTMLPreElement>(null);
  const finishedRef = useRef(finished);
  finishedRef.current = finished;

  useEffect(() => {
    let alive = true;
    let timer: number | undefined;
    offset.current = 0;
    setText("");
    setComplete(false);
    const tick = async () => {
      let done = false;
      try {
        // Read everything there is now, in as many chunks as the server cuts it into.
        for (let i = 0; i < 20 && alive; i++) {
          const c = await api<LogChunk>(`/api/v1/jobs/${encodeURIComponent(id)}/logs${qs({ offset: offset.current })}`);
          if (!alive) return;
          if (c.text) setText((t) => (t + c.text).slice(-MAX_LOG_CHARS));
          const moved = c.next_offset !== offset.current;
          offset.current = c.next_offset;
          done = c.complete;
          if (!moved || done) break;
        }
        setError(null);
        setComplete(done);
      } catch (exc) {
        if (alive) setError(exc as ApiError);
      }
      if (alive && !done) timer = window.setTimeout(tick, POLL_MS);
    };
    void tick();
    return () => {
      alive = false;
      window.clearTimeout(timer);
    };
  }, [id]);

  useEffect(() => {
    if (follow && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [text, follow]);

  return (
    <Section
      title="Logs"
      id="logs"
      actions={
        <>
          <span class={complete ? "muted" : "live"}>
            {complete ? "complete" : finished ? "collecting…" : (
              <>
                <span class="dot" aria-hidden="true" /> live
              </>
            )}
          </span>
          <label class="inline">
            <input type="checkbox" checked={follow} onChange={(e) => setFollow((e.target as HTMLInputElement).checked)} /> follow
          </label>
        </>
      }
    >
      <ErrorBox error={error} title="Cannot read the logs" />
      <pre class="logs" ref={pre} tabIndex={0} aria-label="Job logs" data-testid="job-logs">
        {text || (complete ? "(no output)" : "(waiting for output…)")}
      </pre>
    </Section>
  );
}
