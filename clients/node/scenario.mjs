// A short end-to-end scenario from Node.js: register a model version, point an alias at it,
// resolve the alias, and receive the alias event on a Subscribe stream.
//   node scenario.mjs 127.0.0.1:50051 [model-name]
import { connect } from "./client.mjs";

const target = process.argv[2] ?? "127.0.0.1:50051";
const model = process.argv[3] ?? `node-${Date.now()}`;
const registry = connect(target, process.env.MODELREG_TOKEN);

function firstEvent(filter, afterSequence) {
  // Resolves with the first event matching `filter` after `afterSequence` on a Subscribe
  // stream. Subscribing from a known sequence (not from_now) cannot miss an event that is
  // published before the server has registered the stream.
  const stream = registry.EventService.Subscribe(
    { filter, after_sequence: afterSequence },
    registry.metadata,
  );
  const received = new Promise((resolve, reject) => {
    stream.on("data", (reply) => {
      resolve(reply.event);
      stream.cancel();
    });
    stream.on("error", (err) => {
      if (err.code !== 1 /* CANCELLED */) reject(err);
    });
  });
  return { stream, received };
}

const created = await registry.call("RegisteredModelService", "CreateRegisteredModel", {
  registered_model_id: model,
  registered_model: { description: "registered from Node.js" },
});
const version = await registry.call("ModelVersionService", "CreateModelVersion", {
  parent: created.registered_model.name,
  model_version: { source: "s3://bucket/node/model.onnx", tags: { client: "node" } },
});
const ready = await registry.call("ModelVersionService", "FinalizeModelVersion", {
  name: version.model_version.name,
});

// The newest event now: the alias event will come after it.
const newest = await registry.call("EventService", "ListEvents", {
  order_by: "sequence desc",
  page_size: 1,
});
const after = newest.events.length ? newest.events[0].sequence : "0";
// The alias event's subject is the version the alias now points at.
const subscription = firstEvent(
  `type = "model_version.alias_set" AND subject = "${ready.model_version.name}"`,
  after,
);
await registry.call("AliasService", "SetAlias", {
  name: `models/${model}/aliases/champion`,
  version: ready.model_version.name,
  reason: "node scenario",
});
const resolved = await registry.call("AliasService", "ResolveAlias", { name: `models:/${model}@champion` });
const event = await Promise.race([
  subscription.received,
  new Promise((_, reject) => setTimeout(() => reject(new Error("no event within 10 s")), 10000)),
]);

const result = {
  model: created.registered_model.name,
  version: ready.model_version.name,
  state: ready.model_version.state,
  resolved: resolved.model_version.name,
  event_type: event.type,
  event_subject: event.subject,
};
console.log(JSON.stringify(result));
process.exit(0);
