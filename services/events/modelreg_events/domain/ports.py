"""What the domain needs from the outside world; store/ implements these."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from modelreg_common.filters import Node
from modelreg_events.domain.filters import EventFilter
from modelreg_events.domain.models import (
    Delivery,
    DeliveryJob,
    DeliveryState,
    EventRecord,
    Idempotency,
    NewEvent,
    SendResult,
    UsageKey,
    UsageParent,
    UsageRecord,
    Webhook,
    WebhookPatch,
)


class EventLog(Protocol):
    async def append(self, events: Sequence[NewEvent]) -> list[int]: ...
    async def make_durable(self) -> None: ...
    async def get(
        self, event_id: uuid.UUID, *, readable: frozenset[str] | None = None
    ) -> EventRecord | None: ...
    async def last_sequence(self) -> int: ...
    async def page(
        self,
        flt: EventFilter,
        *,
        after: int | None,
        limit: int,
        descending: bool = False,
        readable: frozenset[str] | None = None,
    ) -> list[EventRecord]: ...


class Wakeups(Protocol):
    """The highest sequence announced by the log, and a way to wait for a higher one."""

    @property
    def latest(self) -> int: ...
    def announce(self, sequence: int) -> None: ...
    async def wait(self, beyond: int, max_wait: float) -> None: ...


class WebhookRepository(Protocol):
    async def create(
        self,
        webhook: Webhook,
        secret: str,
        *,
        max_webhooks: int,
        idempotency: Idempotency | None = None,
    ) -> Webhook | bytes: ...
    async def get(self, webhook_id: str) -> Webhook: ...
    async def list_webhooks(self, *, after: str | None, limit: int) -> list[Webhook]: ...
    async def update(self, patch: WebhookPatch, *, etag: str | None) -> Webhook: ...
    async def delete(self, webhook_id: str, *, etag: str | None) -> None: ...
    async def rotate_secret(
        self, webhook_id: str, secret: str, overlap_seconds: float
    ) -> Webhook: ...
    async def signing_secrets(self, webhook_id: str) -> tuple[str, tuple[str, ...]]: ...
    async def list_deliveries(
        self,
        webhook_id: str,
        *,
        state: DeliveryState | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
        readable: frozenset[str] | None = None,
    ) -> list[Delivery]: ...
    async def redeliver(self, webhook_id: str, event_id: uuid.UUID) -> Delivery: ...
    async def claim(self, limit: int, lease_seconds: float) -> list[DeliveryJob]: ...
    async def next_due_in(self) -> float | None: ...
    async def record_attempt(
        self, job: DeliveryJob, started_at: datetime, result: SendResult, *, retry_in: float | None
    ) -> DeliveryState: ...


class Sender(Protocol):
    async def send(self, url: str, headers: dict[str, str], body: bytes) -> SendResult: ...


class UsageRepository(Protocol):
    async def add(self, batch_id: str, records: Sequence[UsageRecord]) -> bool:
        """Add the counts unless `batch_id` was applied before; whether they were added."""
        ...

    async def page(
        self, parent: UsageParent, flt: Node | None, *, after: UsageKey | None, limit: int
    ) -> list[UsageRecord]: ...
    async def forget_batches(self, *, before: datetime) -> int: ...
