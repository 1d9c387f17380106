"""Other services as ports: the artifact service seals a version's files; the lifecycle service
says whether a model's versions still have aliases or pending approvals."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from grpc import aio

from modelreg.artifact.v1 import artifact_service_pb2, artifact_service_pb2_grpc
from modelreg.lifecycle.v1 import (
    alias_service_pb2,
    alias_service_pb2_grpc,
    transition_request_pb2,
    transition_request_service_pb2,
    transition_request_service_pb2_grpc,
)
from modelreg_common.errors import FailedPrecondition, NotFound, Unavailable
from modelreg_metadata.domain.models import Manifest

_UNREACHABLE = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
)


class GrpcArtifacts:
    """`channel` is called on first use: in the all-in-one server the peer is this process,
    whose port is known only once it listens."""

    def __init__(self, channel: Callable[[], aio.Channel], timeout: float) -> None:
        self._channel = channel
        self._timeout = timeout

    async def seal_manifest(self, owner: str) -> Manifest:
        stub = artifact_service_pb2_grpc.ArtifactServiceStub(self._channel())
        try:
            response = await stub.SealManifest(
                artifact_service_pb2.SealManifestRequest(owner=owner), timeout=self._timeout
            )
        except aio.AioRpcError as exc:
            code = exc.code()
            if code in _UNREACHABLE:
                raise Unavailable(
                    f"artifact service: {exc.details()}", backend="artifact"
                ) from None
            if code == grpc.StatusCode.NOT_FOUND:
                raise NotFound(owner, kind="artifact manifest") from None
            raise FailedPrecondition(
                f"the artifact service refused to seal {owner}: {code.name}: {exc.details()}"
            ) from None
        manifest = response.manifest
        return Manifest(manifest.digest, manifest.file_count, manifest.total_size_bytes)


class GrpcLifecycle:
    """Reads the lifecycle service's aliases and pending transition requests of a model.
    A build without the lifecycle service (UNIMPLEMENTED) has neither, so nothing blocks."""

    def __init__(self, channel: Callable[[], aio.Channel], timeout: float) -> None:
        self._channel = channel
        self._timeout = timeout

    async def deletion_blockers(self, model: str) -> list[str]:
        parent = f"models/{model}"
        channel = self._channel()
        aliases_stub = alias_service_pb2_grpc.AliasServiceStub(channel)
        requests_stub = transition_request_service_pb2_grpc.TransitionRequestServiceStub(channel)
        blockers: list[str] = []
        try:
            aliases = await aliases_stub.ListAliases(
                alias_service_pb2.ListAliasesRequest(parent=parent, page_size=10),
                timeout=self._timeout,
            )
            blockers += [a.name for a in aliases.aliases]
            pending = await requests_stub.ListTransitionRequests(
                transition_request_service_pb2.ListTransitionRequestsRequest(
                    parent=parent,
                    page_size=10,
                    state=transition_request_pb2.TRANSITION_REQUEST_STATE_PENDING,
                ),
                timeout=self._timeout,
            )
            blockers += [r.name for r in pending.transition_requests]
        except aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND):
                return blockers
            raise Unavailable(
                f"cannot ask the lifecycle service about {parent}: {exc.details()}",
                backend="lifecycle",
            ) from None
        return blockers
