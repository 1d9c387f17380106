"""Usage records: how often each principal used each model version, per kind and hour.

Services count uses in memory and flush batches here (RecordUsage); a batch id makes a retried
flush count once. ListUsage reads one model's counts, newest hour first, with the registry's
filter grammar over `principal`, `kind` and `hour_start_time`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from modelreg_common import filters as grammar
from modelreg_common.errors import InvalidArgument
from modelreg_common.names import ID_PATTERN, parse_model_version
from modelreg_events.domain.models import (
    NewUsage,
    UsageKey,
    UsageKind,
    UsageParent,
    UsageRecord,
)
from modelreg_events.domain.ports import UsageRepository

KINDS: tuple[UsageKind, ...] = ("DOWNLOAD", "ALIAS_RESOLUTION")

MAX_RECORDS = 10_000
MAX_BATCH_ID = 128
MAX_PRINCIPAL = 512
# One flush of one process: far above any real hour of one principal, far below bigint.
MAX_COUNT = 1_000_000_000_000
# Clocks of the services drift a little; an hour further ahead than this is a bug.
MAX_FUTURE = timedelta(hours=1)

_PARENT = re.compile(rf"^models/({ID_PATTERN})(?:/versions/([1-9][0-9]{{0,17}}))?$")


def parse_parent(name: str, field: str = "parent") -> UsageParent:
    match = _PARENT.match(name)
    if match is None:
        raise InvalidArgument(
            field,
            f"expected models/{{model}} or models/{{model}}/versions/{{number}}, "
            f"got {name[:200]!r}",
        )
    return UsageParent(match[1], int(match[2]) if match[2] else None)


def parse_usage_filter(text: str, field: str = "filter") -> grammar.Node | None:
    return grammar.parse_filter(text, field_name=field)


def check_batch_id(batch_id: str) -> str:
    if not batch_id:
        raise InvalidArgument("batch_id", "is required (a random id per flushed batch)")
    if len(batch_id) > MAX_BATCH_ID:
        raise InvalidArgument("batch_id", f"at most {MAX_BATCH_ID} characters")
    return batch_id


def check_records(records: Sequence[NewUsage], now: datetime) -> list[UsageRecord]:
    if len(records) > MAX_RECORDS:
        raise InvalidArgument("records", f"at most {MAX_RECORDS} records per batch")
    checked: list[UsageRecord] = []
    for i, r in enumerate(records):
        field = f"records[{i}]"
        name = parse_model_version(r.model_version, f"{field}.model_version")
        if not r.principal or len(r.principal) > MAX_PRINCIPAL:
            raise InvalidArgument(
                f"{field}.principal", f"is required, at most {MAX_PRINCIPAL} characters"
            )
        if r.kind is None:
            raise InvalidArgument(f"{field}.kind", f"must be one of {', '.join(KINDS)}")
        if r.hour_start is None:
            raise InvalidArgument(f"{field}.hour_start_time", "is required")
        hour = r.hour_start.astimezone(UTC)
        if hour != hour.replace(minute=0, second=0, microsecond=0):
            raise InvalidArgument(f"{field}.hour_start_time", "must be the start of an hour (UTC)")
        if hour > now + MAX_FUTURE:
            raise InvalidArgument(f"{field}.hour_start_time", "is in the future")
        if not 0 < r.count <= MAX_COUNT:
            raise InvalidArgument(f"{field}.count", f"must be between 1 and {MAX_COUNT}")
        checked.append(UsageRecord(name.model, name.version, r.principal, r.kind, hour, r.count))
    return checked


class UsageService:
    def __init__(self, repo: UsageRepository, *, batch_retention: timedelta) -> None:
        self._repo = repo
        self._retention = batch_retention

    async def record(self, batch_id: str, records: Sequence[NewUsage], *, now: datetime) -> bool:
        """Add the batch's counts; False (and nothing added) when the batch was seen before."""
        batch_id = check_batch_id(batch_id)
        return await self._repo.add(batch_id, check_records(records, now))

    async def list_usage(
        self,
        parent: UsageParent,
        flt: grammar.Node | None,
        *,
        after: UsageKey | None,
        limit: int,
    ) -> list[UsageRecord]:
        return await self._repo.page(parent, flt, after=after, limit=limit)

    async def forget_batches(self, now: datetime) -> int:
        """Delete batch ids older than the retention; how many went."""
        return await self._repo.forget_batches(before=now - self._retention)
