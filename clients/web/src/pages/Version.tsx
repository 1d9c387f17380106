import { useState, type FormEvent } from "react";
import { api, authHeaders, describeError, downloadUrl, formatBytes, type Problem } from "../api";
import { Badge, Empty, ErrorBox, Pager, Show, Tags, Time, useLoad, usePager } from "../components";
import { LineageGraph } from "../lineage";
import { Link, modelHref } from "../router";
import { stateBadge } from "./Model";
import { DataType, type SignatureField } from "../gen/modelreg/metadata/v1/signature_pb";
import { LineageDirection } from "../gen/modelreg/metadata/v1/lineage_pb";
import { RunStatus } from "../gen/modelreg/metadata/v1/run_pb";

export function VersionPage({ model, version }: { model: string; version: string }) {
  const name = `models/${model}/versions/${version}`;
  const [loaded] = useLoad(() => api.versions.getModelVersion({ name }), [name]);
  return (
    <Show loaded={loaded} what={`version ${version} of ${model}`}>
      {({ modelVersion: v }) =>
        v && (
          <article>
            <nav className="crumbs" aria-label="breadcrumb">
              <Link href="/">Models</Link> / <Link href={modelHref(model)}>{model}</Link> / <span>v{version}</span>
            </nav>
            <h1>
              {model} <span className="muted">v{version}</span> {stateBadge(v.state)}
            </h1>
            <p className={v.description ? "lead" : "muted"}>{v.description || "No description."}</p>
            <Tags tags={v.tags} />
            <dl className="facts">
              <dt>Created</dt>
              <dd>
                <Time ts={v.createTime} /> by {v.createdBy || "—"}
              </dd>
              <dt>Framework</dt>
              <dd>{[v.framework, v.modelFormat].filter(Boolean).join(" · ") || "—"}</dd>
              <dt>Artifacts</dt>
              <dd>
                {v.artifactFileCount.toString()} files, {formatBytes(v.artifactSizeBytes)}
                {v.artifactDigest && (
                  <>
                    {" "}
                    · <code className="digest">{v.artifactDigest}</code>
                  </>
                )}
              </dd>
              {v.source && (
                <>
                  <dt>Source</dt>
                  <dd>
                    <code>{v.source}</code>
                  </dd>
                </>
              )}
              {v.statusMessage && (
                <>
                  <dt>Status</dt>
                  <dd>{v.statusMessage}</dd>
                </>
              )}
            </dl>
            <WhereItIs model={model} version={name} />
            <RequestPromotion model={model} version={name} />
            <section aria-labelledby="signature">
              <h2 id="signature">Signature</h2>
              {v.signature && v.signature.inputs.length + v.signature.outputs.length + v.signature.params.length > 0 ? (
                <table data-testid="signature">
                  <thead>
                    <tr>
                      <th scope="col">Kind</th>
                      <th scope="col">Name</th>
                      <th scope="col">Type</th>
                      <th scope="col">Shape</th>
                      <th scope="col">Optional</th>
                      <th scope="col">Default</th>
                    </tr>
                  </thead>
                  <tbody>
                    {(
                      [
                        ["input", v.signature.inputs],
                        ["output", v.signature.outputs],
                        ["param", v.signature.params],
                      ] as [string, SignatureField[]][]
                    ).flatMap(([kind, fields]) =>
                      fields.map((f) => (
                        <tr key={`${kind}:${f.name}`}>
                          <td>{kind}</td>
                          <th scope="row">{f.name}</th>
                          <td>
                            <code>{DataType[f.type]?.toLowerCase()}</code>
                          </td>
                          <td>{f.shape.length ? `[${f.shape.map((d) => (d === -1n ? "?" : d.toString())).join(", ")}]` : "scalar"}</td>
                          <td>{f.optional ? "yes" : "no"}</td>
                          <td>{f.defaultValue || "—"}</td>
                        </tr>
                      )),
                    )}
                  </tbody>
                </table>
              ) : (
                <Empty>This version has no signature.</Empty>
              )}
            </section>
            <Files owner={name} />
            {v.run ? <SourceRun run={v.run} /> : null}
            <Lineage start={name} />
          </article>
        )
      }
    </Show>
  );
}

// Which aliases point at this version and which stage it is in: what a reviewer asks first.
function WhereItIs({ model, version }: { model: string; version: string }) {
  const [loaded] = useLoad(async () => {
    const [aliases, stage] = await Promise.all([
      api.aliases.listAliases({ parent: `models/${model}`, pageSize: 100 }),
      api.stages.getVersionStage({ name: version }),
    ]);
    return { aliases: aliases.aliases.filter((a) => a.version === version), stage: stage.versionStage?.stage ?? "" };
  }, [version]);
  if (loaded.state !== "ready") return null;
  const { aliases, stage } = loaded.value;
  return (
    <p className="meta" data-testid="where">
      {aliases.length ? aliases.map((a) => <Badge key={a.name} tone="info">@{a.name.split("/").pop()}</Badge>) : "No alias points here"}
      {" · "}
      {stage && stage !== "None" ? <Badge tone={stage === "Production" ? "ok" : "info"}>{stage}</Badge> : "in no stage"}
    </p>
  );
}

function RequestPromotion({ model, version }: { model: string; version: string }) {
  const [kind, setKind] = useState<"alias" | "stage">("alias");
  const [target, setTarget] = useState("champion");
  const [comment, setComment] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [created, setCreated] = useState<string | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setProblem(null);
    setCreated(null);
    try {
      const { transitionRequest } = await api.requests.createTransitionRequest({
        parent: `models/${model}`,
        transitionRequest: { version, target: { case: kind, value: target.trim() }, comment },
        requestId: crypto.randomUUID(),
      });
      setCreated(transitionRequest?.name ?? "");
    } catch (error) {
      setProblem(describeError(error));
    }
  };
  return (
    <details className="panel">
      <summary>Request a promotion</summary>
      <form onSubmit={submit} className="inline-form">
        <label>
          Move
          <select value={kind} onChange={(e) => setKind(e.target.value as "alias" | "stage")}>
            <option value="alias">alias</option>
            <option value="stage">stage</option>
          </select>
        </label>
        <label>
          {kind === "alias" ? "Alias" : "Stage"}
          <input
            value={target}
            onChange={(e) => setTarget(e.target.value)}
            required
            aria-invalid={problem?.fields.some((f) => f.field.endsWith(`.${kind}`)) || undefined}
          />
        </label>
        <label className="grow">
          Comment
          <input
            value={comment}
            onChange={(e) => setComment(e.target.value)}
            placeholder="Why this version?"
            aria-invalid={problem?.fields.some((f) => f.field.endsWith(".comment")) || undefined}
          />
        </label>
        <button type="submit" className="primary">
          Request
        </button>
      </form>
      {created && (
        <p className="success" role="status">
          Request created. Reviewers see it in <Link href="/approvals">Approvals</Link>.
        </p>
      )}
      {problem && <ErrorBox problem={problem} title="The request was not created" />}
    </details>
  );
}

async function download(owner: string, path: string): Promise<void> {
  // A fetch, not a bare link, so the token travels in a header and never in a URL.
  const response = await fetch(downloadUrl(owner, path), { headers: authHeaders() });
  if (!response.ok) throw new Error(`${response.status}: ${await response.text()}`);
  const url = URL.createObjectURL(await response.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = path.split("/").pop() ?? "download";
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function Files({ owner }: { owner: string }) {
  const pager = usePager(owner);
  const [failure, setFailure] = useState<string | null>(null);
  const [loaded] = useLoad(() => api.artifacts.listFiles({ owner, pageSize: 50, pageToken: pager.token }), [owner, pager.token]);
  return (
    <section aria-labelledby="files">
      <h2 id="files">Files</h2>
      <Show loaded={loaded} what="files">
        {(page) =>
          page.files.length === 0 ? (
            <Empty>No files were uploaded for this version.</Empty>
          ) : (
            <>
              <table data-testid="files">
                <thead>
                  <tr>
                    <th scope="col">Path</th>
                    <th scope="col">Size</th>
                    <th scope="col">Digest</th>
                    <th scope="col">
                      <span className="visually-hidden">Download</span>
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {page.files.map((f) => (
                    <tr key={f.path}>
                      <th scope="row">
                        <code>{f.path}</code>
                      </th>
                      <td>{formatBytes(f.sizeBytes)}</td>
                      <td>
                        <code className="digest" title={f.digest}>
                          {f.digest.slice(0, 19)}…
                        </code>
                      </td>
                      <td>
                        <a
                          href={downloadUrl(owner, f.path)}
                          onClick={(e) => {
                            e.preventDefault();
                            setFailure(null);
                            download(owner, f.path).catch((err) => setFailure(String(err.message ?? err)));
                          }}
                        >
                          Download
                        </a>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
              <Pager pager={pager} nextToken={page.nextPageToken} />
              {failure && (
                <p className="field-error" role="alert">
                  Download failed: {failure}
                </p>
              )}
            </>
          )
        }
      </Show>
    </section>
  );
}

function SourceRun({ run }: { run: string }) {
  const [loaded] = useLoad(() => api.runs.getRun({ name: run }), [run]);
  return (
    <section aria-labelledby="run">
      <h2 id="run">Source run</h2>
      <Show loaded={loaded} what="the source run">
        {({ run: r }) =>
          r && (
            <>
              <p>
                <code>{r.name}</code> {r.displayName && <strong>{r.displayName}</strong>}{" "}
                <Badge tone={r.status === RunStatus.FINISHED ? "ok" : r.status === RunStatus.FAILED ? "bad" : "info"}>
                  {RunStatus[r.status]?.toLowerCase()}
                </Badge>{" "}
                started <Time ts={r.startTime} /> by {r.createdBy}
              </p>
              {r.code && (r.code.repositoryUrl || r.code.commit) && (
                <p>
                  Code <code>{r.code.repositoryUrl}</code> @ <code>{r.code.commit.slice(0, 12)}</code> {r.code.entryPoint && <>· {r.code.entryPoint}</>}
                </p>
              )}
              <div className="two-col">
                <KeyValues title="Parameters" values={r.params} />
                <KeyValues title="Metrics" values={Object.fromEntries(Object.entries(r.latestMetrics).map(([k, v]) => [k, String(Number(v.toPrecision(6)))]))} />
              </div>
              {r.inputs.length > 0 && (
                <p>
                  Inputs:{" "}
                  {r.inputs.map((d) => (
                    <span key={d.name + d.digest} className="tag">
                      {d.name} {d.context && <span>({d.context})</span>}
                    </span>
                  ))}
                </p>
              )}
            </>
          )
        }
      </Show>
    </section>
  );
}

function KeyValues({ title, values }: { title: string; values: Record<string, string> }) {
  const entries = Object.entries(values).sort(([a], [b]) => a.localeCompare(b));
  return (
    <div>
      <h3>{title}</h3>
      {entries.length === 0 ? (
        <p className="muted">None.</p>
      ) : (
        <table className="kv">
          <tbody>
            {entries.map(([k, v]) => (
              <tr key={k}>
                <th scope="row">{k}</th>
                <td>{v}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function Lineage({ start }: { start: string }) {
  const [loaded] = useLoad(() => api.lineage.getLineage({ start, direction: LineageDirection.BOTH, maxHops: 6, maxNodes: 200 }), [start]);
  return (
    <section aria-labelledby="lineage">
      <h2 id="lineage">Lineage</h2>
      <Show loaded={loaded} what="lineage">
        {(g) =>
          g.nodes.length <= 1 ? (
            <Empty>No lineage recorded: register versions from a run to link them to their data and code.</Empty>
          ) : (
            <>
              <div className="scroll">
                <LineageGraph nodes={g.nodes} edges={g.edges} start={start} />
              </div>
              <p className="muted">
                {g.nodes.length} nodes, {g.edges.length} edges{g.truncated ? " (truncated: more are reachable)" : ""}. Data flows left to right; click a
                version to open it.
              </p>
            </>
          )
        }
      </Show>
    </section>
  );
}

