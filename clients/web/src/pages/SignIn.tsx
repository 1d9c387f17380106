import { useState, type FormEvent } from "react";
import { navigate } from "../router";
import { useSession } from "../session";

export function SignIn({ next }: { next: string }) {
  const { principal, signIn } = useSession();
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(await signIn(token));
    setBusy(false);
    if (sessionStorage.getItem("modelreg.token")) navigate(next.startsWith("/") ? next : "/", true);
  };
  return (
    <section className="signin">
      <h1>Sign in</h1>
      {principal && (
        <p>
          You are signed in as <strong>{principal.subject}</strong>. A new token replaces it for this tab.
        </p>
      )}
      <p className="muted">
        Paste an API key or bearer token. It is kept only in this browser tab (session storage) and sent with
        each call; closing the tab forgets it.
      </p>
      <form onSubmit={submit}>
        <label htmlFor="token">Token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="off"
          value={token}
          onChange={(e) => setToken(e.target.value)}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? "token-error" : undefined}
          required
        />
        {error && (
          <p id="token-error" className="field-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy || !token.trim()}>
          {busy ? "Checking…" : "Sign in"}
        </button>
      </form>
    </section>
  );
}
