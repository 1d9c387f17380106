"""The events service's domain records."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

WebhookState = Literal["ACTIVE", "DISABLED"]
DeliveryState = Literal["PENDING", "SUCCEEDED", "DEAD_LETTER"]
UsageKind = Literal["DOWNLOAD", "ALIAS_RESOLUTION"]


@dataclass(frozen=True)
class NewEvent:
    """An event as a producer publishes it."""

    id: uuid.UUID
    source: str
    type: str
    subject: str
    actor: str
    request_id: str
    data: dict[str, Any]
    trace_context: dict[str, str]
    occurred_at: datetime
    # The network peer of the producing call (audit); '' when the change came from no RPC.
    peer: str = ""


@dataclass(frozen=True)
class EventRecord:
    sequence: int
    id: uuid.UUID
    source: str
    type: str
    subject: str
    actor: str
    request_id: str
    data: dict[str, Any]
    trace_context: dict[str, str]
    occurred_at: datetime
    published_at: datetime
    peer: str = ""

    @property
    def name(self) -> str:
        return f"events/{self.id}"


@dataclass(frozen=True)
class Webhook:
    id: str
    url: str
    event_types: tuple[str, ...]
    models: tuple[str, ...]
    state: WebhookState
    description: str
    revision: int
    created_at: datetime
    updated_at: datetime
    previous_secret_expires_at: datetime | None = None

    @property
    def name(self) -> str:
        return f"webhooks/{self.id}"

    @property
    def etag(self) -> str:
        return f'"{self.revision}"'


@dataclass(frozen=True)
class Idempotency:
    """AIP-155 for a create: the saved response is `render(webhook, secret)`, written in the
    create's own transaction (encrypted, as it holds the secret); a replay with the same
    request gets those bytes back."""

    request_id: str
    method: str
    digest: bytes
    render: Callable[[Webhook, str], bytes]


@dataclass(frozen=True)
class WebhookPatch:
    id: str
    url: str | None = None
    event_types: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None
    state: WebhookState | None = None
    description: str | None = None


@dataclass(frozen=True)
class Attempt:
    attempt: int
    started_at: datetime
    status_code: int
    latency_ms: float
    error: str


@dataclass(frozen=True)
class Delivery:
    id: uuid.UUID
    webhook_id: str
    event_id: uuid.UUID
    event_sequence: int
    event_type: str
    state: DeliveryState
    attempt_count: int
    next_attempt_at: datetime
    last_status_code: int
    last_latency_ms: float
    last_error: str
    created_at: datetime
    updated_at: datetime
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        return f"webhooks/{self.webhook_id}/deliveries/{self.id}"


@dataclass(frozen=True)
class DeliveryJob:
    """A claimed delivery with everything needed to send it."""

    delivery_id: uuid.UUID
    webhook_id: str
    url: str
    secrets: tuple[str, ...]
    attempt: int
    # Attempts since the delivery was created or last redelivered: the retry budget.
    round_attempt: int
    event: EventRecord
    # Why the webhook's secret could not be opened (an encryption key missing): the attempt
    # fails with this error instead of sending unsigned.
    secret_error: str = ""


@dataclass(frozen=True)
class SendResult:
    status_code: int
    latency_ms: float
    error: str
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300 and not self.error


@dataclass(frozen=True)
class UsageRecord:
    model: str
    version: int
    principal: str
    kind: UsageKind
    hour_start: datetime
    count: int

    @property
    def model_version(self) -> str:
        return f"models/{self.model}/versions/{self.version}"


@dataclass(frozen=True)
class UsageParent:
    """`models/{model}` (every version) or `models/{model}/versions/{version}`."""

    model: str
    version: int | None = None

    def __str__(self) -> str:
        base = f"models/{self.model}"
        return base if self.version is None else f"{base}/versions/{self.version}"


@dataclass(frozen=True)
class UsageKey:
    """The position of a row in ListUsage's order (hour, version, principal, kind; all
    descending): a page token's content."""

    hour_start: datetime
    version: int
    principal: str
    kind: str


@dataclass(frozen=True)
class NewUsage:
    """One record as a service sends it, before it is checked."""

    model_version: str
    principal: str
    kind: UsageKind | None
    hour_start: datetime | None
    count: int
