"""The one place where exceptions become gRPC statuses with google.rpc details."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import asyncpg
import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from modelreg_common import errors

_CODES: dict[type[errors.DomainError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.EtagMismatch: grpc.StatusCode.ABORTED,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}


@dataclass(frozen=True)
class MappedError:
    status: grpc.Status
    code: grpc.StatusCode
    # Set for INTERNAL only: the id that ties the client's message to the logged stack.
    correlation_id: str | None = None


def error_domain(method: str) -> str:
    """`/modelreg.metadata.v1.ModelService/Get` -> `modelreg.metadata`."""
    package = method.lstrip("/").split("/", 1)[0]
    parts = package.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else "modelreg"


def _code_of(error: errors.DomainError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in _CODES:
            return _CODES[cls]
    return grpc.StatusCode.INTERNAL


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def domain_status(error: errors.DomainError, domain: str) -> MappedError:
    code = _code_of(error)
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=domain, metadata=dict(error.metadata)
            )
        )
    ]
    if isinstance(error, errors.InvalidArgument):
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    proto = status_pb2.Status(code=code.value[0], message=error.message, details=details)
    return MappedError(rpc_status.to_status(proto), code)


def _translate(exc: BaseException) -> errors.DomainError | None:
    """Failures of infrastructure that are not bugs: a backend down, a lost race."""
    if isinstance(exc, errors.DomainError):
        return exc
    if isinstance(exc, asyncpg.SerializationError | asyncpg.DeadlockDetectedError):
        return errors.Aborted("a concurrent change conflicted with this one; retry the call")
    if isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.CannotConnectNowError
        | asyncpg.TooManyConnectionsError
        | ConnectionRefusedError
        | ConnectionResetError,
    ):
        return errors.Unavailable("the database is unavailable", backend="postgres")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return errors.Unavailable("a backend did not answer in time", backend="postgres")
    if isinstance(exc, grpc.aio.AioRpcError) and exc.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    ):
        return errors.Unavailable("a peer service is unavailable", backend="peer")
    return None


def map_exception(exc: BaseException, method: str) -> MappedError:
    domain = error_domain(method)
    translated = _translate(exc)
    if translated is not None:
        return domain_status(translated, domain)
    correlation_id = uuid.uuid4().hex
    proto = status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error; correlation id {correlation_id}",
        details=[
            _pack(
                error_details_pb2.ErrorInfo(
                    reason="INTERNAL",
                    domain=domain,
                    metadata={"correlation_id": correlation_id},
                )
            )
        ],
    )
    return MappedError(rpc_status.to_status(proto), grpc.StatusCode.INTERNAL, correlation_id)
