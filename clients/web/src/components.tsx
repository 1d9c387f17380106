// Building blocks every page shares: loading and error states, empty states, pagination.
import { useCallback, useEffect, useRef, useState, type ReactNode } from "react";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { date, describeError, type Problem } from "./api";
import { hrefOf, Link } from "./router";

export type Loaded<T> =
  | { state: "loading" }
  | { state: "error"; problem: Problem }
  | { state: "ready"; value: T };

/** Runs `load` whenever `deps` change; `reload()` runs it again. Stale answers are dropped. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): [Loaded<T>, () => void] {
  const [result, setResult] = useState<Loaded<T>>({ state: "loading" });
  const [tick, setTick] = useState(0);
  const generation = useRef(0);
  const reloading = useRef(false);
  useEffect(() => {
    const mine = ++generation.current;
    // A reload keeps what is shown until the new answer is in; new inputs never show
    // stale results (a search must not display the previous query's models).
    if (!reloading.current) setResult({ state: "loading" });
    reloading.current = false;
    load().then(
      (value) => mine === generation.current && setResult({ state: "ready", value }),
      (error) => mine === generation.current && setResult({ state: "error", problem: describeError(error) }),
    );
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  const reload = useCallback(() => {
    reloading.current = true;
    setTick((t) => t + 1);
  }, []);
  return [result, reload];
}

export function ErrorBox({ problem, title }: { problem: Problem; title?: string }) {
  const hint = HINTS[problem.code];
  return (
    <div className="error" role="alert">
      <strong>{title ?? "Something went wrong"}</strong>
      <span className="code">{problem.code}</span>
      <p className="message">{problem.message || "The server gave no details."}</p>
      {problem.fields.length > 0 && (
        <ul className="violations">
          {problem.fields.map((f) => (
            <li key={f.field + f.description}>
              <code>{f.field}</code>: {f.description}
            </li>
          ))}
        </ul>
      )}
      {problem.reason && (
        <p className="reason">
          Reason <code>{problem.reason}</code>
          {Object.entries(problem.metadata).map(([k, v]) => (
            <span key={k}>
              {" "}
              · {k} <code>{v}</code>
            </span>
          ))}
        </p>
      )}
      {hint && <p className="hint">{hint}</p>}
    </div>
  );
}

const HINTS: Record<string, ReactNode> = {
  Unauthenticated: (
    <>
      Your token was refused or is missing. <Link href="/signin">Sign in</Link> with a valid token.
    </>
  ),
  PermissionDenied: "Your role does not allow this. Ask an owner of the model or an admin for access.",
  Unavailable: "A backend of the registry is unavailable right now; try again shortly.",
  Aborted: "Someone changed this meanwhile. Reload the page and try again.",
};

export function Loading({ what }: { what: string }) {
  return (
    <p className="loading" aria-busy="true">
      Loading {what}…
    </p>
  );
}

export function Show<T>({ loaded, what, children }: { loaded: Loaded<T>; what: string; children: (value: T) => ReactNode }) {
  if (loaded.state === "loading") return <Loading what={what} />;
  if (loaded.state === "error") return <ErrorBox problem={loaded.problem} title={`Could not load ${what}`} />;
  return <>{children(loaded.value)}</>;
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="empty">{children}</div>;
}

export function Time({ ts, value }: { ts?: Timestamp; value?: Date }) {
  const d = value ?? date(ts);
  if (!d) return <span className="muted">—</span>;
  return (
    <time dateTime={d.toISOString()} title={d.toISOString()}>
      {d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" })}
    </time>
  );
}

export function Tags({ tags }: { tags: Record<string, string> }) {
  const entries = Object.entries(tags);
  if (entries.length === 0) return null;
  return (
    <ul className="tags" aria-label="tags">
      {entries.map(([k, v]) => (
        <li key={k} className="tag">
          {k}
          {v ? <span>={v}</span> : null}
        </li>
      ))}
    </ul>
  );
}

export function Name({ name }: { name: string }) {
  const href = hrefOf(name);
  return href ? <Link href={href}>{name}</Link> : <code>{name}</code>;
}

/** Keyset pagination: the page tokens seen so far, so "previous" needs no offset. */
export function usePager(resetKey: string) {
  const [tokens, setTokens] = useState<string[]>([""]);
  useEffect(() => setTokens([""]), [resetKey]);
  const token = tokens[tokens.length - 1];
  return {
    token,
    page: tokens.length,
    next: (nextToken: string) => setTokens((t) => [...t, nextToken]),
    previous: () => setTokens((t) => (t.length > 1 ? t.slice(0, -1) : t)),
  };
}

export function Pager({ pager, nextToken }: { pager: ReturnType<typeof usePager>; nextToken: string }) {
  if (pager.page === 1 && !nextToken) return null;
  return (
    <nav className="pager" aria-label="pagination">
      <button type="button" onClick={pager.previous} disabled={pager.page === 1}>
        ← Previous
      </button>
      <span>Page {pager.page}</span>
      <button type="button" onClick={() => pager.next(nextToken)} disabled={!nextToken}>
        Next page →
      </button>
    </nav>
  );
}

export function Badge({ children, tone }: { children: ReactNode; tone?: "ok" | "warn" | "bad" | "info" }) {
  return <span className={`badge ${tone ?? ""}`}>{children}</span>;
}
