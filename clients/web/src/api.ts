// The browser's way to the registry: clients generated from protos/ (src/gen), over grpc-web
// to the gateway in `modelreg serve`, which forwards each call to the same gRPC servicers.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import type { DescService } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb";
import { RegisteredModelService } from "./gen/modelreg/metadata/v1/registered_model_service_pb";
import { ModelVersionService } from "./gen/modelreg/metadata/v1/model_version_service_pb";
import { LineageService } from "./gen/modelreg/metadata/v1/lineage_service_pb";
import { RunService } from "./gen/modelreg/metadata/v1/run_service_pb";
import { ArtifactService } from "./gen/modelreg/artifact/v1/artifact_service_pb";
import { AliasService } from "./gen/modelreg/lifecycle/v1/alias_service_pb";
import { StageService } from "./gen/modelreg/lifecycle/v1/stage_service_pb";
import { TransitionRequestService } from "./gen/modelreg/lifecycle/v1/transition_request_service_pb";
import { PolicyService } from "./gen/modelreg/lifecycle/v1/policy_service_pb";
import { DeploymentService } from "./gen/modelreg/lifecycle/v1/deployment_service_pb";
import { ProductionMetricService } from "./gen/modelreg/lifecycle/v1/production_metric_service_pb";
import { EventService } from "./gen/modelreg/events/v1/event_service_pb";
import { WebhookService } from "./gen/modelreg/events/v1/webhook_service_pb";

const TOKEN_KEY = "modelreg.token";

// sessionStorage: the token lives as long as the tab, never on disk across browser restarts.
export function getToken(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

export function setToken(token: string): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function authHeaders(): Record<string, string> {
  const token = getToken();
  return token ? { authorization: `Bearer ${token}` } : {};
}

const withToken: Interceptor = (next) => async (req) => {
  const token = getToken();
  if (token) req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};

const transport = createGrpcWebTransport({
  baseUrl: window.location.origin,
  interceptors: [withToken],
  defaultTimeoutMs: 30_000,
});

function client<T extends DescService>(service: T): Client<T> {
  return createClient(service, transport);
}

export const api = {
  models: client(RegisteredModelService),
  versions: client(ModelVersionService),
  lineage: client(LineageService),
  runs: client(RunService),
  artifacts: client(ArtifactService),
  aliases: client(AliasService),
  stages: client(StageService),
  requests: client(TransitionRequestService),
  policies: client(PolicyService),
  deployments: client(DeploymentService),
  metrics: client(ProductionMetricService),
  events: client(EventService),
  webhooks: client(WebhookService),
};

export type Principal = { subject: string; groups: string[]; method: string };

/** Who the current token (or local mode, without one) stands for; null when refused. */
export async function whoami(token = getToken()): Promise<Principal | { error: string }> {
  const response = await fetch("/whoami", {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  const body = await response.json();
  if (!response.ok) return { error: body.message ?? `HTTP ${response.status}` };
  return body as Principal;
}

export type FieldProblem = { field: string; description: string };

/** An error as a person can act on it: the code, what went wrong, which field, and why. */
export type Problem = {
  code: string;
  message: string;
  reason: string;
  metadata: Record<string, string>;
  fields: FieldProblem[];
};

export function describeError(error: unknown): Problem {
  const err = ConnectError.from(error);
  const info = err.findDetails(ErrorInfoSchema)[0];
  const fields = err
    .findDetails(BadRequestSchema)
    .flatMap((bad) => bad.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
  return {
    code: Code[err.code] ?? String(err.code),
    message: err.rawMessage,
    reason: info?.reason ?? "",
    metadata: info ? { ...info.metadata } : {},
    fields,
  };
}

export function isCode(error: unknown, code: Code): boolean {
  return ConnectError.from(error).code === code;
}

export { Code };

export function date(ts: Timestamp | undefined): Date | undefined {
  return ts ? timestampDate(ts) : undefined;
}

/** `models/fraud/versions/3` -> { model: "fraud", version: "3" } */
export function parseVersionName(name: string): { model: string; version: string } | undefined {
  const m = /^models\/([^/]+)\/versions\/([^/]+)$/.exec(name);
  return m ? { model: m[1], version: m[2] } : undefined;
}

export function modelId(name: string): string {
  return name.startsWith("models/") ? name.slice("models/".length) : name;
}

export function quoteFilter(value: string): string {
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

export function formatBytes(n: bigint | number): string {
  let value = Number(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return i === 0 ? `${value} B` : `${value.toFixed(1)} ${units[i]}`;
}

export function downloadUrl(owner: string, path: string): string {
  return `/download?${new URLSearchParams({ owner, path })}`;
}
