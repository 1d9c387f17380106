from __future__ import annotations

import asyncpg
import grpc

from modelreg_common import errors
from modelreg_common.status import error_domain, map_exception


def test_error_domain_comes_from_the_rpc_package() -> None:
    assert error_domain("/modelreg.metadata.v1.ModelVersionService/Get") == "modelreg.metadata"


def test_serialization_failure_is_aborted_not_internal() -> None:
    mapped = map_exception(asyncpg.SerializationError("conflict"), "/modelreg.x.v1.S/M")
    assert mapped.code == grpc.StatusCode.ABORTED


def test_connection_refused_is_unavailable() -> None:
    mapped = map_exception(ConnectionRefusedError(), "/modelreg.x.v1.S/M")
    assert mapped.code == grpc.StatusCode.UNAVAILABLE


def test_limit_exceeded_is_resource_exhausted() -> None:
    mapped = map_exception(errors.LimitExceeded("too big", limit="file_size"), "/m.x.v1.S/M")
    assert mapped.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_bug_is_internal_with_a_fresh_correlation_id() -> None:
    first = map_exception(KeyError("x"), "/m.x.v1.S/M")
    second = map_exception(KeyError("x"), "/m.x.v1.S/M")
    assert first.code == grpc.StatusCode.INTERNAL
    assert first.correlation_id
    assert first.correlation_id != second.correlation_id
