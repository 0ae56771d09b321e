// Small hooks: polling that keeps the last good answer, and hash routing.

import { useCallback, useEffect, useRef, useState } from "preact/hooks";

import { ApiError } from "./api";

/** How often live pages refresh (the issue asks for at most 2 s). */
export const POLL_MS = 2000;

export interface Polled<T> {
  data: T | undefined;
  error: ApiError | null;
  loading: boolean;
  /** Epoch ms of the last successful answer. */
  updatedAt: number;
  refresh: () => void;
}

/**
 * Call `fetcher` now and every `intervalMs` (0 = once) while the page is visible.
 * A failed poll keeps the last data and reports the error; the next success clears it.
 * Changing `key` restarts polling from scratch (new data, no stale rows from the old key).
 */
export function usePoll<T>(fetcher: (signal: AbortSignal) => Promise<T>, key: string, intervalMs = POLL_MS): Polled<T> {
  const [state, setState] = useState<{ key: string; data?: T; error: ApiError | null; updatedAt: number }>({
    key,
    error: null,
    updatedAt: 0,
  });
  const [tick, setTick] = useState(0);
  const fetchRef = useRef(fetcher);
  fetchRef.current = fetcher;

  useEffect(() => {
    let alive = true;
    let timer: number | undefined;
    let ctrl: AbortController | null = null;
    const run = async () => {
      if (!alive) return;
      if (document.hidden && intervalMs) {
        timer = window.setTimeout(run, intervalMs);
        return;
      }
      ctrl = new AbortController();
      try {
        const data = await fetchRef.current(ctrl.signal);
        if (alive) setState({ key, data, error: null, updatedAt: Date.now() });
      } catch (exc) {
        if (!alive || (exc as Error).name === "AbortError") return;
        const error =
          exc instanceof ApiError ? exc : new ApiError(0, { error: (exc as Error).message || String(exc) });
        setState((s) => (s.key === key ? { ...s, error } : { key, error, updatedAt: 0 }));
      }
      if (alive && intervalMs) timer = window.setTimeout(run, intervalMs);
    };
    void run();
    const onVisible = () => {
      if (!document.hidden && alive) {
        window.clearTimeout(timer);
        void run();
      }
    };
    document.addEventListener("visibilitychange", onVisible);
    return () => {
      alive = false;
      window.clearTimeout(timer);
      ctrl?.abort();
      document.removeEventListener("visibilitychange", onVisible);
    };
  }, [key, intervalMs, tick]);

  const refresh = useCallback(() => setTick((t) => t + 1), []);
  const fresh = state.key === key;
  return {
    data: fresh ? state.data : undefined,
    error: fresh ? state.error : null,
    loading: !fresh || (state.data === undefined && state.error === null),
    updatedAt: fresh ? state.updatedAt : 0,
    refresh,
  };
}

export interface Route {
  /** Path segments after "#/", e.g. ["jobs", "j-123"]. */
  parts: string[];
  query: URLSearchParams;
}

function parseHash(): Route {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, q] = raw.split("?", 2);
  return {
    parts: (path ?? "").split("/").filter(Boolean).map(decodeURIComponent),
    query: new URLSearchParams(q ?? ""),
  };
}

/** The current hash route; re-renders on navigation. */
export function useRoute(): Route {
  const [route, setRoute] = useState(parseHash);
  useEffect(() => {
    const on = () => setRoute(parseHash());
    window.addEventListener("hashchange", on);
    // Effects run after paint: a hash set between the first render and now fired
    // its event before anyone listened, so read it again.
    on();
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}

/** Go to `#/path`, optionally with query parameters (replacing history keeps Back meaningful for filters). */
export function navigate(path: string, query?: Record<string, string | undefined>, replace = false): void {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v) q.set(k, v);
  const s = q.toString();
  const hash = `#/${path.replace(/^\//, "")}${s ? `?${s}` : ""}`;
  if (replace) history.replaceState(null, "", hash);
  if (replace) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else window.location.hash = hash;
}

export function href(path: string): string {
  return `#/${path.replace(/^\//, "")}`;
}
