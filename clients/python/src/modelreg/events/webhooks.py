"""Verify modelreg webhook deliveries on the receiving side (stdlib only).

Deliveries follow Standard Webhooks: headers `webhook-id`, `webhook-timestamp` (unix seconds)
and `webhook-signature`, a space-separated list of `v1,<base64 HMAC-SHA256>` over
`"{webhook-id}.{webhook-timestamp}.{raw body}"`, keyed with the base64-decoded part of the
secret after `whsec_`. During a secret rotation two signatures are sent; either may match.

    from modelreg.events.webhooks import verify_signature, WebhookVerificationError
    verify_signature(secret, request.headers, raw_body)  # raises if not authentic
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

__all__ = ["DEFAULT_TOLERANCE_SECONDS", "WebhookVerificationError", "sign", "verify_signature"]

DEFAULT_TOLERANCE_SECONDS = 300
_PREFIX = "whsec_"


class WebhookVerificationError(ValueError):
    """The delivery is not authentic, or is too old or too far in the future."""


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("the secret is not a `whsec_<base64>` secret") from None


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 signature>` for one secret: what the server sends."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return (
        "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()
    )


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"missing header {name}")


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise WebhookVerificationError unless `body` was signed with `secret` within
    `tolerance_seconds` of `now` (replay protection). `body` must be the raw bytes received."""
    message_id = _header(headers, "webhook-id")
    raw_timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    expected = sign(secret, message_id, timestamp, body).encode()
    for candidate in signatures.split():
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode(), expected):
            return
    raise WebhookVerificationError("no signature matches")
