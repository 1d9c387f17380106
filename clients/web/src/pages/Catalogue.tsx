import { useEffect, useState, type FormEvent } from "react";
import { api, modelId, quoteFilter } from "../api";
import { Empty, Pager, Show, Time, useLoad, usePager } from "../components";
import { Link, modelHref, navigate } from "../router";

// Plain words search names and descriptions; anything with an operator is the registry's own
// filter grammar (`tags.team = "risk" AND update_time > "2026-01-01T00:00:00Z"`), passed as is.
export function toFilter(query: string): string {
  const q = query.trim();
  if (!q) return "";
  if (/[=<>!]|\b(AND|OR|NOT|LIKE|ILIKE|IN|IS)\b/.test(q)) return q;
  const pattern = quoteFilter(`%${q.replace(/[%_]/g, "")}%`);
  return `name ILIKE ${pattern} OR description ILIKE ${pattern}`;
}

export function Catalogue({ query }: { query: string }) {
  const [text, setText] = useState(query);
  useEffect(() => setText(query), [query]);
  const filter = toFilter(query);
  const pager = usePager(filter);
  const [loaded] = useLoad(
    () => api.models.searchRegisteredModels({ filter, pageSize: 25, pageToken: pager.token, orderBy: "update_time desc" }),
    [filter, pager.token],
  );
  const submit = (e: FormEvent) => {
    e.preventDefault();
    navigate(text.trim() ? `/?q=${encodeURIComponent(text.trim())}` : "/");
  };
  const searchTag = (key: string, value: string) => navigate(`/?q=${encodeURIComponent(`tags.${key} = ${quoteFilter(value)}`)}`);
  return (
    <section>
      <h1>Models</h1>
      <form className="search" role="search" onSubmit={submit}>
        <label htmlFor="q" className="visually-hidden">
          Search models
        </label>
        <input
          id="q"
          type="search"
          placeholder='Search by name or description, or a filter: tags.team = "risk"'
          value={text}
          onChange={(e) => setText(e.target.value)}
        />
        <button type="submit" className="primary">
          Search
        </button>
      </form>
      <Show loaded={loaded} what="models">
        {(page) =>
          page.registeredModels.length === 0 ? (
            <Empty>
              {query ? (
                <>
                  No model matches <code>{query}</code>. <Link href="/">Show all models</Link>.
                </>
              ) : (
                <>No models are registered yet. Register one with the Python client or `modelreg models create`.</>
              )}
            </Empty>
          ) : (
            <>
              <ul className="cards" aria-label="models">
                {page.registeredModels.map((m) => {
                  const id = modelId(m.name);
                  return (
                    <li key={m.name} className="card" data-testid="model-card">
                      <h2>
                        <Link href={modelHref(id)}>{id}</Link>
                      </h2>
                      <p className={m.description ? "" : "muted"}>{m.description || "No description."}</p>
                      <ul className="tags" aria-label="tags">
                        {Object.entries(m.tags).map(([k, v]) => (
                          <li key={k}>
                            <button type="button" className="tag" onClick={() => searchTag(k, v)} title={`Find models with ${k}=${v}`}>
                              {k}
                              {v ? <span>={v}</span> : null}
                            </button>
                          </li>
                        ))}
                      </ul>
                      <p className="meta">
                        {m.latestVersion > 0n ? `${m.latestVersion} version${m.latestVersion === 1n ? "" : "s"}` : "no versions"} ·
                        updated <Time ts={m.updateTime} /> · by {m.createdBy || "—"}
                      </p>
                    </li>
                  );
                })}
              </ul>
              <Pager pager={pager} nextToken={page.nextPageToken} />
            </>
          )
        }
      </Show>
    </section>
  );
}

