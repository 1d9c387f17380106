import { useState } from "react";
import { api, Code, describeError, isCode, modelId, parseVersionName, type Problem } from "../api";
import { Badge, Empty, ErrorBox, Show, Time, useLoad } from "../components";
import { Link, modelHref, versionHref } from "../router";
import { useSession } from "../session";
import { TransitionRequestState, type TransitionRequest } from "../gen/modelreg/lifecycle/v1/transition_request_pb";
import type { Policy, PolicyRule } from "../gen/modelreg/lifecycle/v1/policy_pb";
import { ModelVersionState, type ModelVersion } from "../gen/modelreg/metadata/v1/model_version_pb";
import type { Run } from "../gen/modelreg/metadata/v1/run_pb";

const MAX_REQUESTS = 500;

// One query across every model the caller may read (parent `models/-`), newest first.
async function loadQueue(): Promise<TransitionRequest[]> {
  const requests: TransitionRequest[] = [];
  let pageToken = "";
  do {
    const page = await api.requests.listTransitionRequests({
      parent: "models/-",
      state: TransitionRequestState.PENDING,
      pageSize: 100,
      pageToken,
    });
    requests.push(...page.transitionRequests);
    pageToken = page.nextPageToken;
  } while (pageToken && requests.length < MAX_REQUESTS);
  return requests;
}

export function Approvals() {
  const [loaded, reload] = useLoad(loadQueue, []);
  const [done, setDone] = useState<TransitionRequest[]>([]);
  return (
    <section>
      <h1>Approvals</h1>
      <p className="muted">Pending requests to move an alias or a stage. The requester cannot approve their own request.</p>
      {done.map((r) => (
        <p key={r.name} className="success" role="status" data-testid="outcome">
          {outcome(r)}
        </p>
      ))}
      <Show loaded={loaded} what="pending requests">
        {(requests) =>
          requests.length === 0 ? (
            <Empty>Nothing is waiting for review.</Empty>
          ) : (
            <ul className="requests" aria-label="pending requests">
              {requests.map((r) => (
                <RequestCard
                  key={r.name}
                  request={r}
                  onDone={(updated) => {
                    setDone((d) => [updated, ...d]);
                    reload();
                  }}
                />
              ))}
            </ul>
          )
        }
      </Show>
    </section>
  );
}

function target(r: TransitionRequest): string {
  return r.target.case === "alias" ? `@${r.target.value}` : r.target.case === "stage" ? `stage ${r.target.value}` : "?";
}

// `base` is what the target was when the request was made: a version for an alias, a stage
// for a stage move.
function baseText(r: TransitionRequest): string {
  if (r.target.case === "stage") return `now in stage ${r.base}`;
  const v = parseVersionName(r.base);
  return v ? `@${r.target.value} is on v${v.version} now` : `currently ${r.base}`;
}

function outcome(r: TransitionRequest): string {
  const v = parseVersionName(r.version);
  const what = `${v ? `${v.model} v${v.version}` : r.version} → ${target(r)}`;
  switch (r.state) {
    case TransitionRequestState.APPLIED:
      return `Applied: ${what}.`;
    case TransitionRequestState.PENDING:
      return `Approval recorded for ${what}; ${r.approvals.length} of ${r.requiredApprovals} so far.`;
    case TransitionRequestState.REJECTED:
      return `Rejected: ${what}.`;
    case TransitionRequestState.FAILED:
      return `Approved, but it could not be applied: ${r.failureReason}`;
    default:
      return `${TransitionRequestState[r.state]}: ${what}.`;
  }
}

type Check = { check: string; result: "pass" | "fail" | "unknown"; detail: string };

export function evaluateChecks(rule: PolicyRule | undefined, version: ModelVersion | undefined, run: Run | undefined): Check[] {
  if (!rule) return [];
  return rule.checks.map((check) => {
    if (!version) return { check, result: "unknown", detail: "version not readable" };
    if (check === "version.ready")
      return { check, result: version.state === ModelVersionState.READY ? "pass" : "fail", detail: ModelVersionState[version.state].toLowerCase() };
    if (check === "signature.present") {
      const s = version.signature;
      const present = !!s && s.inputs.length + s.outputs.length > 0;
      return { check, result: present ? "pass" : "fail", detail: present ? "signature recorded" : "no signature" };
    }
    let m: RegExpExecArray | null;
    if ((m = /^tags\.(\S+)$/.exec(check))) {
      const has = m[1] in version.tags;
      return { check, result: has ? "pass" : "fail", detail: has ? `${m[1]}=${version.tags[m[1]]}` : `no tag ${m[1]}` };
    }
    if ((m = /^metrics\.(\S+)\s*(>=|<=|==|!=|=|>|<)\s*(-?[0-9.eE+-]+)$/.exec(check))) {
      const value = run?.latestMetrics[m[1]];
      if (value === undefined) return { check, result: run ? "fail" : "unknown", detail: run ? `run has no metric ${m[1]}` : "no source run" };
      const bound = Number(m[3]);
      const ok = { ">=": value >= bound, "<=": value <= bound, ">": value > bound, "<": value < bound, "==": value === bound, "=": value === bound, "!=": value !== bound }[m[2]];
      return { check, result: ok ? "pass" : "fail", detail: `${m[1]} = ${value}` };
    }
    return { check, result: "unknown", detail: "checked by the server" };
  });
}

function ruleFor(policy: Policy | undefined, r: TransitionRequest): PolicyRule | undefined {
  if (!policy) return undefined;
  return policy.rules.find((rule) =>
    r.target.case === "alias" ? rule.aliases.includes(r.target.value) : r.target.case === "stage" ? rule.stages.includes(r.target.value) : false,
  );
}

async function getPolicy(name: string): Promise<Policy | undefined> {
  try {
    return (await api.policies.getPolicy({ name })).policy;
  } catch (error) {
    if (isCode(error, Code.NotFound)) return undefined;
    throw error;
  }
}

function RequestCard({ request: r, onDone }: { request: TransitionRequest; onDone: (r: TransitionRequest) => void }) {
  const { principal } = useSession();
  const v = parseVersionName(r.version);
  const model = v?.model ?? modelId(r.name.split("/transitionRequests/")[0]);
  const [context] = useLoad(async () => {
    const version = (await api.versions.getModelVersion({ name: r.version })).modelVersion;
    const [run, modelPolicy, registryPolicy] = await Promise.all([
      version?.run ? api.runs.getRun({ name: version.run }).then((x) => x.run, () => undefined) : Promise.resolve(undefined),
      getPolicy(`models/${model}/policy`),
      getPolicy("policies/registry"),
    ]);
    const rule = ruleFor(modelPolicy, r) ?? ruleFor(registryPolicy, r);
    return { version, run, rule, checks: evaluateChecks(rule, version, run) };
  }, [r.name]);
  const [comment, setComment] = useState("");
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem | null>(null);
  const own = principal?.subject === r.requester;
  const alreadyApproved = r.approvals.some((a) => a.reviewer === principal?.subject);
  const act = async (verb: "approve" | "reject" | "cancel") => {
    setBusy(true);
    setProblem(null);
    try {
      const call =
        verb === "approve"
          ? api.requests.approveTransitionRequest({ name: r.name, comment })
          : verb === "reject"
            ? api.requests.rejectTransitionRequest({ name: r.name, comment })
            : api.requests.cancelTransitionRequest({ name: r.name, comment });
      const { transitionRequest } = await call;
      if (transitionRequest) onDone(transitionRequest);
    } catch (error) {
      setProblem(describeError(error));
    } finally {
      setBusy(false);
    }
  };
  const commentId = `comment-${r.name.replace(/\W/g, "-")}`;
  const selfId = `self-${r.name.replace(/\W/g, "-")}`;
  return (
    <li className="card request" data-testid="request" data-request={r.name}>
      <h2>
        <Link href={modelHref(model)}>{model}</Link>{" "}
        {v ? <Link href={versionHref(model, v.version)}>v{v.version}</Link> : r.version} <span aria-hidden="true">→</span>{" "}
        <Badge tone="info">{target(r)}</Badge>
      </h2>
      <p className="meta">
        Requested by <strong>{r.requester}</strong> <Time ts={r.createTime} />
        {r.base && <> · {baseText(r)}</>}
      </p>
      {r.comment && <blockquote>{r.comment}</blockquote>}
      <p>
        Approvals: {r.approvals.length} of {r.requiredApprovals || 1}
        {r.approvals.map((a) => (
          <span key={a.reviewer} className="tag">
            ✓ {a.reviewer}
          </span>
        ))}
      </p>
      <Show loaded={context} what="policy checks">
        {({ checks, rule }) =>
          !rule ? (
            <p className="muted">No promotion policy covers this target.</p>
          ) : checks.length === 0 ? (
            <p className="muted">The policy requires no checks.</p>
          ) : (
            <ul className="checks" aria-label="policy checks">
              {checks.map((c) => (
                <li key={c.check} className={`check ${c.result}`}>
                  <Badge tone={c.result === "pass" ? "ok" : c.result === "fail" ? "bad" : undefined}>{c.result}</Badge> <code>{c.check}</code>{" "}
                  <span className="muted">{c.detail}</span>
                </li>
              ))}
            </ul>
          )
        }
      </Show>
      <div className="review">
        <label htmlFor={commentId}>Comment</label>
        <input id={commentId} value={comment} onChange={(e) => setComment(e.target.value)} placeholder="Why approve or reject?" />
        <div className="actions">
          <button
            type="button"
            className="primary"
            onClick={() => act("approve")}
            disabled={busy || own || alreadyApproved}
            aria-describedby={own ? selfId : undefined}
          >
            Approve
          </button>
          <button type="button" className="danger" onClick={() => act("reject")} disabled={busy || own}>
            Reject
          </button>
          {own && (
            <button type="button" onClick={() => act("cancel")} disabled={busy}>
              Cancel request
            </button>
          )}
        </div>
        {own && (
          <p id={selfId} className="self-approval" data-testid="self-approval">
            You requested this change, so you cannot approve or reject it: another reviewer must. (Four-eyes rule, enforced by the
            server too.)
          </p>
        )}
        {alreadyApproved && !own && <p className="muted">You already approved this request; it waits for more approvals.</p>}
      </div>
      {problem && <ErrorBox problem={problem} title="The registry refused this" />}
    </li>
  );
}
