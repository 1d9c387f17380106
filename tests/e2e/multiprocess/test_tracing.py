"""One client call that crosses services is one trace: each service runs in its own server (its
own port, its own TracerProvider, as in production), peers wired by address, and the spans of
all of them land in one in-memory exporter. The span tree is asserted edge by edge."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpc import aio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from e2e.multiprocess.scenario import require_relay
from modelreg.artifact.v1 import artifact_service_pb2, artifact_service_pb2_grpc
from modelreg.events.v1 import event_service_pb2, event_service_pb2_grpc
from modelreg.lifecycle.v1 import alias_service_pb2, alias_service_pb2_grpc
from modelreg.metadata.v1 import (
    model_version_pb2,
    model_version_service_pb2,
    model_version_service_pb2_grpc,
    registered_model_service_pb2,
    registered_model_service_pb2_grpc,
)
from modelreg_common.local_postgres import free_port
from modelreg_common.server import RegistryServer, ServiceSpec
from modelreg_common.settings import PeerSettings, TelemetrySettings
from modelreg_common.telemetry import Telemetry
from modelreg_server.catalog import SERVICES, load_specs
from testkit import make_settings

FINALIZE = "/modelreg.metadata.v1.ModelVersionService/FinalizeModelVersion"
SEAL = "/modelreg.artifact.v1.ArtifactService/SealManifest"
SET_ALIAS = "/modelreg.lifecycle.v1.AliasService/SetAlias"
GET_VERSION = "/modelreg.metadata.v1.ModelVersionService/GetModelVersion"


@dataclass
class Traced:
    exporter: InMemorySpanExporter
    client: Telemetry
    servers: dict[str, RegistryServer]

    def channel(self, service: str) -> aio.Channel:
        return aio.insecure_channel(
            self.servers[service].address, interceptors=self.client.client_interceptors()
        )


def _specs(tmp_path: Path) -> dict[str, ServiceSpec]:
    specs = {spec.name: spec for spec in load_specs()}
    if "artifact" in specs:
        from modelreg_artifact.app import make_spec
        from modelreg_artifact.settings import ArtifactSettings

        specs["artifact"] = make_spec(ArtifactSettings(root=tmp_path / "artifacts"))
    return specs


@pytest.fixture
async def traced(start_server, tmp_path: Path) -> AsyncIterator[Traced]:
    required = {"metadata", "artifact", "lifecycle"}
    if not required <= set(SERVICES):
        pytest.skip(f"needs {sorted(required - set(SERVICES))} in the catalog")
    exporter = InMemorySpanExporter()
    specs = _specs(tmp_path)
    ports = {name: free_port() for name in specs}
    peers = PeerSettings.model_validate({n: f"127.0.0.1:{port}" for n, port in ports.items()})
    servers: dict[str, RegistryServer] = {}
    # Each service its own server and TracerProvider (service.name tells them apart), like
    # separate processes; only the exporter is shared so the test sees every span.
    for name in ("events", "artifact", "lifecycle", "metadata"):
        if name not in specs:
            continue
        telemetry = Telemetry(
            TelemetrySettings(service_name=f"modelreg-{name}"),
            processor=SimpleSpanProcessor(exporter),
        )
        servers[name] = await start_server(
            [specs[name]],
            settings=make_settings(
                listen=f"127.0.0.1:{ports[name]}",
                home=tmp_path / name,
                peers=peers,
                relay_enabled="events" in specs,  # ignored by a runtime without a relay
            ),
            telemetry=telemetry,
        )
    client = Telemetry(
        TelemetrySettings(service_name="test-client"), processor=SimpleSpanProcessor(exporter)
    )
    yield Traced(exporter, client, servers)
    client.shutdown()


def one(spans: Sequence[ReadableSpan], name: str, kind: SpanKind) -> ReadableSpan:
    found = [s for s in spans if s.name == name and s.kind == kind]
    assert len(found) == 1, f"{len(found)} {kind.name} spans named {name}"
    return found[0]


def child_of(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.parent is not None, f"{child.name} has no parent"
    assert parent.context is not None
    return (
        child.parent.span_id == parent.context.span_id
        and child.context is not None
        and child.context.trace_id == parent.context.trace_id
    )


def service_name(span: ReadableSpan) -> object:
    return span.resource.attributes.get("service.name")


async def register_with_files(traced: Traced) -> str:
    model_id = f"trace-{uuid.uuid4().hex[:10]}"
    async with traced.channel("metadata") as channel:
        await registered_model_service_pb2_grpc.RegisteredModelServiceStub(
            channel
        ).CreateRegisteredModel(
            registered_model_service_pb2.CreateRegisteredModelRequest(registered_model_id=model_id)
        )
        reply = await model_version_service_pb2_grpc.ModelVersionServiceStub(
            channel
        ).CreateModelVersion(
            model_version_service_pb2.CreateModelVersionRequest(parent=f"models/{model_id}")
        )
    version: str = reply.model_version.name
    data = b"weights" * 1000
    async with traced.channel("artifact") as channel:
        await artifact_service_pb2_grpc.ArtifactServiceStub(channel).Upload(
            iter(
                [
                    artifact_service_pb2.UploadRequest(
                        header=artifact_service_pb2.UploadHeader(
                            owner=version,
                            path="model.bin",
                            expected_digest=f"sha256:{hashlib.sha256(data).hexdigest()}",
                        )
                    ),
                    artifact_service_pb2.UploadRequest(chunk=data),
                ]
            )
        )
    return version


async def test_finalize_is_one_trace_from_client_through_metadata_to_artifact(
    traced: Traced,
) -> None:
    version = await register_with_files(traced)
    traced.exporter.clear()
    async with traced.channel("metadata") as channel:
        reply = await model_version_service_pb2_grpc.ModelVersionServiceStub(
            channel
        ).FinalizeModelVersion(model_version_service_pb2.FinalizeModelVersionRequest(name=version))
    assert reply.model_version.state == model_version_pb2.MODEL_VERSION_STATE_READY

    spans = traced.exporter.get_finished_spans()
    client = one(spans, FINALIZE, SpanKind.CLIENT)
    metadata = one(spans, FINALIZE, SpanKind.SERVER)
    peer_call = one(spans, SEAL, SpanKind.CLIENT)
    artifact = one(spans, SEAL, SpanKind.SERVER)
    # client -> metadata server -> metadata's client call -> artifact server
    assert client.parent is None
    assert child_of(metadata, client)
    assert child_of(peer_call, metadata)
    assert child_of(artifact, peer_call)
    assert [service_name(s) for s in (client, metadata, peer_call, artifact)] == [
        "test-client",
        "modelreg-metadata",
        "modelreg-metadata",
        "modelreg-artifact",
    ]
    assert client.context is not None
    trace_id = client.context.trace_id
    # Nothing of this call escaped into another trace.
    crossing = [s for s in spans if s.name in {FINALIZE, SEAL}]
    assert {s.context.trace_id for s in crossing if s.context is not None} == {trace_id}


async def test_set_alias_traces_through_lifecycle_to_metadata_and_into_the_event(
    traced: Traced,
) -> None:
    version = await register_with_files(traced)
    async with traced.channel("metadata") as channel:
        await model_version_service_pb2_grpc.ModelVersionServiceStub(channel).FinalizeModelVersion(
            model_version_service_pb2.FinalizeModelVersionRequest(name=version)
        )
    model = version.rsplit("/versions/", 1)[0]
    traced.exporter.clear()
    async with traced.channel("lifecycle") as channel:
        await alias_service_pb2_grpc.AliasServiceStub(channel).SetAlias(
            alias_service_pb2.SetAliasRequest(name=f"{model}/aliases/champion", version=version)
        )

    spans = traced.exporter.get_finished_spans()
    client = one(spans, SET_ALIAS, SpanKind.CLIENT)
    lifecycle = one(spans, SET_ALIAS, SpanKind.SERVER)
    checks = [s for s in spans if s.name == GET_VERSION and s.kind == SpanKind.CLIENT]
    assert checks, "lifecycle did not ask metadata about the version"
    for check in checks:
        assert child_of(check, lifecycle)
        served = [
            s
            for s in spans
            if s.name == GET_VERSION and s.kind == SpanKind.SERVER and child_of(s, check)
        ]
        assert len(served) == 1
        assert service_name(served[0]) == "modelreg-metadata"
    assert child_of(lifecycle, client)
    assert client.context is not None
    trace_id = f"{client.context.trace_id:032x}"

    if "events" not in traced.servers:
        pytest.skip("the events service is not in the catalog: the outbox leg is unchecked")
    require_relay()
    # The outbox row kept the call's trace context; the relay carried it to the event log.
    async with traced.channel("events") as channel:
        stream = event_service_pb2_grpc.EventServiceStub(channel).Subscribe(
            event_service_pb2.SubscribeRequest(
                filter=f'type = "model_version.alias_set" AND subject = "{model}*"'
            )
        )
        async with asyncio.timeout(20):
            reply = await stream.read()
        stream.cancel()
    assert isinstance(reply, event_service_pb2.SubscribeResponse)
    traceparent = reply.event.trace_context["traceparent"]
    assert traceparent.split("-")[1] == trace_id
