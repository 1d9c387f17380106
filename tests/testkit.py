"""Helpers for tests (importable: `tests/` is on pytest's pythonpath)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from modelreg_common.access import Role
from modelreg_common.settings import Settings

if TYPE_CHECKING:
    from modelreg_common.local_s3 import LocalS3


def grpc_services(service: str) -> frozenset[str]:
    """Full names of the gRPC services of `modelreg.<service>.v1`, from the same descriptor
    discovery the client uses."""
    from modelreg.client._methods import methods_of

    return frozenset(
        rpc.path.split("/")[1] for rpc in methods_of(f"modelreg.{service}.v1").values()
    )


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20) -> None:
    """Poll state another task changes (the server's database) until `check` holds."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - the state lives in the database's tables
            await asyncio.sleep(0.02)


def s3_client(s3: LocalS3) -> Any:
    """An aiobotocore client of the session's SeaweedFS (`async with`)."""
    from aiobotocore.session import get_session

    return get_session().create_client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
    )


async def make_bucket(s3: LocalS3, prefix: str = "t") -> str:
    """A fresh bucket on the session's SeaweedFS; its name."""
    bucket = f"{prefix}-{uuid.uuid4().hex[:20]}"
    async with s3_client(s3) as client:
        await client.create_bucket(Bucket=bucket)
    return bucket


def make_settings(**overrides: Any) -> Settings:
    # One pooled connection at start: test servers start by the hundred and carry no load.
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "shutdown_grace_seconds": 1.0,
        "pool_min_size": 1,
    }
    values.update(overrides)
    return Settings(**values)


def error_details(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str], list[tuple[str, str]]]:
    """(ErrorInfo.reason, ErrorInfo.metadata, BadRequest violations as (field, description))."""
    status = rpc_status.from_call(error)
    reason = ""
    metadata: dict[str, str] = {}
    violations: list[tuple[str, str]] = []
    if status is None:
        return reason, metadata, violations
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [(v.field, v.description) for v in bad.field_violations]
    return reason, metadata, violations


def status_reason(error: grpc.aio.AioRpcError) -> str:
    return error_details(error)[0]


# -- a tiny service for testing the runtime itself -------------------------------------------
# Raw-bytes handlers under a test-only name: the runtime is exercised over a real channel
# without depending on any real service's contract.

PROBE_SERVICE = "modelreg.testing.v1.ProbeService"


class ProbeComponent:
    """Echo the caller, raise a chosen error, or sleep: just enough to drive interceptors."""

    def __init__(self) -> None:
        import asyncio

        self.started = asyncio.Event()
        self.sleeping = asyncio.Event()
        self.stopped = False

    @property
    def service_names(self) -> list[str]:
        return [PROBE_SERVICE]

    def register(self, server: grpc.aio.Server) -> None:
        import asyncio

        from modelreg_common import errors
        from modelreg_common.context import current_principal

        async def whoami(request: bytes, context: Any) -> bytes:
            return current_principal().subject.encode()

        async def fail(request: bytes, context: Any) -> bytes:
            kind = request.decode()
            if kind == "invalid":
                raise errors.InvalidArgument("model.name", "must not be empty")
            if kind == "not_found":
                raise errors.NotFound("models/x", kind="registered model")
            if kind == "etag":
                raise errors.EtagMismatch("models/x")
            if kind == "unavailable":
                raise errors.Unavailable("s3 is down", backend="s3")
            raise RuntimeError("secret internal detail")

        async def sleep(request: bytes, context: Any) -> bytes:
            self.sleeping.set()
            await asyncio.sleep(float(request.decode()))
            return b"slept"

        async def count(request: bytes, context: Any) -> Any:
            for i in range(int(request.decode())):
                yield str(i).encode()
            raise errors.NotFound("models/end", kind="registered model")

        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            "WhoAmI": grpc.unary_unary_rpc_method_handler(whoami),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
            "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
            "Count": grpc.unary_stream_rpc_method_handler(count),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(PROBE_SERVICE, handlers),)
        )

    async def start(self) -> None:
        self.started.set()

    async def stop(self) -> None:
        self.stopped = True


def probe_spec(component: ProbeComponent | None = None) -> Any:
    from modelreg_common.permissions import Rule, Scope
    from modelreg_common.server import ServiceRuntime, ServiceSpec

    made = component or ProbeComponent()

    async def create(runtime: ServiceRuntime) -> ProbeComponent:
        return made

    rules = {
        f"/{PROBE_SERVICE}/{name}": Rule(f"probe.{name.lower()}", Role.NONE, Scope.HANDLER)
        for name in ("WhoAmI", "Fail", "Sleep", "Count")
    }
    return ServiceSpec(
        name="probe", schema="probe", migrations_package=None, create=create, rules=rules
    )


def examples(strategy: Any, count: int) -> list[Any]:
    """Deterministic examples of a hypothesis `strategy`, drawn once up front: the calls they
    feed are async, which hypothesis's `@given` does not drive."""
    from hypothesis import given, settings

    drawn: list[Any] = []

    @settings(derandomize=True, deadline=None, max_examples=count, database=None)
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn
