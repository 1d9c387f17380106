"""Composition root of the artifact service: settings, backend, repository, domain, servicer,
and the garbage collector."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.protobuf.message_factory import GetMessageClass
from grpc import aio

from modelreg.artifact.v1 import artifact_service_pb2
from modelreg_artifact.domain.models import GcReport
from modelreg_artifact.domain.ports import BlobBackend
from modelreg_artifact.domain.service import Artifacts, Limits
from modelreg_artifact.settings import ArtifactSettings
from modelreg_artifact.store.local import LocalBackend
from modelreg_artifact.store.repository import PgRepository
from modelreg_artifact.store.s3 import S3Backend
from modelreg_artifact.transport import convert
from modelreg_artifact.transport.servicer import ArtifactServicer
from modelreg_common.logs import get_logger
from modelreg_common.memory import tune_malloc
from modelreg_common.server import ServiceRuntime, ServiceSpec
from modelreg_common.usage import UsageSink
from modelreg_common.waits import cancel_and_wait

log = get_logger("modelreg.artifact")

_SERVICE = artifact_service_pb2.DESCRIPTOR.services_by_name["ArtifactService"]
SERVICE_NAME = _SERVICE.full_name


_KINDS: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def method_handlers(servicer: ArtifactServicer) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """What the generated `add_ArtifactServiceServicer_to_server` registers, except that
    Download's responses arrive serialized already (see `convert.download_response`)."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in _SERVICE.methods:
        request = GetMessageClass(method.input_type)
        response = GetMessageClass(method.output_type)
        serializer: Callable[[Any], bytes] = (
            convert.serialize_download_response
            if method.name == "Download"
            else response.SerializeToString
        )
        kind = _KINDS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = kind(
            getattr(servicer, method.name),
            request_deserializer=request.FromString,
            response_serializer=serializer,
        )
    return handlers


def make_backend(settings: ArtifactSettings, runtime: ServiceRuntime) -> BlobBackend:
    if settings.backend == "s3":
        return S3Backend(settings.s3, keep_part_bodies=settings.parts_in_flight + 1)
    return LocalBackend(settings.root or runtime.settings.home / "artifacts")


def make_limits(settings: ArtifactSettings) -> Limits:
    return Limits(
        part_size=settings.part_size_bytes,
        parts_in_flight=settings.parts_in_flight,
        download_chunk=settings.download_chunk_bytes,
        download_read_ahead=settings.download_read_ahead_chunks,
        max_file_bytes=settings.max_file_bytes,
        max_owner_bytes=settings.max_owner_bytes,
        max_path_bytes=settings.max_path_bytes,
        max_segment_bytes=settings.max_segment_bytes,
        session_ttl=settings.upload_session_ttl_seconds,
        blob_grace=settings.blob_grace_seconds,
        stream_stale=settings.stream_stale_seconds,
        presign_ttl=settings.presign_ttl_seconds,
        gc_batch=settings.gc_batch_size,
    )


class ArtifactComponent:
    def __init__(
        self, settings: ArtifactSettings, artifacts: Artifacts, usage: UsageSink | None = None
    ) -> None:
        self.settings = settings
        self.artifacts = artifacts
        self.usage = usage
        self._gc_task: asyncio.Task[None] | None = None

    @property
    def service_names(self) -> Sequence[str]:
        return [SERVICE_NAME]

    def register(self, server: aio.Server) -> None:
        handlers = method_handlers(ArtifactServicer(self.artifacts, self.usage))
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),)
        )
        server.add_registered_method_handlers(SERVICE_NAME, handlers)

    async def start(self) -> None:
        await self.artifacts.blobs.start()
        if self.settings.gc_enabled:
            self._gc_task = asyncio.create_task(self._gc_loop(), name="artifact-gc")

    async def stop(self) -> None:
        await cancel_and_wait(self._gc_task)
        self._gc_task = None
        await self.artifacts.blobs.stop()

    async def collect_garbage(self) -> GcReport:
        """One collector pass (the worker's loop body; tests call it directly)."""
        return await self.artifacts.collect_garbage()

    async def _gc_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.gc_interval_seconds)
            try:
                report = await self.artifacts.collect_garbage()
                if report.expired_sessions or report.collected_blobs or report.deleted_objects:
                    log.info(
                        "artifact.gc",
                        expired_sessions=report.expired_sessions,
                        collected_blobs=report.collected_blobs,
                        deleted_objects=report.deleted_objects,
                    )
            except Exception as exc:
                log.warning("artifact.gc_failed", error=str(exc))


def make_spec(settings: ArtifactSettings | None = None) -> ServiceSpec:
    """A spec with explicit settings (tests, benchmarks); `SPEC` reads the environment."""

    async def create(runtime: ServiceRuntime) -> ArtifactComponent:
        resolved = settings if settings is not None else ArtifactSettings()
        if resolved.malloc_arena_max:
            # Process-wide, and best done before threads exist (the server's start-up may do
            # it first; a second call changes nothing).
            tuning = tune_malloc(arena_max=resolved.malloc_arena_max)
            log.debug("artifact.malloc_tuned", arena_max=tuning.arena_max)
        artifacts = Artifacts(
            PgRepository(runtime.pool),
            make_backend(resolved, runtime),
            make_limits(resolved),
            runtime.page_tokens,
        )
        return ArtifactComponent(resolved, artifacts, runtime.usage)

    return ServiceSpec(
        name="artifact",
        schema="artifact",
        migrations_package="modelreg_artifact.store.migrations",
        create=create,
    )


SPEC = make_spec()
