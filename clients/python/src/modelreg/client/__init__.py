"""The modelreg Python client: one interface to the metadata, artifact, lifecycle and events
services, generated from their protos.

    from modelreg.client import Registry

    with Registry("127.0.0.1:50051", token=...) as registry:
        reply = registry.metadata.get_model_version(name="models/fraud/versions/3")
        version = registry.register_model("fraud", "out/model", run="experiments/e/runs/r1")
        registry.download("models:/fraud@champion", "/tmp/fraud")

Webhook receivers check deliveries with `verify_signature(secret, headers, raw_body)`.
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
from modelreg.client.helpers import DigestMismatch, Promotion, parse_reference
from modelreg.client.registry import Registry
from modelreg.events.webhooks import WebhookVerificationError, verify_signature

__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "AsyncRegistry",
    "CallPolicy",
    "DigestMismatch",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "Promotion",
    "Registry",
    "RegistryError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
    "WebhookVerificationError",
    "parse_reference",
    "verify_signature",
]
