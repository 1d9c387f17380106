// A Node.js client for modelreg, generated at run time from the same protos/ as every other
// client: @grpc/proto-loader reads the .proto files, @grpc/grpc-js makes the calls.
import { fileURLToPath } from "node:url";
import path from "node:path";
import fs from "node:fs";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const protoRoot = path.resolve(here, "../../protos");

function serviceFiles() {
  const files = [];
  for (const pkg of ["metadata", "artifact", "lifecycle", "events"]) {
    const dir = path.join(protoRoot, "modelreg", pkg, "v1");
    for (const name of fs.readdirSync(dir)) {
      if (name.endsWith("_service.proto")) files.push(path.join("modelreg", pkg, "v1", name));
    }
  }
  return files;
}

const definition = protoLoader.loadSync(serviceFiles(), {
  includeDirs: [protoRoot],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
export const modelreg = grpc.loadPackageDefinition(definition).modelreg;

// One stub per service, all on the same target (the embedded server or a mesh route).
export function connect(target, token) {
  const credentials = grpc.credentials.createInsecure();
  const stubs = {};
  for (const [pkg, services] of Object.entries({
    metadata: ["RegisteredModelService", "ModelVersionService", "RunService", "ExperimentService", "LineageService"],
    artifact: ["ArtifactService"],
    lifecycle: ["AliasService", "StageService", "TransitionRequestService", "DeploymentService", "PolicyService"],
    events: ["EventService", "WebhookService"],
  })) {
    for (const service of services) {
      const Client = modelreg[pkg].v1[service];
      if (Client) stubs[service] = new Client(target, credentials);
    }
  }
  const metadata = new grpc.Metadata();
  if (token) metadata.set("authorization", `Bearer ${token}`);
  // call("ModelVersionService", "GetModelVersion", {name}) -> Promise of the response.
  stubs.call = (service, method, request, timeoutMs = 10000) =>
    new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + timeoutMs);
      stubs[service][method](request, metadata, { deadline }, (err, reply) =>
        err ? reject(err) : resolve(reply),
      );
    });
  stubs.metadata = metadata;
  return stubs;
}
