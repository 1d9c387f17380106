"""The only place where protos and domain objects meet."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import duration_pb2, timestamp_pb2

from modelreg.lifecycle.v1 import (
    alias_pb2,
    deployment_pb2,
    policy_pb2,
    production_metric_pb2,
    stage_pb2,
    transition_request_pb2,
)
from modelreg_common.errors import InvalidArgument
from modelreg_lifecycle.domain import models
from modelreg_lifecycle.domain.names import policy_name
from modelreg_lifecycle.domain.policies import Policy, RuleDraft

_ACTIONS = {
    models.AliasAction.SET: alias_pb2.ALIAS_ACTION_SET,
    models.AliasAction.DELETE: alias_pb2.ALIAS_ACTION_DELETE,
    models.AliasAction.ROLLBACK: alias_pb2.ALIAS_ACTION_ROLLBACK,
}
_REQUEST_STATES = {
    models.RequestState.PENDING: transition_request_pb2.TRANSITION_REQUEST_STATE_PENDING,
    models.RequestState.APPLIED: transition_request_pb2.TRANSITION_REQUEST_STATE_APPLIED,
    models.RequestState.REJECTED: transition_request_pb2.TRANSITION_REQUEST_STATE_REJECTED,
    models.RequestState.CANCELLED: transition_request_pb2.TRANSITION_REQUEST_STATE_CANCELLED,
    models.RequestState.FAILED: transition_request_pb2.TRANSITION_REQUEST_STATE_FAILED,
}
_REQUEST_STATES_IN = {v: k for k, v in _REQUEST_STATES.items()}
_DEPLOYMENT_STATUSES = {
    models.DeploymentStatus.DEPLOYING: deployment_pb2.DEPLOYMENT_STATUS_DEPLOYING,
    models.DeploymentStatus.ACTIVE: deployment_pb2.DEPLOYMENT_STATUS_ACTIVE,
    models.DeploymentStatus.FAILED: deployment_pb2.DEPLOYMENT_STATUS_FAILED,
    models.DeploymentStatus.RETIRED: deployment_pb2.DEPLOYMENT_STATUS_RETIRED,
}
_DEPLOYMENT_STATUSES_IN = {v: k for k, v in _DEPLOYMENT_STATUSES.items()}


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def from_timestamp(value: timestamp_pb2.Timestamp, field: str) -> datetime:
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(field, f"not a valid timestamp: {exc}") from None


def etag(revision: int) -> str:
    return f'"{revision}"'


def parse_etag(value: str, field: str) -> int | None:
    if not value:
        return None
    stripped = value.strip('"')
    if not stripped.isdigit():
        raise InvalidArgument(field, f"not an etag this server issued: {value[:100]!r}")
    return int(stripped)


def alias(value: models.Alias) -> alias_pb2.Alias:
    return alias_pb2.Alias(
        name=value.name,
        version=value.version_name,
        version_number=value.version,
        updater=value.updater,
        update_time=timestamp(value.update_time),
        etag=etag(value.revision),
    )


def alias_history(entry: models.AliasHistoryEntry) -> alias_pb2.AliasHistoryEntry:
    def version(n: int | None) -> str:
        return f"models/{entry.model}/versions/{n}" if n is not None else ""

    return alias_pb2.AliasHistoryEntry(
        alias=f"models/{entry.model}/aliases/{entry.alias}",
        from_version=version(entry.from_version),
        to_version=version(entry.to_version),
        action=_ACTIONS[entry.action],
        actor=entry.actor,
        reason=entry.reason,
        time=timestamp(entry.time),
        request_id=entry.request_id,
        transition_request=entry.transition_request,
    )


def version_stage(value: models.VersionStage) -> stage_pb2.VersionStage:
    return stage_pb2.VersionStage(
        version=f"models/{value.model}/versions/{value.version}",
        stage=value.stage,
        updater=value.updater,
        update_time=timestamp(value.update_time),
    )


def stage_history(entry: models.StageHistoryEntry) -> stage_pb2.StageHistoryEntry:
    return stage_pb2.StageHistoryEntry(
        version=f"models/{entry.model}/versions/{entry.version}",
        from_stage=entry.from_stage,
        to_stage=entry.to_stage,
        actor=entry.actor,
        reason=entry.reason,
        time=timestamp(entry.time),
        request_id=entry.request_id,
        transition_request=entry.transition_request,
    )


def review(value: models.Review) -> transition_request_pb2.Review:
    return transition_request_pb2.Review(
        reviewer=value.reviewer, comment=value.comment, time=timestamp(value.time)
    )


def transition_request(value: models.TransitionRequest) -> transition_request_pb2.TransitionRequest:
    message = transition_request_pb2.TransitionRequest(
        name=value.name,
        version=value.version_name,
        comment=value.comment,
        state=_REQUEST_STATES[value.state],
        requester=value.requester,
        approvals=[review(a) for a in value.approvals],
        required_approvals=value.required_approvals,
        failure_reason=value.failure_reason,
        create_time=timestamp(value.create_time),
        update_time=timestamp(value.update_time),
        base=value.base,
        archive_existing_versions=value.archive_existing,
    )
    if value.target.kind is models.TargetKind.ALIAS:
        message.alias = value.target.name
    else:
        message.stage = value.target.name
    if value.closing_review is not None:
        message.closing_review.CopyFrom(review(value.closing_review))
    return message


def target(message: transition_request_pb2.TransitionRequest) -> models.Target | None:
    which = message.WhichOneof("target")
    if which == "alias":
        return models.Target(models.TargetKind.ALIAS, message.alias)
    if which == "stage":
        return models.Target(models.TargetKind.STAGE, message.stage)
    return None


def request_state(value: int) -> models.RequestState | None:
    if value == transition_request_pb2.TRANSITION_REQUEST_STATE_UNSPECIFIED:
        return None
    state: models.RequestState | None = _REQUEST_STATES_IN.get(value)  # type: ignore[call-overload]
    if state is None:
        raise InvalidArgument("state", f"unknown state {value}")
    return state


def policy(value: Policy) -> policy_pb2.Policy:
    return policy_pb2.Policy(
        name=policy_name(value.scope),
        rules=[
            policy_pb2.PolicyRule(
                aliases=list(r.aliases),
                stages=list(r.stages),
                protected=r.protected,
                required_approvals=r.required_approvals,
                approver_role=r.approver_role,
                checks=[c.text for c in r.checks],
            )
            for r in value.rules
        ],
        production_thresholds=[str(t) for t in value.thresholds],
        etag=etag(value.revision),
        updater=value.updater,
        update_time=timestamp(value.update_time),
    )


def rule_drafts(message: policy_pb2.Policy) -> list[RuleDraft]:
    return [
        RuleDraft(
            aliases=list(r.aliases),
            stages=list(r.stages),
            protected=r.protected,
            required_approvals=r.required_approvals,
            approver_role=r.approver_role,
            checks=list(r.checks),
        )
        for r in message.rules
    ]


def deployment(value: models.Deployment) -> deployment_pb2.Deployment:
    return deployment_pb2.Deployment(
        name=value.name,
        version=value.version_name,
        environment=value.environment,
        endpoint=value.endpoint,
        status=_DEPLOYMENT_STATUSES[value.status],
        recorder=value.recorder,
        create_time=timestamp(value.create_time),
        end_time=timestamp(value.end_time),
        lineage_node=value.lineage_node,
    )


def deployment_status(value: int) -> models.DeploymentStatus | None:
    status: models.DeploymentStatus | None = _DEPLOYMENT_STATUSES_IN.get(value)  # type: ignore[call-overload]
    return status


def duration_seconds(value: duration_pb2.Duration) -> float:
    return value.seconds + value.nanos / 1e9


def production_metric(value: models.RecordedMetric) -> production_metric_pb2.ProductionMetric:
    window = duration_pb2.Duration()
    window.FromNanoseconds(int(value.window_seconds * 1e9))
    return production_metric_pb2.ProductionMetric(
        version=f"models/{value.model}/versions/{value.version}",
        environment=value.environment,
        metric=value.metric,
        value=value.value,
        window=window,
        record_time=timestamp(value.record_time),
    )


def degradation(value: models.Degradation) -> production_metric_pb2.Degradation:
    return production_metric_pb2.Degradation(
        version=f"models/{value.model}/versions/{value.version}",
        environment=value.environment,
        metric=value.metric,
        threshold=value.threshold,
        value=value.value,
        start_time=timestamp(value.start_time),
        end_time=timestamp(value.end_time),
    )
