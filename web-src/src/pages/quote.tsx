// Quote page: paste or upload a job spec (YAML or JSON), see the options, submit the chosen one.
// A SkyPilot task or a Slurm batch script is read too: the server converts it
// (POST /api/v1/jobfiles/convert, the converter `cnet spec show` uses) and the page
// lists what it could not map.

import { load as loadYaml, YAMLException } from "js-yaml";
import { useEffect, useRef, useState } from "preact/hooks";

import { api, ApiError, newKey, submitRequestFields } from "../api";
import { Empty, ErrorBox, Section } from "../components";
import { cny, dateTime, duration, fmtNum } from "../format";
import { navigate } from "../hooks";
import type { JobSpec, JobView, QuoteOption, QuoteView } from "../types";

export const EXAMPLE_SPEC = `# A job file: the same YAML that \`cnet quote\` and \`cnet submit\` read.
name: resnet-finetune
class: cv-train
command: for i in 1 2 3 4 5 6 7 8 9 10; do echo "step $i of 10"; sleep 0.3; done
chips: {count: 2}
work: {cu_hours: 0.5}
deadline: 6h
`;

/** Parse a job file: JSON if it looks like JSON, else YAML. Errors name the line. */
export function parseSpec(text: string): JobSpec {
  const t = text.trim();
  if (!t) throw new ApiError(0, { error: "the job spec is empty", field: "spec", hint: "paste a job file or press “Load example”" });
  let doc: unknown;
  if (t.startsWith("{")) {
    try {
      doc = JSON.parse(t);
    } catch (exc) {
      throw new ApiError(0, { error: `not valid JSON: ${(exc as Error).message}`, field: "spec", hint: "fix the JSON, or write YAML instead" });
    }
  } else {
    try {
      doc = loadYaml(t);
    } catch (exc) {
      const e = exc as YAMLException;
      const where = e.mark ? ` at line ${e.mark.line + 1}, column ${e.mark.column + 1}` : "";
      throw new ApiError(0, { error: `not valid YAML${where}: ${e.reason ?? e.message}`, field: "spec", hint: "check indentation and quoting on that line" });
    }
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) {
    throw new ApiError(0, { error: "a job spec must be a mapping (name:, class:, command:, work: …)", field: "spec" });
  }
  // The spec may be wrapped as in a SubmitRequest ({spec: {...}}).
  const d = doc as Record<string, unknown>;
  const spec = d.spec && typeof d.spec === "object" && !("command" in d) ? d.spec : d;
  // YAML turns unquoted ISO times into Date objects; the API wants strings.
  return JSON.parse(JSON.stringify(spec)) as JobSpec;
}

/** What the server made of a SkyPilot task or a Slurm script (POST /api/v1/jobfiles/convert). */
export interface JobFileView {
  format: "computenet" | "skypilot" | "slurm";
  spec: JobSpec;
  unmapped: { field: string; why: string }[];
  notes: string[];
}

/** True unless `text` is plainly ComputeNet's own job file; the server tells the format. */
export function needsConversion(text: string): boolean {
  if (/^#SBATCH/m.test(text)) return true;
  let doc: unknown;
  try {
    doc = text.trim().startsWith("{") ? JSON.parse(text) : loadYaml(text);
  } catch {
    return false; // parseSpec reports the syntax error with its line
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) return false;
  const keys = Object.keys(doc);
  return !["class", "command", "work", "spec"].some((k) => keys.includes(k));
}

/** The spec of any job file: ours parsed here, a SkyPilot task or Slurm script by the server. */
async function readJobFile(text: string): Promise<{ spec: JobSpec; converted: JobFileView | null }> {
  if (!text.trim() || !needsConversion(text)) return { spec: parseSpec(text), converted: null };
  const view = await api<JobFileView>("/api/v1/jobfiles/convert", { body: { text } });
  // Leave out the fields the server filled with null: the spec as a user would write it.
  const spec = JSON.parse(JSON.stringify(view.spec, (_k, v) => (v === null ? undefined : v))) as JobSpec;
  return { spec, converted: view };
}

function optionKey(o: QuoteOption): string {
  return `${o.center}|${o.chip}|${o.count}|${o.planned_start}`;
}

export function QuotePage() {
  const [text, setText] = useState(EXAMPLE_SPEC);
  const [quote, setQuote] = useState<{ view: QuoteView; spec: JobSpec; key: string } | null>(null);
  const [chosen, setChosen] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [submitError, setSubmitError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState<"quote" | "submit" | null>(null);
  const [canPin, setCanPin] = useState<boolean | null>(null);
  const [converted, setConverted] = useState<JobFileView | null>(null);
  useEffect(() => {
    void submitRequestFields().then((f) => setCanPin(f.has("pin_center")));
  }, []);
  const resultRef = useRef<HTMLDivElement>(null);

  const getQuote = async (e?: Event) => {
    e?.preventDefault();
    setError(null);
    setSubmitError(null);
    let spec: JobSpec;
    setBusy("quote");
    try {
      const read = await readJobFile(text);
      spec = read.spec;
      setConverted(read.converted);
    } catch (exc) {
      setQuote(null);
      setConverted(null);
      setError(exc as ApiError);
      setBusy(null);
      return;
    }
    try {
      const view = await api<QuoteView>("/api/v1/quote", { body: spec });
      setQuote({ view, spec, key: newKey("quote") });
      const best = view.options.find((o) => o.feasible && o.cheapest) ?? view.options.find((o) => o.feasible);
      setChosen(best ? optionKey(best) : null);
      window.setTimeout(() => resultRef.current?.focus(), 0);
    } catch (exc) {
      setQuote(null);
      setError(exc as ApiError);
    } finally {
      setBusy(null);
    }
  };

  const upload = async (e: Event) => {
    const input = e.target as HTMLInputElement;
    const file = input.files?.[0];
    if (!file) return;
    if (file.size > 1_000_000) {
      setError(new ApiError(0, { error: `${file.name} is ${Math.round(file.size / 1024)} kB; a job file is at most 1 MB`, field: "file" }));
      return;
    }
    setText(await file.text());
    setQuote(null);
    setConverted(null);
    setError(null);
    input.value = "";
  };

  const submit = async () => {
    if (!quote || !chosen) return;
    const opt = quote.view.options.find((o) => optionKey(o) === chosen);
    if (!opt) return;
    setBusy("submit");
    setSubmitError(null);
    try {
      // Pin the chosen chip type and count inside the spec itself (valid today), and the
      // center too where the server accepts it (proposed SubmitRequest.pin_center).
      const spec: JobSpec = { ...quote.spec, chips: { ...(quote.spec.chips ?? {}), types: [opt.chip], count: opt.count } };
      delete spec.chips!.stack;
      const body: Record<string, unknown> = { spec, idempotency_key: `${quote.key}-${opt.center}-${opt.chip}-${opt.count}` };
      if (canPin) body.pin_center = opt.center;
      const job = await api<JobView>("/api/v1/jobs", { body });
      navigate(`jobs/${encodeURIComponent(job.id)}`);
    } catch (exc) {
      setSubmitError(exc as ApiError);
    } finally {
      setBusy(null);
    }
  };

  const options = quote?.view.options ?? [];
  const chosenOpt = options.find((o) => optionKey(o) === chosen) ?? null;
  const feasible = options.filter((o) => o.feasible);
  // With compute vouchers: the price after them next to the price (docs/user-guide.md).
  const subsidised = options.some((o) => Number(o.subsidy_cny ?? 0) > 0);
  const infeasible = options.filter((o) => !o.feasible);

  return (
    <div class="page">
      <div class="page-head">
        <h1>Quote</h1>
      </div>
      <div class="quote-layout">
        <Section title="Job spec" id="spec">
          <form onSubmit={getQuote}>
            <label for="spec-text">Paste a job file (YAML or JSON) — or a SkyPilot task, or a Slurm #SBATCH script</label>
            <textarea
              id="spec-text"
              class="code"
              rows={14}
              spellcheck={false}
              value={text}
              onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
              onKeyDown={(e) => {
                if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) void getQuote(e);
              }}
              aria-describedby="spec-help"
            />
            <p id="spec-help" class="muted">
              Fields: <code>name</code>, <code>class</code>, <code>command</code>, <code>chips</code>, <code>work</code>,
              <code> inputs</code>, <code>deadline</code>, <code>budget_cny</code>. Ctrl+Enter asks for a quote.
            </p>
            <div class="row">
              <button type="submit" class="primary" disabled={busy !== null}>
                {busy === "quote" ? "Quoting…" : "Get quote"}
              </button>
              <label class="button secondary file">
                Upload file…
                <input type="file" accept=".yaml,.yml,.json,.sh,.sbatch,.slurm,application/json,text/yaml,text/x-shellscript" onChange={upload} />
              </label>
              <button type="button" class="secondary" onClick={() => (setText(EXAMPLE_SPEC), setQuote(null), setError(null), setConverted(null))}>
                Load example
              </button>
            </div>
          </form>
          <ErrorBox error={error} title="Cannot quote this job" />
          {converted && (
            <div class="converted" data-testid="converted">
              <p>
                Read as a <strong>{converted.format === "slurm" ? "Slurm batch script" : "SkyPilot task"}</strong>:{" "}
                {converted.spec.chips?.count ?? 1} × {(converted.spec.chips?.types ?? []).join(" or ") || converted.spec.chips?.stack || "any chip"},
                class {converted.spec.class}.
              </p>
              {converted.unmapped.length > 0 && (
                <details open>
                  <summary>Not mapped ({converted.unmapped.length})</summary>
                  <ul class="reasons">
                    {converted.unmapped.map((u, i) => (
                      <li key={i}>
                        <code>{u.field}</code>: {u.why}
                      </li>
                    ))}
                  </ul>
                </details>
              )}
              {converted.notes.length > 0 && (
                <ul class="reasons muted small">
                  {converted.notes.map((n, i) => (
                    <li key={i}>{n}</li>
                  ))}
                </ul>
              )}
            </div>
          )}
        </Section>
        <div ref={resultRef} tabIndex={-1} class="quote-result" aria-live="polite">
          {quote && (
            <Section title={`Options (${feasible.length} feasible)`} id="options">
              <p class="muted">Quoted at {dateTime(quote.view.now)} network time. Nothing is submitted until you press Submit.</p>
              {feasible.length === 0 ? (
                <Empty title="No center can run this job">
                  <ul class="reasons">
                    {[...quote.view.infeasible_reasons, ...infeasible.flatMap((o) => o.reasons.map((r) => `${o.center}: ${r}`))].map((r, i) => (
                      <li key={i}>{r}</li>
                    ))}
                  </ul>
                </Empty>
              ) : (
                <fieldset class="options">
                  <legend class="sr-only">Choose where to run</legend>
                  <div class="table-wrap">
                    <table class="data" aria-label="Quote options">
                      <thead>
                        <tr>
                          <th scope="col">Choose</th>
                          <th scope="col">Center</th>
                          <th scope="col">Chips</th>
                          <th scope="col">Start</th>
                          <th scope="col">Finish</th>
                          <th scope="col" class="num">Energy</th>
                          <th scope="col" class="num">Service</th>
                          <th scope="col" class="num">Transfer</th>
                          <th scope="col" class="num">Total</th>
                          {subsidised && (
                            <th scope="col" class="num">
                              You pay
                            </th>
                          )}
                          <th scope="col" class="num">kWh</th>
                          <th scope="col" class="num">CO₂ kg</th>
                        </tr>
                      </thead>
                      <tbody>
                        {feasible.map((o) => {
                          const k = optionKey(o);
                          const id = `opt-${k.replace(/[^a-zA-Z0-9]/g, "-")}`;
                          return (
                            <tr key={k} class={chosen === k ? "selected" : ""} data-option={o.center}>
                              <td>
                                <input type="radio" name="option" id={id} checked={chosen === k} onChange={() => setChosen(k)} />
                              </td>
                              <th scope="row">
                                <label for={id}>{o.center}</label>
                                {o.cheapest && <span class="badge tag-cheap">cheapest</span>}
                                {o.fastest && <span class="badge tag-fast">fastest</span>}
                              </th>
                              <td>
                                {o.chip} × {o.count}
                              </td>
                              <td>{dateTime(o.planned_start)}</td>
                              <td>
                                {dateTime(o.finish)}
                                <div class="muted small">
                                  run {duration(o.run_s)}
                                  {o.transfer_s > 0 ? `, data ${duration(o.transfer_s)}` : ""}
                                </div>
                              </td>
                              <td class="num">{cny(o.energy_cny)}</td>
                              <td class="num">{cny(o.service_cny)}</td>
                              <td class="num">{cny(o.transfer_cny)}</td>
                              <td class="num strong">{cny(o.total_cny)}</td>
                              {subsidised && (
                                <td class="num strong" data-testid="quote-paid">
                                  {cny(o.paid_cny ?? o.total_cny)}
                                  <div class="muted small">vouchers −{cny(o.subsidy_cny ?? "0")}</div>
                                </td>
                              )}
                              <td class="num">{fmtNum(o.kwh, 1)}</td>
                              <td class="num">{fmtNum(o.co2_kg, 1)}</td>
                            </tr>
                          );
                        })}
                      </tbody>
                    </table>
                  </div>
                  <div class="row">
                    <button type="button" class="primary" onClick={submit} disabled={!chosen || busy !== null}>
                      {busy === "submit" ? "Submitting…" : `Submit on ${chosenOpt ? `${chosenOpt.center} (${chosenOpt.chip} × ${chosenOpt.count})` : "…"}`}
                    </button>
                  </div>
                  <p class="muted small">
                    {canPin
                      ? "The job is pinned to the chosen center and chips; the scheduler may still move its start within your deadline to a cheaper hour."
                      : `This server does not pin a center yet: the job asks for the chosen chip type and count${chosenOpt ? ` (${chosenOpt.chip} × ${chosenOpt.count})` : ""}, and the scheduler places it where that chip is cheapest within your deadline.`}
                  </p>
                  <ErrorBox error={submitError} title="Cannot submit" />
                </fieldset>
              )}
              {feasible.length > 0 && (infeasible.length > 0 || quote.view.infeasible_reasons.length > 0) && (
                <details>
                  <summary>Why not elsewhere ({infeasible.length + quote.view.infeasible_reasons.length})</summary>
                  <ul class="reasons">
                    {quote.view.infeasible_reasons.map((r, i) => (
                      <li key={`r${i}`}>{r}</li>
                    ))}
                    {infeasible.map((o) => (
                      <li key={optionKey(o)}>
                        <strong>{o.center}</strong> ({o.chip}): {o.reasons.join("; ") || "infeasible"}
                      </li>
                    ))}
                  </ul>
                </details>
              )}
            </Section>
          )}
        </div>
      </div>
    </div>
  );
}
