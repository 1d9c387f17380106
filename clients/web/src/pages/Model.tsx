import { api, date, quoteFilter } from "../api";
import { Badge, Empty, Name, Pager, Show, Tags, Time, useLoad, usePager } from "../components";
import { LineChart, type Series } from "../chart";
import { Link, versionHref } from "../router";
import { ModelVersionState } from "../gen/modelreg/metadata/v1/model_version_pb";
import { DeploymentStatus } from "../gen/modelreg/lifecycle/v1/deployment_pb";
import { AliasAction } from "../gen/modelreg/lifecycle/v1/alias_pb";
import { WebhookState } from "../gen/modelreg/events/v1/webhook_pb";
import { TransitionRequestState } from "../gen/modelreg/lifecycle/v1/transition_request_pb";

export function stateBadge(state: ModelVersionState) {
  switch (state) {
    case ModelVersionState.READY:
      return <Badge tone="ok">ready</Badge>;
    case ModelVersionState.PENDING_REGISTRATION:
      return <Badge tone="warn">registering</Badge>;
    case ModelVersionState.FAILED_REGISTRATION:
      return <Badge tone="bad">failed</Badge>;
    default:
      return <Badge>unknown</Badge>;
  }
}

export function ModelPage({ model }: { model: string }) {
  const parent = `models/${model}`;
  const [loaded] = useLoad(() => api.models.getRegisteredModel({ name: parent }), [parent]);
  return (
    <Show loaded={loaded} what={`model ${model}`}>
      {({ registeredModel: m }) =>
        m && (
          <article>
            <nav className="crumbs" aria-label="breadcrumb">
              <Link href="/">Models</Link> / <span>{model}</span>
            </nav>
            <h1>{model}</h1>
            <p className={m.description ? "lead" : "muted"}>{m.description || "No description."}</p>
            <Tags tags={m.tags} />
            <p className="meta">
              Created <Time ts={m.createTime} /> by {m.createdBy || "—"} · updated <Time ts={m.updateTime} />
            </p>
            <PendingRequests parent={parent} />
            <Aliases parent={parent} model={model} />
            <Versions parent={parent} model={model} />
            <Stages parent={parent} model={model} />
            <Deployments parent={parent} />
            <ProductionMetrics parent={parent} />
            <Webhooks parent={parent} />
          </article>
        )
      }
    </Show>
  );
}

function PendingRequests({ parent }: { parent: string }) {
  const [loaded] = useLoad(
    () => api.requests.listTransitionRequests({ parent, state: TransitionRequestState.PENDING, pageSize: 50 }),
    [parent],
  );
  if (loaded.state !== "ready" || loaded.value.transitionRequests.length === 0) return null;
  const n = loaded.value.transitionRequests.length;
  return (
    <p className="notice">
      {n} pending transition request{n === 1 ? "" : "s"} on this model. <Link href="/approvals">Review them</Link>.
    </p>
  );
}

function Aliases({ parent, model }: { parent: string; model: string }) {
  const [loaded] = useLoad(async () => {
    const { aliases } = await api.aliases.listAliases({ parent, pageSize: 100 });
    const histories = await Promise.all(aliases.map((a) => api.aliases.listAliasHistory({ name: a.name, pageSize: 10 })));
    return aliases.map((alias, i) => ({ alias, history: histories[i].entries }));
  }, [parent]);
  return (
    <section aria-labelledby="aliases">
      <h2 id="aliases">Aliases</h2>
      <Show loaded={loaded} what="aliases">
        {(rows) =>
          rows.length === 0 ? (
            <Empty>No aliases yet. An alias (like champion) names the version that serves.</Empty>
          ) : (
            <table data-testid="aliases">
              <thead>
                <tr>
                  <th scope="col">Alias</th>
                  <th scope="col">Version</th>
                  <th scope="col">Moved by</th>
                  <th scope="col">When</th>
                  <th scope="col">History</th>
                </tr>
              </thead>
              <tbody>
                {rows.map(({ alias, history }) => (
                  <tr key={alias.name} data-alias={alias.name.split("/").pop()}>
                    <th scope="row">
                      <Badge tone="info">@{alias.name.split("/").pop()}</Badge>
                    </th>
                    <td>
                      <Link href={versionHref(model, alias.versionNumber)}>v{alias.versionNumber.toString()}</Link>
                    </td>
                    <td>{alias.updater}</td>
                    <td>
                      <Time ts={alias.updateTime} />
                    </td>
                    <td>
                      <details>
                        <summary>{history.length} change{history.length === 1 ? "" : "s"}</summary>
                        <ol className="history">
                          {history.map((h, i) => (
                            <li key={i}>
                              {AliasAction[h.action].toLowerCase()} {shortVersion(h.fromVersion) ?? "∅"} → {shortVersion(h.toVersion) ?? "∅"} by{" "}
                              {h.actor} <Time ts={h.time} />
                              {h.reason && <q>{h.reason}</q>}
                            </li>
                          ))}
                        </ol>
                      </details>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )
        }
      </Show>
    </section>
  );
}

function shortVersion(name: string): string | undefined {
  const n = name.split("/").pop();
  return n ? `v${n}` : undefined;
}

function Versions({ parent, model }: { parent: string; model: string }) {
  const pager = usePager(parent);
  const [loaded] = useLoad(
    () => api.versions.listModelVersions({ parent, pageSize: 20, pageToken: pager.token, orderBy: "version desc" }),
    [parent, pager.token],
  );
  return (
    <section aria-labelledby="versions">
      <h2 id="versions">Versions</h2>
      <Show loaded={loaded} what="versions">
        {(page) =>
          page.modelVersions.length === 0 ? (
            <Empty>No versions yet.</Empty>
          ) : (
            <>
              <table>
                <thead>
                  <tr>
                    <th scope="col">Version</th>
                    <th scope="col">State</th>
                    <th scope="col">Format</th>
                    <th scope="col">Created</th>
                    <th scope="col">By</th>
                    <th scope="col">Tags</th>
                  </tr>
                </thead>
                <tbody>
                  {page.modelVersions.map((v) => (
                    <tr key={v.name}>
                      <th scope="row">
                        <Link href={versionHref(model, v.version)}>v{v.version.toString()}</Link>
                      </th>
                      <td>{stateBadge(v.state)}</td>
                      <td>{[v.framework, v.modelFormat].filter(Boolean).join(" · ") || "—"}</td>
                      <td>
                        <Time ts={v.createTime} />
                      </td>
                      <td>{v.createdBy}</td>
                      <td>
                        <Tags tags={v.tags} />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
              <Pager pager={pager} nextToken={page.nextPageToken} />
            </>
          )
        }
      </Show>
    </section>
  );
}

function Stages({ parent, model }: { parent: string; model: string }) {
  const [loaded] = useLoad(async () => {
    const [stages, history] = await Promise.all([
      api.stages.listVersionStages({ parent }),
      api.stages.listStageHistory({ parent, pageSize: 20 }),
    ]);
    return { stages, history: history.entries };
  }, [parent]);
  return (
    <section aria-labelledby="stages">
      <h2 id="stages">Stages</h2>
      <Show loaded={loaded} what="stages">
        {({ stages, history }) => (
          <>
            {stages.versionStages.length === 0 ? (
              <Empty>No version is in a stage. Stages: {stages.stages.join(", ") || "none configured"}.</Empty>
            ) : (
              <ul className="stages">
                {stages.versionStages.map((s) => (
                  <li key={s.version}>
                    <Badge tone={s.stage === "Production" ? "ok" : "info"}>{s.stage}</Badge>{" "}
                    <Link href={versionHref(model, s.version.split("/").pop() ?? "")}>{shortVersion(s.version)}</Link> since{" "}
                    <Time ts={s.updateTime} /> ({s.updater})
                  </li>
                ))}
              </ul>
            )}
            {history.length > 0 && (
              <details>
                <summary>Stage history ({history.length})</summary>
                <ol className="history">
                  {history.map((h, i) => (
                    <li key={i}>
                      {shortVersion(h.version)}: {h.fromStage || "None"} → {h.toStage || "None"} by {h.actor} <Time ts={h.time} />
                      {h.reason && <q>{h.reason}</q>}
                    </li>
                  ))}
                </ol>
              </details>
            )}
          </>
        )}
      </Show>
    </section>
  );
}

function Deployments({ parent }: { parent: string }) {
  const pager = usePager(parent);
  const [loaded] = useLoad(() => api.deployments.listDeployments({ parent, pageSize: 20, pageToken: pager.token }), [parent, pager.token]);
  return (
    <section aria-labelledby="deployments">
      <h2 id="deployments">Deployments</h2>
      <Show loaded={loaded} what="deployments">
        {(page) =>
          page.deployments.length === 0 ? (
            <Empty>Not deployed anywhere yet. CD pipelines record deployments with RecordDeployment.</Empty>
          ) : (
            <>
              <table>
                <thead>
                  <tr>
                    <th scope="col">Environment</th>
                    <th scope="col">Version</th>
                    <th scope="col">Status</th>
                    <th scope="col">Endpoint</th>
                    <th scope="col">Recorded</th>
                  </tr>
                </thead>
                <tbody>
                  {page.deployments.map((d) => (
                    <tr key={d.name}>
                      <th scope="row">{d.environment}</th>
                      <td>
                        <Name name={d.version} />
                      </td>
                      <td>
                        <Badge tone={d.status === DeploymentStatus.ACTIVE ? "ok" : d.status === DeploymentStatus.FAILED ? "bad" : undefined}>
                          {DeploymentStatus[d.status].toLowerCase()}
                        </Badge>
                      </td>
                      <td>{d.endpoint || "—"}</td>
                      <td>
                        <Time ts={d.createTime} /> by {d.recorder}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
              <Pager pager={pager} nextToken={page.nextPageToken} />
            </>
          )
        }
      </Show>
    </section>
  );
}

// There is no "list metric values" RPC: the recorded values are in the event log, one
// production_metrics.recorded event per call, which is also what an auditor would read.
function ProductionMetrics({ parent }: { parent: string }) {
  const [loaded] = useLoad(async () => {
    const filter = `type = "production_metrics.recorded" AND subject = ${quoteFilter(`${parent}/*`)}`;
    const [events, degradations] = await Promise.all([
      api.events.listEvents({ filter, pageSize: 500, orderBy: "sequence desc" }),
      api.metrics.listDegradations({ parent, pageSize: 20 }),
    ]);
    const series = new Map<string, Series>();
    for (const e of events.events) {
      const env = String(e.data?.environment ?? "");
      const metrics = (e.data?.metrics ?? {}) as Record<string, unknown>;
      const when = date(e.time);
      if (!when) continue;
      for (const [metric, value] of Object.entries(metrics)) {
        if (typeof value !== "number") continue;
        const label = `${metric} · ${shortVersion(e.subject)} · ${env}`;
        if (!series.has(label)) series.set(label, { label, points: [] });
        series.get(label)!.points.push({ time: when, value });
      }
    }
    return { series: [...series.values()].slice(0, 6), degradations: degradations.degradations };
  }, [parent]);
  return (
    <section aria-labelledby="production">
      <h2 id="production">Production metrics</h2>
      <Show loaded={loaded} what="production metrics">
        {({ series, degradations }) => (
          <>
            {series.length === 0 ? (
              <Empty>No production metrics recorded yet.</Empty>
            ) : (
              <LineChart series={series} title="Production metrics over time" />
            )}
            {degradations.length > 0 && (
              <ul className="degradations">
                {degradations.map((d, i) => (
                  <li key={i}>
                    <Badge tone={d.endTime ? "info" : "bad"}>{d.endTime ? "recovered" : "degraded"}</Badge> {d.metric} = {d.value} breaks{" "}
                    <code>{d.threshold}</code> on {shortVersion(d.version)} in {d.environment} since <Time ts={d.startTime} />
                  </li>
                ))}
              </ul>
            )}
          </>
        )}
      </Show>
    </section>
  );
}

function Webhooks({ parent }: { parent: string }) {
  const [loaded] = useLoad(async () => {
    const { webhooks } = await api.webhooks.listWebhooks({ pageSize: 200 });
    const model = parent.slice("models/".length);
    return webhooks.filter((w) => w.models.length === 0 || w.models.includes(parent) || w.models.includes(model));
  }, [parent]);
  return (
    <section aria-labelledby="webhooks">
      <h2 id="webhooks">Webhooks</h2>
      <Show loaded={loaded} what="webhooks">
        {(hooks) =>
          hooks.length === 0 ? (
            <Empty>No webhook is notified about this model.</Empty>
          ) : (
            <table>
              <thead>
                <tr>
                  <th scope="col">URL</th>
                  <th scope="col">Events</th>
                  <th scope="col">Scope</th>
                  <th scope="col">State</th>
                </tr>
              </thead>
              <tbody>
                {hooks.map((w) => (
                  <tr key={w.name}>
                    <th scope="row">
                      <code>{w.url}</code>
                      {w.description && <div className="muted">{w.description}</div>}
                    </th>
                    <td>{w.eventTypes.join(", ") || "all"}</td>
                    <td>{w.models.length ? "this model" : "every model"}</td>
                    <td>
                      <Badge tone={w.state === WebhookState.ACTIVE ? "ok" : "warn"}>{WebhookState[w.state].toLowerCase()}</Badge>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )
        }
      </Show>
    </section>
  );
}
