"""Thin servicers: proto in, domain call, proto out. Errors are raised as domain errors and
mapped by the runtime's interceptor."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from grpc import aio

from modelreg.lifecycle.v1 import (
    alias_service_pb2,
    alias_service_pb2_grpc,
    deployment_service_pb2,
    deployment_service_pb2_grpc,
    policy_service_pb2,
    policy_service_pb2_grpc,
    production_metric_service_pb2,
    production_metric_service_pb2_grpc,
    stage_service_pb2,
    stage_service_pb2_grpc,
    transition_request_pb2,
    transition_request_service_pb2,
    transition_request_service_pb2_grpc,
)
from modelreg.metadata.v1 import model_version_pb2
from modelreg_common import idempotency
from modelreg_common.errors import InvalidArgument
from modelreg_common.page_tokens import PageTokens, fingerprint, page_size
from modelreg_common.usage import ALIAS_RESOLUTION, UsageSink
from modelreg_lifecycle.domain.models import MetricValue, StageHistoryEntry
from modelreg_lifecycle.domain.ports import IdempotencyKey
from modelreg_lifecycle.domain.service import LifecycleService
from modelreg_lifecycle.transport import convert

Context = aio.ServicerContext[Any, Any]


def _idempotency_key(
    request_id: str, method: str, payload: bytes, encode: Callable[[Any], bytes]
) -> IdempotencyKey | None:
    if not request_id:
        return None
    if len(request_id) > 128:
        raise InvalidArgument("request_id", "at most 128 characters")
    return IdempotencyKey(request_id, method, idempotency.request_hash(payload), encode)


def _encode_request(created: Any) -> bytes:
    return transition_request_service_pb2.CreateTransitionRequestResponse(
        transition_request=convert.transition_request(created)
    ).SerializeToString()


def _encode_deployment(recorded: Any) -> bytes:
    return deployment_service_pb2.RecordDeploymentResponse(
        deployment=convert.deployment(recorded)
    ).SerializeToString()


def _int_key(last: list[Any] | None, field: str = "page_token") -> int | None:
    if last is None:
        return None
    if len(last) != 1 or not isinstance(last[0], int):
        raise InvalidArgument(field, "is not a token this server issued")
    return last[0]


def _time_key(last: list[Any] | None) -> tuple[datetime, str] | None:
    if last is None:
        return None
    try:
        return datetime.fromisoformat(str(last[0])), str(last[1])
    except (IndexError, ValueError):
        raise InvalidArgument("page_token", "is not a token this server issued") from None


class AliasServicer(alias_service_pb2_grpc.AliasServiceServicer):
    def __init__(
        self, service: LifecycleService, tokens: PageTokens, usage: UsageSink | None = None
    ) -> None:
        self._service = service
        self._tokens = tokens
        self._usage = usage

    async def SetAlias(
        self, request: alias_service_pb2.SetAliasRequest, context: Context
    ) -> alias_service_pb2.SetAliasResponse:
        expected = request.expected_version if request.HasField("expected_version") else None
        moved = await self._service.set_alias(
            request.name, request.version, expected, request.reason
        )
        return alias_service_pb2.SetAliasResponse(alias=convert.alias(moved))

    async def GetAlias(
        self, request: alias_service_pb2.GetAliasRequest, context: Context
    ) -> alias_service_pb2.GetAliasResponse:
        return alias_service_pb2.GetAliasResponse(
            alias=convert.alias(await self._service.get_alias(request.name))
        )

    async def DeleteAlias(
        self, request: alias_service_pb2.DeleteAliasRequest, context: Context
    ) -> alias_service_pb2.DeleteAliasResponse:
        expected = request.expected_version if request.HasField("expected_version") else None
        await self._service.delete_alias(request.name, expected, request.reason)
        return alias_service_pb2.DeleteAliasResponse()

    async def ListAliases(
        self, request: alias_service_pb2.ListAliasesRequest, context: Context
    ) -> alias_service_pb2.ListAliasesResponse:
        size = page_size(request.page_size)
        query = fingerprint("ListAliases", request.parent)
        last = self._tokens.decode(request.page_token, query)
        after = str(last[0]) if last else ""
        found = await self._service.list_aliases(request.parent, after, size + 1)
        page = found[:size]
        token = self._tokens.encode(query, [page[-1].alias]) if len(found) > size else ""
        return alias_service_pb2.ListAliasesResponse(
            aliases=[convert.alias(a) for a in page], next_page_token=token
        )

    async def ResolveAlias(
        self, request: alias_service_pb2.ResolveAliasRequest, context: Context
    ) -> alias_service_pb2.ResolveAliasResponse:
        at = (
            convert.from_timestamp(request.at_time, "at_time")
            if request.HasField("at_time")
            else None
        )
        alias, record = await self._service.resolve(request.name, at)
        version = model_version_pb2.ModelVersion.FromString(record)
        if self._usage is not None:
            self._usage.record(version.name, ALIAS_RESOLUTION)
        return alias_service_pb2.ResolveAliasResponse(model_version=version, alias=str(alias))

    async def ListAliasHistory(
        self, request: alias_service_pb2.ListAliasHistoryRequest, context: Context
    ) -> alias_service_pb2.ListAliasHistoryResponse:
        size = page_size(request.page_size)
        query = fingerprint("ListAliasHistory", request.name)
        before = _int_key(self._tokens.decode(request.page_token, query))
        found = await self._service.alias_history(request.name, before, size + 1)
        page = found[:size]
        token = self._tokens.encode(query, [page[-1].id]) if len(found) > size else ""
        return alias_service_pb2.ListAliasHistoryResponse(
            entries=[convert.alias_history(e) for e in page], next_page_token=token
        )

    async def RollbackAlias(
        self, request: alias_service_pb2.RollbackAliasRequest, context: Context
    ) -> alias_service_pb2.RollbackAliasResponse:
        result = await self._service.rollback(request.name, request.reason)
        response = alias_service_pb2.RollbackAliasResponse()
        if result.alias is not None:
            response.alias.CopyFrom(convert.alias(result.alias))
        if result.request is not None:
            response.transition_request.CopyFrom(convert.transition_request(result.request))
        return response


class StageServicer(stage_service_pb2_grpc.StageServiceServicer):
    def __init__(self, service: LifecycleService, tokens: PageTokens) -> None:
        self._service = service
        self._tokens = tokens

    async def TransitionStage(
        self, request: stage_service_pb2.TransitionStageRequest, context: Context
    ) -> stage_service_pb2.TransitionStageResponse:
        result = await self._service.transition_stage(
            request.name, request.stage, request.archive_existing_versions, request.reason
        )
        return stage_service_pb2.TransitionStageResponse(
            version_stage=convert.version_stage(result.stage),
            archived=[convert.version_stage(s) for s in result.archived],
        )

    async def GetVersionStage(
        self, request: stage_service_pb2.GetVersionStageRequest, context: Context
    ) -> stage_service_pb2.GetVersionStageResponse:
        return stage_service_pb2.GetVersionStageResponse(
            version_stage=convert.version_stage(await self._service.get_stage(request.name))
        )

    async def ListVersionStages(
        self, request: stage_service_pb2.ListVersionStagesRequest, context: Context
    ) -> stage_service_pb2.ListVersionStagesResponse:
        found = await self._service.list_stages(request.parent)
        return stage_service_pb2.ListVersionStagesResponse(
            stages=list(self._service.stages.stages),
            version_stages=[convert.version_stage(s) for s in found],
        )

    async def ListStageHistory(
        self, request: stage_service_pb2.ListStageHistoryRequest, context: Context
    ) -> stage_service_pb2.ListStageHistoryResponse:
        size = page_size(request.page_size)
        query = fingerprint("ListStageHistory", request.parent)
        before = _int_key(self._tokens.decode(request.page_token, query))
        found = await self._service.stage_history(request.parent, before, size + 1)
        page = [e for e in found[:size] if isinstance(e, StageHistoryEntry)]
        token = self._tokens.encode(query, [page[-1].id]) if len(found) > size else ""
        return stage_service_pb2.ListStageHistoryResponse(
            entries=[convert.stage_history(e) for e in page], next_page_token=token
        )


class PolicyServicer(policy_service_pb2_grpc.PolicyServiceServicer):
    def __init__(self, service: LifecycleService) -> None:
        self._service = service

    async def SetPolicy(
        self, request: policy_service_pb2.SetPolicyRequest, context: Context
    ) -> policy_service_pb2.SetPolicyResponse:
        policy = request.policy
        saved = await self._service.set_policy(
            policy.name,
            convert.rule_drafts(policy),
            list(policy.production_thresholds),
            convert.parse_etag(policy.etag, "policy.etag"),
        )
        return policy_service_pb2.SetPolicyResponse(policy=convert.policy(saved))

    async def GetPolicy(
        self, request: policy_service_pb2.GetPolicyRequest, context: Context
    ) -> policy_service_pb2.GetPolicyResponse:
        return policy_service_pb2.GetPolicyResponse(
            policy=convert.policy(await self._service.get_policy(request.name))
        )

    async def DeletePolicy(
        self, request: policy_service_pb2.DeletePolicyRequest, context: Context
    ) -> policy_service_pb2.DeletePolicyResponse:
        await self._service.delete_policy(request.name)
        return policy_service_pb2.DeletePolicyResponse()


_CREATE_REQUEST = "/modelreg.lifecycle.v1.TransitionRequestService/CreateTransitionRequest"
_RECORD_DEPLOYMENT = "/modelreg.lifecycle.v1.DeploymentService/RecordDeployment"


class TransitionRequestServicer(
    transition_request_service_pb2_grpc.TransitionRequestServiceServicer
):
    def __init__(self, service: LifecycleService, tokens: PageTokens) -> None:
        self._service = service
        self._tokens = tokens

    async def CreateTransitionRequest(
        self,
        request: transition_request_service_pb2.CreateTransitionRequestRequest,
        context: Context,
    ) -> transition_request_service_pb2.CreateTransitionRequestResponse:
        draft = request.transition_request
        key = _idempotency_key(
            request.request_id,
            _CREATE_REQUEST,
            request.SerializeToString(deterministic=True),
            _encode_request,
        )
        created = await self._service.create_request(
            request.parent,
            draft.version,
            convert.target(draft),
            draft.comment,
            key,
            archive_existing=draft.archive_existing_versions,
        )
        if isinstance(created, bytes):
            return transition_request_service_pb2.CreateTransitionRequestResponse.FromString(
                created
            )
        return transition_request_service_pb2.CreateTransitionRequestResponse(
            transition_request=convert.transition_request(created)
        )

    async def GetTransitionRequest(
        self, request: transition_request_service_pb2.GetTransitionRequestRequest, context: Context
    ) -> transition_request_service_pb2.GetTransitionRequestResponse:
        found = await self._service.get_request(request.name)
        return transition_request_service_pb2.GetTransitionRequestResponse(
            transition_request=convert.transition_request(found)
        )

    async def ListTransitionRequests(
        self,
        request: transition_request_service_pb2.ListTransitionRequestsRequest,
        context: Context,
    ) -> transition_request_service_pb2.ListTransitionRequestsResponse:
        size = page_size(request.page_size)
        state = convert.request_state(request.state)
        query = fingerprint("ListTransitionRequests", request.parent, request.state)
        before = _time_key(self._tokens.decode(request.page_token, query))
        found = await self._service.list_requests(request.parent, state, before, size + 1)
        page = found[:size]
        token = (
            self._tokens.encode(query, [page[-1].create_time.isoformat(), page[-1].id])
            if len(found) > size
            else ""
        )
        return transition_request_service_pb2.ListTransitionRequestsResponse(
            transition_requests=[convert.transition_request(r) for r in page],
            next_page_token=token,
        )

    async def ApproveTransitionRequest(
        self,
        request: transition_request_service_pb2.ApproveTransitionRequestRequest,
        context: Context,
    ) -> transition_request_service_pb2.ApproveTransitionRequestResponse:
        result = await self._service.approve(request.name, request.comment)
        return transition_request_service_pb2.ApproveTransitionRequestResponse(
            transition_request=convert.transition_request(result)
        )

    async def RejectTransitionRequest(
        self,
        request: transition_request_service_pb2.RejectTransitionRequestRequest,
        context: Context,
    ) -> transition_request_service_pb2.RejectTransitionRequestResponse:
        result = await self._service.reject(request.name, request.comment)
        return transition_request_service_pb2.RejectTransitionRequestResponse(
            transition_request=convert.transition_request(result)
        )

    async def CancelTransitionRequest(
        self,
        request: transition_request_service_pb2.CancelTransitionRequestRequest,
        context: Context,
    ) -> transition_request_service_pb2.CancelTransitionRequestResponse:
        result = await self._service.cancel(request.name, request.comment)
        return transition_request_service_pb2.CancelTransitionRequestResponse(
            transition_request=convert.transition_request(result)
        )


class DeploymentServicer(deployment_service_pb2_grpc.DeploymentServiceServicer):
    def __init__(self, service: LifecycleService, tokens: PageTokens) -> None:
        self._service = service
        self._tokens = tokens

    async def RecordDeployment(
        self, request: deployment_service_pb2.RecordDeploymentRequest, context: Context
    ) -> deployment_service_pb2.RecordDeploymentResponse:
        draft = request.deployment
        key = _idempotency_key(
            request.request_id,
            _RECORD_DEPLOYMENT,
            request.SerializeToString(deterministic=True),
            _encode_deployment,
        )
        recorded = await self._service.record_deployment(
            request.parent,
            draft.version,
            draft.environment,
            draft.endpoint,
            convert.deployment_status(draft.status),
            key,
        )
        if isinstance(recorded, bytes):
            return deployment_service_pb2.RecordDeploymentResponse.FromString(recorded)
        return deployment_service_pb2.RecordDeploymentResponse(
            deployment=convert.deployment(recorded)
        )

    async def ListDeployments(
        self, request: deployment_service_pb2.ListDeploymentsRequest, context: Context
    ) -> deployment_service_pb2.ListDeploymentsResponse:
        size = page_size(request.page_size)
        query = fingerprint(
            "ListDeployments", request.parent, request.environment, request.current_only
        )
        before = _time_key(self._tokens.decode(request.page_token, query))
        found = await self._service.list_deployments(
            request.parent, request.environment, request.current_only, before, size + 1
        )
        page = found[:size]
        token = (
            self._tokens.encode(query, [page[-1].create_time.isoformat(), page[-1].id])
            if len(found) > size
            else ""
        )
        return deployment_service_pb2.ListDeploymentsResponse(
            deployments=[convert.deployment(d) for d in page], next_page_token=token
        )


class ProductionMetricServicer(production_metric_service_pb2_grpc.ProductionMetricServiceServicer):
    def __init__(self, service: LifecycleService, tokens: PageTokens) -> None:
        self._service = service
        self._tokens = tokens

    async def RecordProductionMetrics(
        self,
        request: production_metric_service_pb2.RecordProductionMetricsRequest,
        context: Context,
    ) -> production_metric_service_pb2.RecordProductionMetricsResponse:
        values = [
            MetricValue(m.metric, m.value, convert.duration_seconds(m.window))
            for m in request.metrics
        ]
        recorded, opened = await self._service.record_metrics(
            request.version, request.environment, values
        )
        return production_metric_service_pb2.RecordProductionMetricsResponse(
            metrics=[convert.production_metric(m) for m in recorded],
            opened=[convert.degradation(d) for d in opened],
        )

    async def ListDegradations(
        self, request: production_metric_service_pb2.ListDegradationsRequest, context: Context
    ) -> production_metric_service_pb2.ListDegradationsResponse:
        size = page_size(request.page_size)
        query = fingerprint("ListDegradations", request.parent, request.open_only)
        before = _int_key(self._tokens.decode(request.page_token, query))
        found = await self._service.list_degradations(
            request.parent, request.open_only, before, size + 1
        )
        page = found[:size]
        token = self._tokens.encode(query, [page[-1].id]) if len(found) > size else ""
        return production_metric_service_pb2.ListDegradationsResponse(
            degradations=[convert.degradation(d) for d in page], next_page_token=token
        )


SERVICE_NAMES = [
    alias_service_pb2.DESCRIPTOR.services_by_name["AliasService"].full_name,
    stage_service_pb2.DESCRIPTOR.services_by_name["StageService"].full_name,
    policy_service_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name,
    transition_request_service_pb2.DESCRIPTOR.services_by_name[
        "TransitionRequestService"
    ].full_name,
    deployment_service_pb2.DESCRIPTOR.services_by_name["DeploymentService"].full_name,
    production_metric_service_pb2.DESCRIPTOR.services_by_name["ProductionMetricService"].full_name,
]

__all__ = ["SERVICE_NAMES", "transition_request_pb2"]
