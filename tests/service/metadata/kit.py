"""Helpers for the metadata service tests: stubs for its five services, error assertions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc import aio

from modelreg.metadata.v1 import (
    experiment_service_pb2_grpc,
    lineage_service_pb2_grpc,
    model_version_service_pb2_grpc,
    registered_model_service_pb2_grpc,
    run_service_pb2_grpc,
)
from modelreg_common.server import RegistryServer
from testkit import error_details


@dataclass
class Stubs:
    channel: aio.Channel
    server: RegistryServer
    experiments: experiment_service_pb2_grpc.ExperimentServiceAsyncStub
    runs: run_service_pb2_grpc.RunServiceAsyncStub
    models: registered_model_service_pb2_grpc.RegisteredModelServiceAsyncStub
    versions: model_version_service_pb2_grpc.ModelVersionServiceAsyncStub
    lineage: lineage_service_pb2_grpc.LineageServiceAsyncStub


def stubs_for(channel: aio.Channel, server: RegistryServer) -> Stubs:
    return Stubs(
        channel,
        server,
        experiment_service_pb2_grpc.ExperimentServiceStub(channel),
        run_service_pb2_grpc.RunServiceStub(channel),
        registered_model_service_pb2_grpc.RegisteredModelServiceStub(channel),
        model_version_service_pb2_grpc.ModelVersionServiceStub(channel),
        lineage_service_pb2_grpc.LineageServiceStub(channel),
    )


async def expect_error(
    call: Any, code: grpc.StatusCode, reason: str, field: str | None = None
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Await `call`, assert it fails with `code` and ErrorInfo `reason` (and, when given, a
    BadRequest violation on `field`); returns (metadata, violations)."""
    with pytest.raises(aio.AioRpcError) as info:
        await call
    err = info.value
    assert err.code() == code, (err.code(), err.details())
    got_reason, metadata, violations = error_details(err)
    assert got_reason == reason, (got_reason, err.details())
    if field is not None:
        fields = [f for f, _ in violations]
        assert any(f == field or f.startswith(field) for f in fields), (field, violations)
    return metadata, violations
