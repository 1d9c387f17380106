"""Webhook rules: validation, secrets, and the delivery loop's decisions."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from modelreg_common.access import REGISTRY, Role, current_access, require
from modelreg_common.errors import InvalidArgument
from modelreg_common.names import parse_model
from modelreg_events.domain.envelope import body_and_headers
from modelreg_events.domain.event_types import is_known
from modelreg_events.domain.models import (
    Delivery,
    DeliveryState,
    EventRecord,
    Idempotency,
    SendResult,
    Webhook,
    WebhookPatch,
    WebhookState,
)
from modelreg_events.domain.ports import Sender, WebhookRepository
from modelreg_events.domain.signing import new_secret
from modelreg_events.domain.targets import check_url

_WEBHOOK_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAX_DESCRIPTION = 1000
MAX_LIST_ITEMS = 100
MAX_OVERLAP_SECONDS = 7 * 86400
UPDATABLE = ("url", "event_types", "models", "state", "description")


def parse_webhook_name(name: str, field: str) -> str:
    prefix, _, webhook_id = name.partition("/")
    if prefix != "webhooks" or not _WEBHOOK_ID.match(webhook_id):
        raise InvalidArgument(field, f"must be `webhooks/{{id}}`, got {name!r}")
    return webhook_id


def check_webhook_id(webhook_id: str, field: str) -> str:
    if not _WEBHOOK_ID.match(webhook_id):
        raise InvalidArgument(field, "must be 1-63 of [a-z0-9-], not starting or ending with -")
    return webhook_id


def check_event_types(types: Sequence[str], field: str) -> tuple[str, ...]:
    if len(types) > MAX_LIST_ITEMS:
        raise InvalidArgument(field, f"at most {MAX_LIST_ITEMS} entries")
    for i, t in enumerate(types):
        if not is_known(t):
            raise InvalidArgument(f"{field}[{i}]", f"unknown event type {t!r}")
    return tuple(dict.fromkeys(types))


def check_models(models: Sequence[str], field: str) -> tuple[str, ...]:
    if len(models) > MAX_LIST_ITEMS:
        raise InvalidArgument(field, f"at most {MAX_LIST_ITEMS} entries")
    for i, m in enumerate(models):
        parse_model(m, field=f"{field}[{i}]")
    return tuple(dict.fromkeys(models))


def check_description(text: str, field: str) -> str:
    if len(text) > MAX_DESCRIPTION:
        raise InvalidArgument(field, f"at most {MAX_DESCRIPTION} characters")
    return text


def require_on_hook(models: Sequence[str], role: Role) -> None:
    """A webhook limited to models is theirs to manage (owner) or read (viewer); one that sees
    every model's events belongs to the registry: admins manage it, registry viewers read it."""
    if not models:
        require(Role.ADMIN if role >= Role.OWNER else role, REGISTRY)
    for model in models:
        require(role, model)


def may_read_hook(models: Sequence[str]) -> bool:
    access = current_access()
    if not models:
        return access.role_on(None) >= Role.VIEWER
    return all(access.allows(Role.VIEWER, m) for m in models)


class WebhooksService:
    def __init__(
        self,
        repo: WebhookRepository,
        sender: Sender,
        *,
        allow_private_targets: bool,
        max_webhooks: int,
        default_overlap_seconds: float,
        clock: Any = time.time,
    ) -> None:
        self._repo = repo
        self._sender = sender
        self._allow_private = allow_private_targets
        self._max_webhooks = max_webhooks
        self._default_overlap = default_overlap_seconds
        self._clock = clock

    def check_url(self, url: str, field: str) -> str:
        return check_url(url, field=field, allow_private=self._allow_private)

    async def create(
        self,
        *,
        webhook_id: str,
        url: str,
        event_types: Sequence[str],
        models: Sequence[str],
        state: WebhookState,
        description: str,
        now: datetime,
        idempotency: Idempotency | None = None,
    ) -> tuple[Webhook, str] | bytes:
        """The new webhook and its secret, or the saved response of an earlier identical
        request (`idempotency`)."""
        checked_models = check_models(models, "webhook.models")
        require_on_hook(checked_models, Role.OWNER)
        draft = Webhook(
            id=check_webhook_id(webhook_id, "webhook_id") if webhook_id else uuid.uuid4().hex,
            url=self.check_url(url, "webhook.url"),
            event_types=check_event_types(event_types, "webhook.event_types"),
            models=checked_models,
            state=state,
            description=check_description(description, "webhook.description"),
            revision=1,
            created_at=now,
            updated_at=now,
        )
        secret = new_secret()
        created = await self._repo.create(
            draft, secret, max_webhooks=self._max_webhooks, idempotency=idempotency
        )
        return created if isinstance(created, bytes) else (created, secret)

    async def get(self, webhook_id: str) -> Webhook:
        webhook = await self._repo.get(webhook_id)
        require_on_hook(webhook.models, Role.VIEWER)
        return webhook

    async def _managed(self, webhook_id: str) -> Webhook:
        webhook = await self._repo.get(webhook_id)
        require_on_hook(webhook.models, Role.OWNER)
        return webhook

    async def list_webhooks(self, *, after: str | None, limit: int) -> list[Webhook]:
        """Up to `limit` webhooks the caller may read, in id order; hidden ones are skipped
        inside the page, so neither page sizes nor tokens reveal them."""
        found: list[Webhook] = []
        cursor = after
        while len(found) < limit:
            batch = await self._repo.list_webhooks(after=cursor, limit=limit)
            found.extend(w for w in batch if may_read_hook(w.models))
            if len(batch) < limit:
                break
            cursor = batch[-1].id
        return found[:limit]

    async def delete(self, webhook_id: str, *, etag: str | None) -> None:
        await self._managed(webhook_id)
        await self._repo.delete(webhook_id, etag=etag)

    async def update(self, patch: WebhookPatch, *, etag: str | None) -> Webhook:
        await self._managed(patch.id)
        if patch.models is not None:
            require_on_hook(check_models(patch.models, "webhook.models"), Role.OWNER)
        checked = WebhookPatch(
            id=patch.id,
            url=self.check_url(patch.url, "webhook.url") if patch.url is not None else None,
            event_types=check_event_types(patch.event_types, "webhook.event_types")
            if patch.event_types is not None
            else None,
            models=check_models(patch.models, "webhook.models")
            if patch.models is not None
            else None,
            state=patch.state,
            description=check_description(patch.description, "webhook.description")
            if patch.description is not None
            else None,
        )
        return await self._repo.update(checked, etag=etag)

    async def rotate_secret(self, webhook_id: str, overlap_seconds: float) -> tuple[Webhook, str]:
        if overlap_seconds < 0 or overlap_seconds > MAX_OVERLAP_SECONDS:
            raise InvalidArgument("overlap", f"must be between 0 and {MAX_OVERLAP_SECONDS} s")
        overlap = overlap_seconds or self._default_overlap
        await self._managed(webhook_id)
        secret = new_secret()
        return await self._repo.rotate_secret(webhook_id, secret, overlap), secret

    async def test(self, webhook_id: str, event: EventRecord) -> SendResult:
        await self._managed(webhook_id)
        url, secrets = await self._repo.signing_secrets(webhook_id)
        body, headers = body_and_headers(event, secrets, int(self._clock()))
        return await self._sender.send(url, headers, body)

    async def list_deliveries(
        self,
        webhook_id: str,
        *,
        state: DeliveryState | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
        readable: frozenset[str] | None = None,
    ) -> list[Delivery]:
        require_on_hook((await self._repo.get(webhook_id)).models, Role.VIEWER)
        return await self._repo.list_deliveries(
            webhook_id, state=state, after=after, limit=limit, readable=readable
        )

    async def redeliver(self, webhook_id: str, event_id: uuid.UUID) -> Delivery:
        await self._managed(webhook_id)
        return await self._repo.redeliver(webhook_id, event_id)
