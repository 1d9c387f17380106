import { useEffect, useState, type FormEvent } from "react";
import { api, describeError, quoteFilter, type Problem } from "../api";
import { Empty, ErrorBox, Name, Pager, Show, Time, useLoad, usePager } from "../components";
import { navigate } from "../router";
import type { Event } from "../gen/modelreg/events/v1/event_pb";

type Criteria = { model: string; actor: string; type: string; since: string; until: string };
const FIELDS: (keyof Criteria)[] = ["model", "actor", "type", "since", "until"];

function localToIso(value: string): string {
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? value : d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** The form's fields as the events service's filter grammar (AND of comparisons). */
export function toEventFilter(c: Criteria): string {
  const parts: string[] = [];
  if (c.model.trim()) {
    const model = c.model.trim().replace(/^models\//, "");
    parts.push(`(subject = ${quoteFilter(`models/${model}`)} OR subject = ${quoteFilter(`models/${model}/*`)})`);
  }
  if (c.actor.trim()) parts.push(`actor = ${quoteFilter(c.actor.trim())}`);
  if (c.type.trim()) parts.push(`type = ${quoteFilter(c.type.trim())}`);
  if (c.since) parts.push(`time >= ${quoteFilter(localToIso(c.since))}`);
  if (c.until) parts.push(`time <= ${quoteFilter(localToIso(c.until))}`);
  return parts.join(" AND ");
}

export function Audit({ params }: { params: URLSearchParams }) {
  const criteria = Object.fromEntries(FIELDS.map((f) => [f, params.get(f) ?? ""])) as Criteria;
  const [form, setForm] = useState<Criteria>(criteria);
  const key = FIELDS.map((f) => criteria[f]).join("\u0000");
  useEffect(() => setForm(criteria), [key]); // eslint-disable-line react-hooks/exhaustive-deps
  const filter = toEventFilter(criteria);
  const pager = usePager(filter);
  const [loaded] = useLoad(() => api.events.listEvents({ filter, pageSize: 50, pageToken: pager.token, orderBy: "sequence desc" }), [filter, pager.token]);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const q = new URLSearchParams(Object.entries(form).filter(([, v]) => v.trim()));
    navigate(`/audit${q.size ? `?${q}` : ""}`);
  };
  const field = (name: keyof Criteria, label: string, type = "text", placeholder = "") => (
    <label>
      {label}
      <input name={name} type={type} value={form[name]} placeholder={placeholder} onChange={(e) => setForm({ ...form, [name]: e.target.value })} />
    </label>
  );
  return (
    <section>
      <h1>Audit log</h1>
      <form className="filters" onSubmit={submit} aria-label="filter events">
        {field("model", "Model", "text", "fraud")}
        {field("actor", "Actor", "text", "alice")}
        {field("type", "Type", "text", "model_version.alias_set")}
        {field("since", "From", "datetime-local")}
        {field("until", "To", "datetime-local")}
        <button type="submit" className="primary">
          Filter
        </button>
      </form>
      <LiveTail filter={filter} />
      <h2>History</h2>
      <Show loaded={loaded} what="events">
        {(page) =>
          page.events.length === 0 ? (
            <Empty>{filter ? "No event matches these filters." : "The event log is empty."}</Empty>
          ) : (
            <>
              <EventTable events={page.events} label="events" />
              <Pager pager={pager} nextToken={page.nextPageToken} />
            </>
          )
        }
      </Show>
    </section>
  );
}

function LiveTail({ filter }: { filter: string }) {
  const [on, setOn] = useState(true);
  const [events, setEvents] = useState<Event[]>([]);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [connected, setConnected] = useState(false);
  useEffect(() => {
    setEvents([]);
    setProblem(null);
    if (!on) return;
    const abort = new AbortController();
    (async () => {
      try {
        // Resume after the newest matching event already in the log, so nothing appended
        // between the page's list and the stream opening is lost (from_now could miss it).
        const newest = await api.events.listEvents({ filter, pageSize: 1, orderBy: "sequence desc" }, { signal: abort.signal });
        const afterSequence = newest.events[0]?.sequence ?? 0n;
        const stream = api.events.subscribe({ filter, afterSequence }, { signal: abort.signal, timeoutMs: 0 });
        setConnected(true);
        for await (const { event } of stream) {
          if (event) setEvents((list) => [event, ...list].slice(0, 200));
        }
      } catch (error) {
        if (!abort.signal.aborted) setProblem(describeError(error));
      } finally {
        setConnected(false);
      }
    })();
    return () => abort.abort();
  }, [filter, on]);
  return (
    <section className="live" aria-labelledby="live">
      <h2 id="live">
        Live{" "}
        <span className={`dot ${on && connected ? "on" : ""}`} aria-hidden="true" />
        <label className="toggle">
          <input type="checkbox" checked={on} onChange={(e) => setOn(e.target.checked)} /> follow new events
        </label>
      </h2>
      {problem && <ErrorBox problem={problem} title="The live tail stopped" />}
      {on && connected && events.length === 0 && !problem && (
        <p className="muted" data-testid="live-waiting">
          Waiting for new events… they appear here without reloading.
        </p>
      )}
      {events.length > 0 && <EventTable events={events} label="live events" live />}
    </section>
  );
}

function EventTable({ events, label, live }: { events: Event[]; label: string; live?: boolean }) {
  return (
    <table className="events" aria-label={label} data-testid={live ? "live-events" : "events"}>
      <thead>
        <tr>
          <th scope="col">#</th>
          <th scope="col">Time</th>
          <th scope="col">Type</th>
          <th scope="col">Subject</th>
          <th scope="col">Actor</th>
          <th scope="col">Details</th>
        </tr>
      </thead>
      <tbody>
        {events.map((e) => (
          <tr key={e.id} className={live ? "fresh" : undefined} data-type={e.type}>
            <td className="num">{e.sequence.toString()}</td>
            <td>
              <Time ts={e.time} />
            </td>
            <td>
              <code>{e.type}</code>
            </td>
            <td>
              <Name name={e.subject} />
            </td>
            <td>{e.actor}</td>
            <td>
              <details>
                <summary>data</summary>
                <pre>{JSON.stringify(e.data ?? {}, null, 2)}</pre>
                <p className="muted">
                  request {e.requestId || "—"} · source {e.source}
                  {e.peer && <> · peer {e.peer}</>}
                </p>
              </details>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
