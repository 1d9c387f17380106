"""The modelreg Python client: one interface to the metadata, artifact, lifecycle and events
services, generated from their protos.

    from modelreg.client import Registry

    with Registry("127.0.0.1:50051", token=...) as registry:
        reply = registry.metadata.get_model_version(name="models/fraud/versions/3")
"""

from modelreg.client._config import CallPolicy
from modelreg.client.aio import AsyncRegistry
from modelreg.client.errors import (
    AbortedError,
    AlreadyExistsError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    RegistryError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from modelreg.client.registry import Registry

__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "AsyncRegistry",
    "CallPolicy",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "Registry",
    "RegistryError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
]
