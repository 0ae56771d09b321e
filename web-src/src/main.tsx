// The dashboard shell: sign-in, navigation, the network clock, and the pages.

import "./style.css";

import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";

import { api, getToken, setToken, UNAUTHORIZED_EVENT } from "./api";
import { Logo } from "./components";
import { dateTime } from "./format";
import { href, type Polled, usePoll, useRoute } from "./hooks";
import { SessionContext } from "./session";
import { BillsPage } from "./pages/bills";
import { JobPage } from "./pages/job";
import { JobsPage } from "./pages/jobs";
import { NetworkPage } from "./pages/network";
import { QuotePage } from "./pages/quote";
import { ServicesPage } from "./pages/services";
import { SignIn } from "./pages/signin";
import { SimReportPage, SimsPage } from "./pages/sims";
import type { NetworkView, WhoAmI } from "./types";

/** The network clock, advanced locally between polls by time_scale. */
function useNetworkNow(net: Polled<NetworkView>): Date | null {
  const [, force] = useState(0);
  useEffect(() => {
    const t = window.setInterval(() => force((x) => x + 1), 1000);
    return () => window.clearInterval(t);
  }, []);
  if (!net.data) return null;
  const base = new Date(net.data.now).getTime();
  if (Number.isNaN(base)) return null;
  const scale = net.data.time_scale || 1;
  return new Date(base + (Date.now() - net.updatedAt) * scale);
}

const PAGES = [
  { path: "network", label: "Network" },
  { path: "jobs", label: "Jobs" },
  { path: "services", label: "Services" },
  { path: "quote", label: "Quote" },
  { path: "bills", label: "Bills" },
  { path: "sims", label: "Simulations" },
];

function Shell({ me, onSignOut }: { me: WhoAmI; onSignOut: () => void }) {
  const route = useRoute();
  const network = usePoll((signal) => api<NetworkView>("/api/v1/network", { signal }), "network");
  const now = useNetworkNow(network);
  const page = route.parts[0] || "network";
  const mainRef = useRef<HTMLElement>(null);
  const first = useRef(true);

  // Move focus to the page on navigation so keyboard and screen-reader users land on it.
  const pageKey = route.parts.join("/");
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    mainRef.current?.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }, [pageKey]);

  useEffect(() => {
    const label = PAGES.find((p) => p.path === page)?.label ?? "Dashboard";
    document.title = `${label} · ComputeNet`;
  }, [page]);

  let body;
  if (page === "network") body = <NetworkPage selected={route.query.get("center")} />;
  else if (page === "jobs" && route.parts[1]) body = <JobPage id={route.parts[1]} />;
  else if (page === "jobs") body = <JobsPage query={route.query} />;
  else if (page === "services") body = <ServicesPage />;
  else if (page === "quote") body = <QuotePage />;
  else if (page === "bills") body = <BillsPage query={route.query} />;
  else if (page === "sims" && route.parts[1]) body = <SimReportPage id={route.parts[1]} />;
  else if (page === "sims") body = <SimsPage />;
  else
    body = (
      <div class="card">
        <h1>Page not found</h1>
        <p>
          There is no page <code>#{route.parts.join("/")}</code>. Go to the <a href={href("network")}>network map</a>.
        </p>
      </div>
    );

  const net = network.data;
  return (
    <SessionContext.Provider value={{ me, network }}>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); mainRef.current?.focus(); }}>
        Skip to content
      </a>
      <header class="top">
        <div class="brand">
          <Logo /> ComputeNet
        </div>
        <nav aria-label="Pages">
          <ul>
            {PAGES.map((p) => (
              <li key={p.path}>
                <a href={href(p.path)} aria-current={page === p.path ? "page" : undefined}>
                  {p.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span class="clock" title="Network time (China Standard Time)" data-testid="network-clock">
            {net ? (
              <>
                <strong>{net.name}</strong> {now ? dateTime(now) : ""} CST
                {net.time_scale !== 1 ? <span class="scale"> ×{net.time_scale}</span> : null}
              </>
            ) : network.error ? (
              <span>network unavailable</span>
            ) : (
              "…"
            )}
          </span>
          <span class="me" data-testid="whoami">
            {me.subject}
            {me.tenant ? ` · ${me.tenant}` : ""}
            {me.role === "admin" ? " · admin" : ""}
          </span>
          <button type="button" class="link-button" onClick={onSignOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" ref={mainRef} tabIndex={-1}>
        {body}
      </main>
    </SessionContext.Provider>
  );
}

function App() {
  const [me, setMe] = useState<WhoAmI | null>(null);
  const [checking, setChecking] = useState(Boolean(getToken()));
  const [notice, setNotice] = useState<string | null>(null);

  useEffect(() => {
    if (!getToken()) return;
    api<WhoAmI>("/api/v1/whoami")
      .then(setMe)
      .catch(() => setToken(null))
      .finally(() => setChecking(false));
  }, []);

  useEffect(() => {
    const on = (e: Event) => {
      setToken(null);
      setMe(null);
      setNotice(`Signed out: ${(e as CustomEvent<string>).detail || "the server no longer accepts this token"}.`);
    };
    window.addEventListener(UNAUTHORIZED_EVENT, on);
    return () => window.removeEventListener(UNAUTHORIZED_EVENT, on);
  }, []);

  if (checking) return <p class="muted center-screen">Checking your session…</p>;
  if (!me)
    return (
      <SignIn
        notice={notice}
        onSignedIn={(who, token) => {
          setToken(token);
          setNotice(null);
          setMe(who);
        }}
      />
    );
  return (
    <Shell
      me={me}
      onSignOut={() => {
        setToken(null);
        setMe(null);
        setNotice("You are signed out.");
      }}
    />
  );
}

render(<App />, document.getElementById("app")!);
