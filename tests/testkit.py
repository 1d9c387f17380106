"""Helpers for tests (importable: `tests/` is on pytest's pythonpath)."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from modelreg_common.settings import Settings


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"listen": "127.0.0.1:0", "shutdown_grace_seconds": 1.0}
    values.update(overrides)
    return Settings(**values)


def error_details(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str], list[tuple[str, str]]]:
    """(ErrorInfo.reason, ErrorInfo.metadata, BadRequest violations as (field, description))."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    reason, metadata, violations = "", {}, []
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
