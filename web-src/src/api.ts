// The one place that talks HTTP: Bearer token from sessionStorage, errors as ApiError.

import type { ErrorBody } from "./types";

const TOKEN_KEY = "computenet.token";

/** An API failure as a person should read it: what, on which field, how to fix it. */
export class ApiError extends Error {
  readonly status: number;
  readonly field: string | null;
  readonly hint: string | null;

  constructor(status: number, body: ErrorBody) {
    super(body.error);
    this.name = "ApiError";
    this.status = status;
    this.field = body.field ?? null;
    this.hint = body.hint ?? null;
  }
}

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Private modes may refuse storage; the session then lasts until reload.
  }
}

/** Fired when the server answers 401, so the shell can ask to sign in again. */
export const UNAUTHORIZED_EVENT = "computenet:unauthorized";

function locToField(loc: unknown): string | null {
  if (!Array.isArray(loc)) return null;
  const parts = loc.filter((p) => p !== "body" && p !== "query" && p !== "path");
  let out = "";
  for (const p of parts) out += typeof p === "number" ? `[${p}]` : (out ? "." : "") + String(p);
  return out || null;
}

/** Turn any error body (ours, FastAPI's default, or none) into an ErrorBody. */
export function toErrorBody(status: number, statusText: string, payload: unknown): ErrorBody {
  if (payload && typeof payload === "object") {
    const p = payload as Record<string, unknown>;
    if (typeof p.error === "string") {
      return {
        error: p.error,
        field: typeof p.field === "string" ? p.field : null,
        hint: typeof p.hint === "string" ? p.hint : null,
      };
    }
    if (typeof p.detail === "string") return { error: p.detail };
    if (Array.isArray(p.detail) && p.detail.length) {
      const d = p.detail[0] as Record<string, unknown>;
      return {
        error: String(d.msg ?? "invalid request").replace(/^Value error, /, ""),
        field: locToField(d.loc),
      };
    }
  }
  if (status === 404) return { error: "not found", hint: "the server does not have this (yet)" };
  if (status >= 500)
    return { error: `the server failed (HTTP ${status} ${statusText})`, hint: "see the server's log" };
  return { error: `HTTP ${status} ${statusText}`.trim() };
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  /** Use this token instead of the stored one (sign-in checks a token before storing it). */
  token?: string;
  /** Answer with text instead of JSON. */
  text?: boolean;
  signal?: AbortSignal;
}

/** Call the API at `path` (e.g. "/api/v1/jobs"); resolve with the parsed body or throw ApiError. */
export async function api<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: opts.text ? "text/html,text/plain" : "application/json" };
  const token = opts.token ?? getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.body);
  }
  let res: Response;
  try {
    res = await fetch(path.replace(/^\//, ""), {
      method: opts.method ?? (body ? "POST" : "GET"),
      headers,
      body,
      signal: opts.signal,
      cache: "no-store",
    });
  } catch (exc) {
    if ((exc as Error).name === "AbortError") throw exc;
    throw new ApiError(0, {
      error: "cannot reach the ComputeNet server",
      hint: "check that `cnet server` (or `cnet up`) is still running, then retry",
    });
  }
  if (!res.ok) {
    let payload: unknown = null;
    try {
      payload = await res.json();
    } catch {
      payload = null;
    }
    const err = new ApiError(res.status, toErrorBody(res.status, res.statusText, payload));
    if (res.status === 401 && opts.token === undefined) {
      window.dispatchEvent(new CustomEvent(UNAUTHORIZED_EVENT, { detail: err.message }));
    }
    throw err;
  }
  if (opts.text) return (await res.text()) as T;
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/** Query string from the defined, non-empty values of `params`. */
export function qs(params: Record<string, string | number | null | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** A random idempotency key (works outside secure contexts too, unlike randomUUID). */
export function newKey(prefix = "web"): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return `${prefix}-${Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("")}`;
}

let openapiFields: Promise<Set<string>> | null = null;

/** Field names of SubmitRequest in the server's OpenAPI document (empty when unknown). */
export function submitRequestFields(): Promise<Set<string>> {
  openapiFields ??= fetch("openapi.json", { cache: "no-store" })
    .then((r) => (r.ok ? r.json() : null))
    .then((doc) => {
      const props = doc?.components?.schemas?.SubmitRequest?.properties;
      return new Set<string>(props ? Object.keys(props) : []);
    })
    .catch(() => new Set<string>());
  return openapiFields;
}
