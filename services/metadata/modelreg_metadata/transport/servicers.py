"""gRPC servicers: proto in, domain call, proto out. Errors are domain errors, mapped by the
runtime's interceptor."""

from __future__ import annotations

from typing import Any

from grpc import aio

from modelreg.metadata.v1 import (
    access_service_pb2 as acs,
)
from modelreg.metadata.v1 import (
    access_service_pb2_grpc as acs_grpc,
)
from modelreg.metadata.v1 import (
    experiment_service_pb2 as es,
)
from modelreg.metadata.v1 import (
    experiment_service_pb2_grpc as es_grpc,
)
from modelreg.metadata.v1 import (
    lineage_service_pb2 as ls,
)
from modelreg.metadata.v1 import (
    lineage_service_pb2_grpc as ls_grpc,
)
from modelreg.metadata.v1 import (
    model_version_service_pb2 as mvs,
)
from modelreg.metadata.v1 import (
    model_version_service_pb2_grpc as mvs_grpc,
)
from modelreg.metadata.v1 import (
    registered_model_service_pb2 as rms,
)
from modelreg.metadata.v1 import (
    registered_model_service_pb2_grpc as rms_grpc,
)
from modelreg.metadata.v1 import (
    run_service_pb2 as rs,
)
from modelreg.metadata.v1 import (
    run_service_pb2_grpc as rs_grpc,
)
from modelreg_metadata.domain.access import AccessService
from modelreg_metadata.domain.experiments import ExperimentService
from modelreg_metadata.domain.lineage import LineageService
from modelreg_metadata.domain.model_versions import ModelVersionService
from modelreg_metadata.domain.models import ExperimentState, ListQuery
from modelreg_metadata.domain.registered_models import RegisteredModelService
from modelreg_metadata.domain.runs import RunService
from modelreg_metadata.transport import convert

Ctx = aio.ServicerContext[Any, Any]


def _query(request: Any) -> ListQuery:
    return ListQuery(
        filter=request.filter,
        order_by=request.order_by,
        page_size=request.page_size,
        page_token=request.page_token,
    )


class RegisteredModelServicer(rms_grpc.RegisteredModelServiceServicer):
    def __init__(self, service: RegisteredModelService) -> None:
        self._service = service

    async def CreateRegisteredModel(
        self, request: rms.CreateRegisteredModelRequest, context: Ctx
    ) -> rms.CreateRegisteredModelResponse:
        model = await self._service.create(
            request.registered_model_id,
            request.registered_model.description,
            dict(request.registered_model.tags),
            convert.idempotency_key(request.request_id, request),
        )
        return rms.CreateRegisteredModelResponse(
            registered_model=convert.registered_model_to(model)
        )

    async def GetRegisteredModel(
        self, request: rms.GetRegisteredModelRequest, context: Ctx
    ) -> rms.GetRegisteredModelResponse:
        model = await self._service.get(request.name)
        return rms.GetRegisteredModelResponse(registered_model=convert.registered_model_to(model))

    async def ListRegisteredModels(
        self, request: rms.ListRegisteredModelsRequest, context: Ctx
    ) -> rms.ListRegisteredModelsResponse:
        page = await self._service.search(_query(request))
        return rms.ListRegisteredModelsResponse(
            registered_models=[convert.registered_model_to(m) for m in page.items],
            next_page_token=page.next_page_token,
        )

    async def SearchRegisteredModels(
        self, request: rms.SearchRegisteredModelsRequest, context: Ctx
    ) -> rms.SearchRegisteredModelsResponse:
        page = await self._service.search(_query(request))
        return rms.SearchRegisteredModelsResponse(
            registered_models=[convert.registered_model_to(m) for m in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateRegisteredModel(
        self, request: rms.UpdateRegisteredModelRequest, context: Ctx
    ) -> rms.UpdateRegisteredModelResponse:
        body = request.registered_model
        model = await self._service.update(
            body.name,
            body.etag,
            list(request.update_mask.paths),
            body.description,
            dict(body.tags),
        )
        return rms.UpdateRegisteredModelResponse(
            registered_model=convert.registered_model_to(model)
        )

    async def RenameRegisteredModel(
        self, request: rms.RenameRegisteredModelRequest, context: Ctx
    ) -> rms.RenameRegisteredModelResponse:
        model = await self._service.rename(
            request.name, request.new_registered_model_id, request.etag
        )
        return rms.RenameRegisteredModelResponse(
            registered_model=convert.registered_model_to(model)
        )

    async def DeleteRegisteredModel(
        self, request: rms.DeleteRegisteredModelRequest, context: Ctx
    ) -> rms.DeleteRegisteredModelResponse:
        count = await self._service.delete(request.name, request.etag, request.force)
        return rms.DeleteRegisteredModelResponse(deleted_versions=count)


class ModelVersionServicer(mvs_grpc.ModelVersionServiceServicer):
    def __init__(self, service: ModelVersionService) -> None:
        self._service = service

    async def CreateModelVersion(
        self, request: mvs.CreateModelVersionRequest, context: Ctx
    ) -> mvs.CreateModelVersionResponse:
        version = await self._service.create(
            request.parent,
            convert.model_version_draft(request.model_version),
            convert.idempotency_key(request.request_id, request),
        )
        return mvs.CreateModelVersionResponse(model_version=convert.model_version_to(version))

    async def GetModelVersion(
        self, request: mvs.GetModelVersionRequest, context: Ctx
    ) -> mvs.GetModelVersionResponse:
        version = await self._service.get(request.name)
        return mvs.GetModelVersionResponse(model_version=convert.model_version_to(version))

    async def ListModelVersions(
        self, request: mvs.ListModelVersionsRequest, context: Ctx
    ) -> mvs.ListModelVersionsResponse:
        page = await self._service.list(request.parent, _query(request))
        return mvs.ListModelVersionsResponse(
            model_versions=[convert.model_version_to(v) for v in page.items],
            next_page_token=page.next_page_token,
        )

    async def SearchModelVersions(
        self, request: mvs.SearchModelVersionsRequest, context: Ctx
    ) -> mvs.SearchModelVersionsResponse:
        page = await self._service.search(_query(request))
        return mvs.SearchModelVersionsResponse(
            model_versions=[convert.model_version_to(v) for v in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateModelVersion(
        self, request: mvs.UpdateModelVersionRequest, context: Ctx
    ) -> mvs.UpdateModelVersionResponse:
        body = request.model_version
        version = await self._service.update(
            body.name,
            body.etag,
            list(request.update_mask.paths),
            convert.model_version_draft(body),
        )
        return mvs.UpdateModelVersionResponse(model_version=convert.model_version_to(version))

    async def FinalizeModelVersion(
        self, request: mvs.FinalizeModelVersionRequest, context: Ctx
    ) -> mvs.FinalizeModelVersionResponse:
        version = await self._service.finalize(request.name, request.etag)
        return mvs.FinalizeModelVersionResponse(model_version=convert.model_version_to(version))

    async def FailModelVersion(
        self, request: mvs.FailModelVersionRequest, context: Ctx
    ) -> mvs.FailModelVersionResponse:
        version = await self._service.fail(request.name, request.status_message)
        return mvs.FailModelVersionResponse(model_version=convert.model_version_to(version))

    async def DeleteModelVersion(
        self, request: mvs.DeleteModelVersionRequest, context: Ctx
    ) -> mvs.DeleteModelVersionResponse:
        await self._service.delete(request.name, request.etag)
        return mvs.DeleteModelVersionResponse()

    async def SetModelVersionTag(
        self, request: mvs.SetModelVersionTagRequest, context: Ctx
    ) -> mvs.SetModelVersionTagResponse:
        version = await self._service.set_tag(request.name, request.key, request.value)
        return mvs.SetModelVersionTagResponse(model_version=convert.model_version_to(version))

    async def DeleteModelVersionTag(
        self, request: mvs.DeleteModelVersionTagRequest, context: Ctx
    ) -> mvs.DeleteModelVersionTagResponse:
        version = await self._service.delete_tag(request.name, request.key)
        return mvs.DeleteModelVersionTagResponse(model_version=convert.model_version_to(version))


class ExperimentServicer(es_grpc.ExperimentServiceServicer):
    def __init__(self, service: ExperimentService) -> None:
        self._service = service

    async def CreateExperiment(
        self, request: es.CreateExperimentRequest, context: Ctx
    ) -> es.CreateExperimentResponse:
        experiment = await self._service.create(
            request.experiment_id,
            request.experiment.description,
            dict(request.experiment.tags),
            convert.idempotency_key(request.request_id, request),
        )
        return es.CreateExperimentResponse(experiment=convert.experiment_to(experiment))

    async def GetExperiment(
        self, request: es.GetExperimentRequest, context: Ctx
    ) -> es.GetExperimentResponse:
        experiment = await self._service.get(request.name)
        return es.GetExperimentResponse(experiment=convert.experiment_to(experiment))

    async def ListExperiments(
        self, request: es.ListExperimentsRequest, context: Ctx
    ) -> es.ListExperimentsResponse:
        page = await self._service.list(_query(request), request.show_deleted)
        return es.ListExperimentsResponse(
            experiments=[convert.experiment_to(e) for e in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateExperiment(
        self, request: es.UpdateExperimentRequest, context: Ctx
    ) -> es.UpdateExperimentResponse:
        body = request.experiment
        experiment = await self._service.update(
            body.name,
            body.etag,
            list(request.update_mask.paths),
            body.description,
            dict(body.tags),
        )
        return es.UpdateExperimentResponse(experiment=convert.experiment_to(experiment))

    async def DeleteExperiment(
        self, request: es.DeleteExperimentRequest, context: Ctx
    ) -> es.DeleteExperimentResponse:
        experiment = await self._service.set_state(
            request.name, request.etag, ExperimentState.DELETED
        )
        return es.DeleteExperimentResponse(experiment=convert.experiment_to(experiment))

    async def UndeleteExperiment(
        self, request: es.UndeleteExperimentRequest, context: Ctx
    ) -> es.UndeleteExperimentResponse:
        experiment = await self._service.set_state(request.name, "", ExperimentState.ACTIVE)
        return es.UndeleteExperimentResponse(experiment=convert.experiment_to(experiment))


class RunServicer(rs_grpc.RunServiceServicer):
    def __init__(self, service: RunService) -> None:
        self._service = service

    async def CreateRun(self, request: rs.CreateRunRequest, context: Ctx) -> rs.CreateRunResponse:
        run = await self._service.create(
            request.parent,
            request.run_id,
            convert.run_draft(request.run),
            [],
            convert.idempotency_key(request.request_id, request),
        )
        return rs.CreateRunResponse(run=convert.run_to(run))

    async def GetRun(self, request: rs.GetRunRequest, context: Ctx) -> rs.GetRunResponse:
        run = await self._service.get(request.name)
        return rs.GetRunResponse(run=convert.run_to(run))

    async def UpdateRun(self, request: rs.UpdateRunRequest, context: Ctx) -> rs.UpdateRunResponse:
        run = await self._service.update(
            request.run.name,
            request.run.etag,
            list(request.update_mask.paths),
            convert.run_draft(request.run),
        )
        return rs.UpdateRunResponse(run=convert.run_to(run))

    async def DeleteRun(self, request: rs.DeleteRunRequest, context: Ctx) -> rs.DeleteRunResponse:
        await self._service.delete(request.name)
        return rs.DeleteRunResponse()

    async def LogRunData(
        self, request: rs.LogRunDataRequest, context: Ctx
    ) -> rs.LogRunDataResponse:
        run = await self._service.log_data(
            request.name,
            dict(request.params),
            [convert.metric_from(p, f"metrics[{i}]") for i, p in enumerate(request.metrics)],
            dict(request.tags),
            [convert.dataset_from(d) for d in request.inputs],
        )
        return rs.LogRunDataResponse(run=convert.run_to(run))

    async def DeleteRunTag(
        self, request: rs.DeleteRunTagRequest, context: Ctx
    ) -> rs.DeleteRunTagResponse:
        run = await self._service.delete_tag(request.name, request.key)
        return rs.DeleteRunTagResponse(run=convert.run_to(run))

    async def ListMetricHistory(
        self, request: rs.ListMetricHistoryRequest, context: Ctx
    ) -> rs.ListMetricHistoryResponse:
        page = await self._service.metric_history(
            request.name, request.key, request.page_size, request.page_token
        )
        return rs.ListMetricHistoryResponse(
            metrics=[convert.metric_to(p) for p in page.items],
            next_page_token=page.next_page_token,
        )

    async def SearchRuns(
        self, request: rs.SearchRunsRequest, context: Ctx
    ) -> rs.SearchRunsResponse:
        page = await self._service.search(request.parent, _query(request))
        return rs.SearchRunsResponse(
            runs=[convert.run_to(r) for r in page.items], next_page_token=page.next_page_token
        )


class LineageServicer(ls_grpc.LineageServiceServicer):
    def __init__(self, service: LineageService) -> None:
        self._service = service

    async def GetLineage(
        self, request: ls.GetLineageRequest, context: Ctx
    ) -> ls.GetLineageResponse:
        graph = await self._service.get(
            request.start,
            convert.direction_from(request.direction),
            request.max_hops,
            request.filter,
            request.max_nodes,
        )
        return ls.GetLineageResponse(
            nodes=[convert.node_to(n) for n in graph.nodes],
            edges=[convert.edge_to(e) for e in graph.edges],
            truncated=graph.truncated,
        )

    async def CreateLineageEdges(
        self, request: ls.CreateLineageEdgesRequest, context: Ctx
    ) -> ls.CreateLineageEdgesResponse:
        nodes, edges = await self._service.record(
            [convert.node_from(n, f"nodes[{i}]") for i, n in enumerate(request.nodes)],
            [convert.edge_from(e, f"edges[{i}]") for i, e in enumerate(request.edges)],
        )
        return ls.CreateLineageEdgesResponse(
            nodes=[convert.node_to(n) for n in nodes], edges=[convert.edge_to(e) for e in edges]
        )


class AccessServicer(acs_grpc.AccessServiceServicer):
    def __init__(self, service: AccessService) -> None:
        self._service = service

    async def CreateApiKey(
        self, request: acs.CreateApiKeyRequest, context: Ctx
    ) -> acs.CreateApiKeyResponse:
        key, secret = await self._service.create_api_key(
            convert.api_key_draft(request.api_key),
            convert.idempotency_key(request.request_id, request),
        )
        return acs.CreateApiKeyResponse(api_key=convert.api_key_to(key), secret=secret or "")

    async def GetApiKey(self, request: acs.GetApiKeyRequest, context: Ctx) -> acs.GetApiKeyResponse:
        key = await self._service.get_api_key(request.name)
        return acs.GetApiKeyResponse(api_key=convert.api_key_to(key))

    async def ListApiKeys(
        self, request: acs.ListApiKeysRequest, context: Ctx
    ) -> acs.ListApiKeysResponse:
        page = await self._service.list_api_keys(
            request.principal,
            request.show_revoked,
            ListQuery(page_size=request.page_size, page_token=request.page_token),
        )
        return acs.ListApiKeysResponse(
            api_keys=[convert.api_key_to(k) for k in page.items],
            next_page_token=page.next_page_token,
        )

    async def RevokeApiKey(
        self, request: acs.RevokeApiKeyRequest, context: Ctx
    ) -> acs.RevokeApiKeyResponse:
        key = await self._service.revoke_api_key(request.name)
        return acs.RevokeApiKeyResponse(api_key=convert.api_key_to(key))

    async def VerifyApiKey(
        self, request: acs.VerifyApiKeyRequest, context: Ctx
    ) -> acs.VerifyApiKeyResponse:
        key = await self._service.verify_api_key(request.secret)
        return acs.VerifyApiKeyResponse(api_key=convert.api_key_to(key))

    async def GetIamPolicy(
        self, request: acs.GetIamPolicyRequest, context: Ctx
    ) -> acs.GetIamPolicyResponse:
        policy = await self._service.get_policy(request.resource)
        return acs.GetIamPolicyResponse(policy=convert.policy_to(policy))

    async def SetIamPolicy(
        self, request: acs.SetIamPolicyRequest, context: Ctx
    ) -> acs.SetIamPolicyResponse:
        policy = await self._service.set_policy(
            request.resource, convert.bindings_from(request.policy), request.policy.etag
        )
        return acs.SetIamPolicyResponse(policy=convert.policy_to(policy))

    async def ResolveAccess(
        self, request: acs.ResolveAccessRequest, context: Ctx
    ) -> acs.ResolveAccessResponse:
        resolved = await self._service.resolve(request.subject, list(request.groups))
        return acs.ResolveAccessResponse(
            registry_role=convert.role_to(resolved.registry_role),
            model_roles=convert.model_roles_to(resolved.model_roles),
            resolve_time=convert.ts(resolved.resolve_time),
        )
