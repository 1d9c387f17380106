"""Domain errors. The domain raises these; one interceptor turns them into gRPC statuses.

This module imports nothing from grpc, protobuf or asyncpg, so domain code can use it freely.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: `field` is a path into the request, e.g. `model_version.tags["k"]`."""

    field: str
    description: str


class DomainError(Exception):
    """Base of every error that is the caller's to act on (not a bug)."""

    reason: str = "INTERNAL"

    def __init__(self, message: str, *, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(DomainError):
    reason = "INVALID_FIELD"

    def __init__(self, field: str, description: str, *more: FieldViolation) -> None:
        self.violations = (FieldViolation(field, description), *more)
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(f"invalid argument: {summary}")

    @classmethod
    def of(cls, violations: list[FieldViolation]) -> InvalidArgument:
        first, *rest = violations
        return cls(first.field, first.description, *rest)


class NotFound(DomainError):
    reason = "RESOURCE_NOT_FOUND"

    def __init__(self, name: str, *, kind: str = "resource") -> None:
        super().__init__(f"{kind} {name!r} not found", metadata={"name": name})


class AlreadyExists(DomainError):
    reason = "RESOURCE_ALREADY_EXISTS"

    def __init__(self, name: str, *, kind: str = "resource") -> None:
        super().__init__(f"{kind} {name!r} already exists", metadata={"name": name})


class FailedPrecondition(DomainError):
    reason = "INVALID_STATE_TRANSITION"

    def __init__(
        self,
        message: str,
        *,
        from_state: str | None = None,
        to_state: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        meta = dict(metadata or {})
        if from_state is not None:
            meta["from"] = from_state
        if to_state is not None:
            meta["to"] = to_state
        super().__init__(message, metadata=meta)


class EtagMismatch(DomainError):
    reason = "ETAG_MISMATCH"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"etag of {name!r} does not match: it changed since it was read; re-read, then retry",
            metadata={"name": name},
        )


class Aborted(DomainError):
    """A concurrent transaction won; retrying the same call may succeed."""

    reason = "CONCURRENT_MODIFICATION"


class PermissionDenied(DomainError):
    reason = "MISSING_ROLE"

    def __init__(self, message: str, *, permission: str = "", resource: str = "") -> None:
        meta = {k: v for k, v in (("permission", permission), ("resource", resource)) if v}
        super().__init__(message, metadata=meta)


class Unauthenticated(DomainError):
    reason = "INVALID_TOKEN"


class LimitExceeded(DomainError):
    reason = "REQUEST_TOO_LARGE"

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message, metadata={"limit": limit})


class Unavailable(DomainError):
    reason = "BACKEND_UNAVAILABLE"

    def __init__(self, message: str, *, backend: str) -> None:
        super().__init__(message, metadata={"backend": backend})
