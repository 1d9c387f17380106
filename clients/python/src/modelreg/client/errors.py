"""Typed errors: one class per gRPC status code, with the registry's google.rpc details."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class RegistryError(Exception):
    """A call the registry refused. `reason` is the ErrorInfo reason (e.g. "INVALID_FIELD"),
    `metadata` its metadata (e.g. {"name": "models/x"}), `field_violations` the bad fields."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        field_violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.field_violations = field_violations

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class InvalidArgumentError(RegistryError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(RegistryError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(RegistryError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(RegistryError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AbortedError(RegistryError):
    code = grpc.StatusCode.ABORTED


class PermissionDeniedError(RegistryError):
    code = grpc.StatusCode.PERMISSION_DENIED


class UnauthenticatedError(RegistryError):
    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhaustedError(RegistryError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(RegistryError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(RegistryError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class CancelledError(RegistryError):
    code = grpc.StatusCode.CANCELLED


class InternalError(RegistryError):
    code = grpc.StatusCode.INTERNAL


class UnimplementedError(RegistryError):
    code = grpc.StatusCode.UNIMPLEMENTED


_BY_CODE: dict[grpc.StatusCode, type[RegistryError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        AbortedError,
        PermissionDeniedError,
        UnauthenticatedError,
        ResourceExhaustedError,
        UnavailableError,
        DeadlineExceededError,
        CancelledError,
        InternalError,
        UnimplementedError,
    )
}


def from_rpc_error(error: grpc.RpcError) -> RegistryError:
    """The typed error for a failed call (sync `grpc.RpcError` or `grpc.aio.AioRpcError`)."""
    code: grpc.StatusCode = error.code()
    message: str = error.details() or code.name
    reason, metadata = "", {}
    violations: tuple[FieldViolation, ...] = ()
    status = rpc_status.from_call(error)
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations = tuple(
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                )
    cls = _BY_CODE.get(code, RegistryError)
    err = cls(message, reason=reason, metadata=metadata, field_violations=violations)
    if cls is RegistryError:
        err.code = code
    return err
