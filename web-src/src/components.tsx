// Shared pieces: readable errors, state badges, stats, empty states.

import type { ComponentChildren } from "preact";

import { ApiError } from "./api";

/** An API error as three readable parts: what, which field, how to fix it. Never raw JSON. */
export function ErrorBox({ error, title }: { error: ApiError | Error | string | null | undefined; title?: string }) {
  if (!error) return null;
  const e = typeof error === "string" ? new ApiError(0, { error }) : error;
  const field = e instanceof ApiError ? e.field : null;
  const hint = e instanceof ApiError ? e.hint : null;
  return (
    <div class="error" role="alert">
      <strong>{title ?? "Something went wrong"}:</strong> <span class="error-msg">{e.message}</span>
      {field && (
        <div>
          Field: <code class="error-field">{field}</code>
        </div>
      )}
      {hint && <div class="error-hint">How to fix: {hint}</div>}
    </div>
  );
}

export function StateBadge({ state }: { state: string | null | undefined }) {
  if (!state) return null;
  return <span class={`badge state-${state.toLowerCase()}`}>{state}</span>;
}

export function Loading({ what = "Loading" }: { what?: string }) {
  return (
    <p class="muted" aria-live="polite">
      {what}…
    </p>
  );
}

export function Empty({ title, children }: { title: string; children?: ComponentChildren }) {
  return (
    <div class="empty">
      <p class="empty-title">{title}</p>
      {children && <div class="muted">{children}</div>}
    </div>
  );
}

export function Stat({ label, value, sub }: { label: string; value: ComponentChildren; sub?: ComponentChildren }) {
  return (
    <div class="stat">
      <div class="stat-label">{label}</div>
      <div class="stat-value">{value}</div>
      {sub && <div class="stat-sub">{sub}</div>}
    </div>
  );
}

/** A horizontal meter 0..1, with the value also given as text for screen readers. */
export function Meter({ frac, label, color }: { frac: number; label: string; color?: string }) {
  const pct = Math.round(Math.max(0, Math.min(1, frac)) * 100);
  return (
    <span class="meter" role="img" aria-label={label} title={label}>
      <span class="meter-fill" style={{ width: `${pct}%`, background: color }} />
    </span>
  );
}

export function Section({ title, children, actions, id }: { title: string; children: ComponentChildren; actions?: ComponentChildren; id?: string }) {
  return (
    <section class="card" aria-labelledby={id ? `${id}-h` : undefined}>
      <div class="card-head">
        <h2 id={id ? `${id}-h` : undefined}>{title}</h2>
        {actions && <div class="card-actions">{actions}</div>}
      </div>
      {children}
    </section>
  );
}

/** "updated 3 s ago" / the last error, shown beside live data. */
export function LiveNote({ updatedAt, error }: { updatedAt: number; error?: ApiError | null }) {
  if (error && updatedAt)
    return (
      <span class="live live-stale" role="status">
        not updating: {error.message}
      </span>
    );
  if (!updatedAt) return null;
  return (
    <span class="live" title={`last update ${new Date(updatedAt).toLocaleTimeString()}`}>
      <span class="dot" aria-hidden="true" /> live
    </span>
  );
}

/** The ComputeNet mark: three linked nodes. */
export function Logo() {
  return (
    <svg class="logo" viewBox="0 0 32 32" aria-hidden="true">
      <rect width="32" height="32" rx="7" fill="#e6a014" />
      <path d="M8 22L16 9l8 13M11 18h10" stroke="#0b2545" stroke-width="2.6" fill="none" stroke-linejoin="round" />
      <circle cx="16" cy="9" r="2.6" fill="#0b2545" />
      <circle cx="8" cy="22" r="2.6" fill="#0b2545" />
      <circle cx="24" cy="22" r="2.6" fill="#0b2545" />
    </svg>
  );
}
