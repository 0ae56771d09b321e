// Sign in with a bearer token; the token is checked with /whoami and kept in sessionStorage.

import { useState } from "preact/hooks";

import { api, ApiError } from "../api";
import { ErrorBox, Logo } from "../components";
import type { WhoAmI } from "../types";

export function SignIn({ notice, onSignedIn }: { notice: string | null; onSignedIn: (me: WhoAmI, token: string) => void }) {
  const [token, setTokenText] = useState("");
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const t = token.trim();
    if (!t) {
      setError(new ApiError(0, { error: "enter your token", field: "token", hint: "paste the token `cnet admin` printed for you" }));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const me = await api<WhoAmI>("/api/v1/whoami", { token: t });
      onSignedIn(me, t);
    } catch (exc) {
      setError(
        exc instanceof ApiError && exc.status === 401
          ? new ApiError(401, { error: `this token was not accepted (${exc.message})`, field: "token", hint: exc.hint ?? "check for a missing character, or ask an admin for a new token" })
          : (exc as ApiError),
      );
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="signin" id="main">
      <form class="card signin-card" onSubmit={submit} aria-labelledby="signin-h">
        <h1 id="signin-h">
          <Logo /> Sign in to ComputeNet
        </h1>
        {notice && (
          <p class="notice" role="status">
            {notice}
          </p>
        )}
        <label for="token">API token</label>
        <input
          id="token"
          name="token"
          type="password"
          autocomplete="off"
          spellcheck={false}
          value={token}
          onInput={(e) => setTokenText((e.target as HTMLInputElement).value)}
          aria-describedby="token-help"
          aria-invalid={error ? true : undefined}
          autoFocus
        />
        <p id="token-help" class="muted">
          A user or admin token, as printed by <code>cnet admin user create</code> or by <code>cnet demo</code>. It stays in
          this browser tab only (sessionStorage) and is sent as <code>Authorization: Bearer …</code>.
        </p>
        <ErrorBox error={error} title="Cannot sign in" />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
