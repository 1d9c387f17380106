"""The only place where protobuf messages and domain objects meet."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from modelreg.metadata.v1 import (
    access_pb2,
    experiment_pb2,
    lineage_pb2,
    model_version_pb2,
    registered_model_pb2,
    run_pb2,
    signature_pb2,
)
from modelreg_common.access import Role
from modelreg_common.context import current_call
from modelreg_common.errors import InvalidArgument
from modelreg_common.idempotency import request_hash
from modelreg_metadata.domain import models as m
from modelreg_metadata.domain.common import etag

_MIN_SECONDS, _MAX_SECONDS = -62135596800, 253402300799  # 0001-01-01 .. 9999-12-31


def ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def from_ts(stamp: Timestamp, field: str) -> datetime:
    if not _MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS or not 0 <= stamp.nanos < 10**9:
        raise InvalidArgument(field, "timestamp out of range")
    return stamp.ToDatetime(tzinfo=UTC)


def idempotency_key(request_id: str, request: Message) -> m.IdempotencyKey | None:
    if not request_id:
        return None
    call = current_call()
    method = call.method if call is not None else type(request).__name__
    return m.IdempotencyKey(
        request_id, method, request_hash(request.SerializeToString(deterministic=True))
    )


# --- signatures ---------------------------------------------------------------------------


def _field_from(proto: signature_pb2.SignatureField) -> m.SignatureField:
    known = proto.type in _DATA_TYPES
    type_name = signature_pb2.DataType.Name(proto.type) if known else "DATA_TYPE_UNKNOWN"
    return m.SignatureField(
        name=proto.name,
        type=type_name.removeprefix("DATA_TYPE_"),
        shape=tuple(proto.shape),
        optional=proto.optional,
        default_value=proto.default_value,
    )


_DATA_TYPES = frozenset(signature_pb2.DataType.values())


def signature_from(proto: signature_pb2.ModelSignature) -> m.Signature:
    return m.Signature(
        inputs=tuple(_field_from(f) for f in proto.inputs),
        outputs=tuple(_field_from(f) for f in proto.outputs),
        params=tuple(_field_from(f) for f in proto.params),
    )


def _field_to(field: m.SignatureField) -> signature_pb2.SignatureField:
    return signature_pb2.SignatureField(
        name=field.name,
        type=signature_pb2.DataType.Value(f"DATA_TYPE_{field.type}"),
        shape=list(field.shape),
        optional=field.optional,
        default_value=field.default_value,
    )


def signature_to(signature: m.Signature) -> signature_pb2.ModelSignature:
    return signature_pb2.ModelSignature(
        inputs=[_field_to(f) for f in signature.inputs],
        outputs=[_field_to(f) for f in signature.outputs],
        params=[_field_to(f) for f in signature.params],
    )


# --- registered models and versions -------------------------------------------------------


def registered_model_to(model: m.RegisteredModel) -> registered_model_pb2.RegisteredModel:
    return registered_model_pb2.RegisteredModel(
        name=model.resource_name,
        description=model.description,
        tags=dict(model.tags),
        created_by=model.created_by,
        create_time=ts(model.create_time),
        update_time=ts(model.update_time),
        latest_version=model.latest_version,
        etag=etag(model.revision),
    )


_STATE_TO = {
    m.VersionState.PENDING_REGISTRATION: model_version_pb2.MODEL_VERSION_STATE_PENDING_REGISTRATION,
    m.VersionState.READY: model_version_pb2.MODEL_VERSION_STATE_READY,
    m.VersionState.FAILED_REGISTRATION: model_version_pb2.MODEL_VERSION_STATE_FAILED_REGISTRATION,
}


def model_version_to(version: m.ModelVersion) -> model_version_pb2.ModelVersion:
    return model_version_pb2.ModelVersion(
        name=version.resource_name,
        state=_STATE_TO[version.state],
        run=version.run,
        tags=dict(version.tags),
        signature=signature_to(version.signature),
        artifact_digest=version.artifact_digest,
        description=version.description,
        source=version.source,
        model_format=version.model_format,
        framework=version.framework,
        created_by=version.created_by,
        create_time=ts(version.create_time),
        update_time=ts(version.update_time),
        version=version.version,
        etag=etag(version.revision),
        artifact_file_count=version.artifact_file_count,
        artifact_size_bytes=version.artifact_size_bytes,
        status_message=version.status_message,
    )


def model_version_draft(proto: model_version_pb2.ModelVersion) -> m.ModelVersionDraft:
    return m.ModelVersionDraft(
        description=proto.description,
        tags=dict(proto.tags),
        run=proto.run,
        source=proto.source,
        model_format=proto.model_format,
        framework=proto.framework,
        signature=signature_from(proto.signature),
    )


# --- experiments and runs -----------------------------------------------------------------

_EXPERIMENT_STATE = {
    m.ExperimentState.ACTIVE: experiment_pb2.EXPERIMENT_STATE_ACTIVE,
    m.ExperimentState.DELETED: experiment_pb2.EXPERIMENT_STATE_DELETED,
}


def experiment_to(experiment: m.Experiment) -> experiment_pb2.Experiment:
    return experiment_pb2.Experiment(
        name=experiment.resource_name,
        description=experiment.description,
        tags=dict(experiment.tags),
        state=_EXPERIMENT_STATE[experiment.state],
        created_by=experiment.created_by,
        create_time=ts(experiment.create_time),
        update_time=ts(experiment.update_time),
        etag=etag(experiment.revision),
    )


_RUN_STATUS_TO = {
    m.RunStatus.RUNNING: run_pb2.RUN_STATUS_RUNNING,
    m.RunStatus.FINISHED: run_pb2.RUN_STATUS_FINISHED,
    m.RunStatus.FAILED: run_pb2.RUN_STATUS_FAILED,
    m.RunStatus.KILLED: run_pb2.RUN_STATUS_KILLED,
}
_RUN_STATUS_FROM: dict[int, m.RunStatus] = {int(v): k for k, v in _RUN_STATUS_TO.items()}


def run_status_from(value: int, field: str) -> m.RunStatus | None:
    if value == run_pb2.RUN_STATUS_UNSPECIFIED:
        return None
    status = _RUN_STATUS_FROM.get(int(value))
    if status is None:
        raise InvalidArgument(field, f"unknown run status {value}")
    return status


def dataset_from(proto: run_pb2.DatasetInput) -> m.DatasetInput:
    return m.DatasetInput(
        name=proto.name,
        digest=proto.digest,
        source_uri=proto.source_uri,
        schema=proto.schema,
        context=proto.context,
    )


def dataset_to(dataset: m.DatasetInput) -> run_pb2.DatasetInput:
    return run_pb2.DatasetInput(
        name=dataset.name,
        digest=dataset.digest,
        source_uri=dataset.source_uri,
        schema=dataset.schema,
        context=dataset.context,
        lineage_node=dataset.lineage_node,
    )


def metric_from(proto: run_pb2.Metric, field: str) -> m.MetricPoint:
    stamp = from_ts(proto.timestamp, f"{field}.timestamp") if proto.HasField("timestamp") else None
    return m.MetricPoint(proto.key, proto.value, proto.step, stamp)


def metric_to(point: m.MetricPoint) -> run_pb2.Metric:
    return run_pb2.Metric(
        key=point.key, value=point.value, step=point.step, timestamp=ts(point.timestamp)
    )


def run_draft(proto: run_pb2.Run, field: str = "run") -> m.RunDraft:
    return m.RunDraft(
        display_name=proto.display_name,
        status=run_status_from(proto.status, f"{field}.status"),
        start_time=from_ts(proto.start_time, f"{field}.start_time")
        if proto.HasField("start_time")
        else None,
        end_time=from_ts(proto.end_time, f"{field}.end_time")
        if proto.HasField("end_time")
        else None,
        params=dict(proto.params),
        tags=dict(proto.tags),
        inputs=tuple(dataset_from(d) for d in proto.inputs),
        code=m.CodeVersion(
            repository_url=proto.code.repository_url,
            commit=proto.code.commit,
            entry_point=proto.code.entry_point,
        ),
    )


def run_to(run: m.Run) -> run_pb2.Run:
    return run_pb2.Run(
        name=run.resource_name,
        display_name=run.display_name,
        status=_RUN_STATUS_TO[run.status],
        start_time=ts(run.start_time),
        end_time=ts(run.end_time),
        params=dict(run.params),
        latest_metrics=dict(run.latest_metrics),
        tags=dict(run.tags),
        inputs=[dataset_to(d) for d in run.inputs],
        code=run_pb2.CodeVersion(
            repository_url=run.code.repository_url,
            commit=run.code.commit,
            entry_point=run.code.entry_point,
        ),
        created_by=run.created_by,
        create_time=ts(run.create_time),
        update_time=ts(run.update_time),
        etag=etag(run.revision),
    )


# --- lineage ------------------------------------------------------------------------------

_DIRECTION: dict[int, m.Direction] = {
    lineage_pb2.LINEAGE_DIRECTION_UNSPECIFIED: m.Direction.BOTH,
    lineage_pb2.LINEAGE_DIRECTION_BOTH: m.Direction.BOTH,
    lineage_pb2.LINEAGE_DIRECTION_UPSTREAM: m.Direction.UPSTREAM,
    lineage_pb2.LINEAGE_DIRECTION_DOWNSTREAM: m.Direction.DOWNSTREAM,
}


def direction_from(value: int) -> m.Direction:
    direction = _DIRECTION.get(int(value))
    if direction is None:
        raise InvalidArgument("direction", f"unknown direction {value}")
    return direction


def node_type_from(value: int, field: str) -> m.NodeType:
    if value == lineage_pb2.LINEAGE_NODE_TYPE_UNSPECIFIED or value not in _NODE_TYPES:
        raise InvalidArgument(field, "must be a LineageNodeType other than UNSPECIFIED")
    name = lineage_pb2.LineageNodeType.Name(lineage_pb2.LineageNodeType.ValueType(value))
    return m.NodeType(name.removeprefix("LINEAGE_NODE_TYPE_"))


_NODE_TYPES = frozenset(lineage_pb2.LineageNodeType.values())
_EDGE_TYPES = frozenset(lineage_pb2.LineageEdgeType.values())


def edge_type_from(value: int, field: str) -> m.EdgeType:
    if value == lineage_pb2.LINEAGE_EDGE_TYPE_UNSPECIFIED or value not in _EDGE_TYPES:
        raise InvalidArgument(field, "must be a LineageEdgeType other than UNSPECIFIED")
    name = lineage_pb2.LineageEdgeType.Name(lineage_pb2.LineageEdgeType.ValueType(value))
    return m.EdgeType(name.removeprefix("LINEAGE_EDGE_TYPE_"))


def node_from(proto: lineage_pb2.LineageNode, field: str) -> m.LineageNode:
    return m.LineageNode(
        name=proto.name,
        type=node_type_from(proto.type, f"{field}.type"),
        display_name=proto.display_name,
        properties=dict(proto.properties),
    )


def edge_from(proto: lineage_pb2.LineageEdge, field: str) -> m.LineageEdge:
    return m.LineageEdge(
        source=proto.source,
        target=proto.target,
        type=edge_type_from(proto.type, f"{field}.type"),
        properties=dict(proto.properties),
    )


def node_to(node: m.LineageNode) -> lineage_pb2.LineageNode:
    return lineage_pb2.LineageNode(
        name=node.name,
        type=lineage_pb2.LineageNodeType.Value(f"LINEAGE_NODE_TYPE_{node.type.value}"),
        display_name=node.display_name or node.name,
        properties=dict(node.properties),
        create_time=ts(node.create_time),
    )


def edge_to(edge: m.LineageEdge) -> lineage_pb2.LineageEdge:
    return lineage_pb2.LineageEdge(
        source=edge.source,
        target=edge.target,
        type=lineage_pb2.LineageEdgeType.Value(f"LINEAGE_EDGE_TYPE_{edge.type.value}"),
        properties=dict(edge.properties),
        create_time=ts(edge.create_time),
    )


# --- API keys and IAM policies ------------------------------------------------------------

_ROLES = frozenset(int(r) for r in Role)


def api_key_draft(proto: access_pb2.ApiKey) -> m.ApiKeyDraft:
    return m.ApiKeyDraft(
        display_name=proto.display_name,
        principal=proto.principal,
        groups=tuple(proto.groups),
        expire_time=(
            from_ts(proto.expire_time, "api_key.expire_time")
            if proto.HasField("expire_time")
            else None
        ),
    )


def api_key_to(key: m.ApiKey) -> access_pb2.ApiKey:
    return access_pb2.ApiKey(
        name=key.resource_name,
        display_name=key.display_name,
        principal=key.principal,
        groups=list(key.groups),
        created_by=key.created_by,
        create_time=ts(key.create_time),
        expire_time=ts(key.expire_time),
        revoke_time=ts(key.revoke_time),
        secret_prefix=key.secret_prefix,
    )


def role_to(role: Role) -> access_pb2.Role.ValueType:
    return access_pb2.Role.ValueType(role)


def bindings_from(proto: access_pb2.IamPolicy) -> list[m.Binding]:
    bindings = []
    for i, binding in enumerate(proto.bindings):
        if binding.role not in _ROLES:
            raise InvalidArgument(f"policy.bindings[{i}].role", f"unknown role {binding.role}")
        bindings.append(m.Binding(Role(binding.role), tuple(binding.members)))
    return bindings


def policy_to(policy: m.IamPolicy) -> access_pb2.IamPolicy:
    return access_pb2.IamPolicy(
        resource=policy.resource,
        bindings=[
            access_pb2.Binding(role=role_to(b.role), members=list(b.members))
            for b in policy.bindings
        ],
        etag=etag(policy.revision),
        update_time=ts(policy.update_time),
        updated_by=policy.updated_by,
    )


def model_roles_to(roles: Mapping[str, Role]) -> list[access_pb2.ModelRole]:
    return [
        access_pb2.ModelRole(model=f"models/{model}", role=role_to(role))
        for model, role in sorted(roles.items())
    ]
