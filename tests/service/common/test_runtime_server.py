"""The shared runtime over a real channel: health, reflection, errors, auth, shutdown."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelreg_common.auth import hash_token
from modelreg_common.local_postgres import free_port
from modelreg_common.metrics import RpcMetrics
from modelreg_common.settings import AuthSettings, TelemetrySettings, TokenEntry
from modelreg_common.telemetry import Telemetry
from testkit import PROBE_SERVICE, ProbeComponent, error_details, make_settings, probe_spec


def call(channel: aio.Channel, method: str) -> aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(f"/{PROBE_SERVICE}/{method}")


async def test_health_reports_serving_for_server_and_each_service(start_server) -> None:
    server = await start_server([probe_spec()])
    async with aio.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", PROBE_SERVICE):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(aio.AioRpcError) as err:
            await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_registered_services(start_server) -> None:
    server = await start_server([probe_spec()])
    async with aio.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        names = set()
        async for reply in stub.ServerReflectionInfo(iter([request])):
            names |= {s.name for s in reply.list_services_response.service}
    assert {PROBE_SERVICE, "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize(
    ("kind", "code", "reason", "metadata"),
    [
        ("not_found", grpc.StatusCode.NOT_FOUND, "RESOURCE_NOT_FOUND", {"name": "models/x"}),
        ("etag", grpc.StatusCode.ABORTED, "ETAG_MISMATCH", {"name": "models/x"}),
        ("unavailable", grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE", {"backend": "s3"}),
    ],
)
async def test_domain_errors_map_to_codes_with_error_info(
    start_server, kind: str, code: grpc.StatusCode, reason: str, metadata: dict[str, str]
) -> None:
    server = await start_server([probe_spec()])
    async with aio.insecure_channel(server.address) as channel:
        with pytest.raises(aio.AioRpcError) as err:
            await call(channel, "Fail")(kind.encode())
    assert err.value.code() == code
    got_reason, got_metadata, _ = error_details(err.value)
    assert (got_reason, got_metadata) == (reason, metadata)


async def test_invalid_argument_names_the_field(start_server) -> None:
    server = await start_server([probe_spec()])
    async with aio.insecure_channel(server.address) as channel:
        with pytest.raises(aio.AioRpcError) as err:
            await call(channel, "Fail")(b"invalid")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, _, violations = error_details(err.value)
    assert reason == "INVALID_FIELD"
    assert violations == [("model.name", "must not be empty")]


async def test_unexpected_exception_is_internal_with_correlation_id_only(start_server) -> None:
    server = await start_server([probe_spec()])
    async with aio.insecure_channel(server.address) as channel:
        with pytest.raises(aio.AioRpcError) as err:
            await call(channel, "Fail")(b"bug")
    assert err.value.code() == grpc.StatusCode.INTERNAL
    details = err.value.details() or ""
    assert "secret internal detail" not in details
    reason, metadata, _ = error_details(err.value)
    assert reason == "INTERNAL"
    assert metadata["correlation_id"] in details


async def test_error_after_stream_items_is_mapped(start_server) -> None:
    server = await start_server([probe_spec()])
    received: list[bytes] = []

    async def consume(channel: aio.Channel) -> None:
        count: aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
            f"/{PROBE_SERVICE}/Count"
        )
        async for item in count(b"3"):
            received.append(item)

    async with aio.insecure_channel(server.address) as channel:
        with pytest.raises(aio.AioRpcError) as err:
            await consume(channel)
    assert received == [b"0", b"1", b"2"]
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_metrics_count_calls_by_method_and_code(start_server) -> None:
    metrics = RpcMetrics()
    server = await start_server([probe_spec()], metrics=metrics)
    async with aio.insecure_channel(server.address) as channel:
        await call(channel, "WhoAmI")(b"")
        with pytest.raises(aio.AioRpcError):
            await call(channel, "Fail")(b"not_found")
    sample = metrics.registry.get_sample_value
    assert sample("modelreg_rpc_total", {"method": f"/{PROBE_SERVICE}/WhoAmI", "code": "OK"}) == 1
    assert (
        sample("modelreg_rpc_total", {"method": f"/{PROBE_SERVICE}/Fail", "code": "NOT_FOUND"}) == 1
    )


TOKEN = "s3cret-token-for-ci"


def token_settings() -> object:
    return make_settings(
        auth=AuthSettings(
            mode="token",
            tokens=[TokenEntry(sha256=hash_token(TOKEN), principal="ci-bot")],
            # No metadata service here to ask for grants: the caller is an admin by configuration.
            admins=["user:ci-bot"],
        )
    )


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer wrong"),), (("authorization", f"Basic {TOKEN}"),)],
    ids=["missing", "wrong", "not-bearer"],
)
async def test_calls_without_a_valid_token_are_unauthenticated(
    start_server, metadata: tuple[tuple[str, str], ...]
) -> None:
    server = await start_server([probe_spec()], settings=token_settings())
    async with aio.insecure_channel(server.address) as channel:
        with pytest.raises(aio.AioRpcError) as err:
            await call(channel, "WhoAmI")(b"", metadata=metadata)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_details(err.value)[0] == "INVALID_TOKEN"


async def test_valid_token_becomes_the_principal_and_health_needs_none(start_server) -> None:
    server = await start_server([probe_spec()], settings=token_settings())
    async with aio.insecure_channel(server.address) as channel:
        who = await call(channel, "WhoAmI")(b"", metadata=(("authorization", f"Bearer {TOKEN}"),))
        assert who == b"ci-bot"
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_local_mode_calls_without_token_act_as_local_principal(start_server) -> None:
    server = await start_server([probe_spec()])
    async with aio.insecure_channel(server.address) as channel:
        assert await call(channel, "WhoAmI")(b"") == b"local"


async def test_local_mode_refuses_to_listen_beyond_loopback(start_server) -> None:
    with pytest.raises(RuntimeError, match="refusing to listen"):
        await start_server([probe_spec()], settings=make_settings(listen="0.0.0.0:0"))


async def test_graceful_stop_drains_in_flight_call_and_refuses_new_ones(start_server) -> None:
    component = ProbeComponent()
    server = await start_server([probe_spec(component)])
    async with aio.insecure_channel(server.address) as channel:
        in_flight = asyncio.ensure_future(call(channel, "Sleep")(b"0.5"))
        await asyncio.wait_for(component.sleeping.wait(), timeout=5)
        stopping = asyncio.ensure_future(server.stop(grace=5))
        assert await in_flight == b"slept"
        await stopping
        assert component.stopped
        with pytest.raises(aio.AioRpcError) as err:
            await call(channel, "WhoAmI")(b"", timeout=2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_metrics_are_served_over_http(start_server) -> None:
    import urllib.request

    listen = f"127.0.0.1:{free_port()}"
    server = await start_server([probe_spec()], settings=make_settings(metrics_listen=listen))
    async with aio.insecure_channel(server.address) as channel:
        await call(channel, "WhoAmI")(b"")
    body = await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"http://{listen}/metrics", timeout=5).read().decode()
    )
    assert f'modelreg_rpc_total{{code="OK",method="/{PROBE_SERVICE}/WhoAmI"}} 1.0' in body


async def test_tracing_records_a_server_span_per_rpc(start_server) -> None:
    exporter = InMemorySpanExporter()
    telemetry = Telemetry(TelemetrySettings(), processor=SimpleSpanProcessor(exporter))
    server = await start_server([probe_spec()], telemetry=telemetry)
    async with aio.insecure_channel(server.address) as channel:
        await call(channel, "WhoAmI")(b"")
    spans = [s for s in exporter.get_finished_spans() if s.name == f"/{PROBE_SERVICE}/WhoAmI"]
    assert len(spans) == 1
    assert spans[0].attributes is not None
    assert spans[0].attributes["rpc.method"] == "WhoAmI"
