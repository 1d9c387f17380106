"""Usage counting on the hot path: `record()` is a dict increment; a background task flushes
the counts to the events service's RecordUsage every few seconds.

- Counts are keyed by (principal, model version, kind, hour), so memory grows with distinct
  users per hour, not with calls; the number of keys held is bounded, and a use beyond the
  bound is dropped and counted in `modelreg_usage_dropped_total` (logged once).
- Each flushed batch gets a fresh id and keeps it until the events service acknowledges it, so
  a flush retried after a lost answer is counted once (RecordUsage is idempotent on it).
- While the events service is down the counts stay here and go out with the next flush.
- The services' own calls (the internal principal, and work outside any RPC) are not usage.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import grpc
from grpc import aio
from prometheus_client import CollectorRegistry, Counter

from modelreg.events.v1 import usage_pb2, usage_service_pb2, usage_service_pb2_grpc
from modelreg_common.context import current_principal
from modelreg_common.errors import InvalidArgument
from modelreg_common.logs import get_logger
from modelreg_common.names import parse_model_version
from modelreg_common.timestamps import timestamp
from modelreg_common.waits import cancel_and_wait

if TYPE_CHECKING:
    from modelreg_common.server import Peers

log = get_logger("modelreg.usage")

UsageKind: TypeAlias = usage_pb2.UsageKind.ValueType
DOWNLOAD: UsageKind = usage_pb2.USAGE_KIND_DOWNLOAD
ALIAS_RESOLUTION: UsageKind = usage_pb2.USAGE_KIND_ALIAS_RESOLUTION
_KINDS = frozenset({DOWNLOAD, ALIAS_RESOLUTION})

# RecordUsage's limit per request.
MAX_BATCH_RECORDS = 10_000


class UsageSink(Protocol):
    """What a servicer needs to count a use: `UsageRecorder`, or a fake in tests."""

    def record(self, model_version: str, kind: UsageKind) -> None: ...


def model_version_of(owner: str) -> str | None:
    """`owner` if it names a model version (an artifact owner may also be a run), else None."""
    if not owner.startswith("models/"):
        return None
    try:
        return str(parse_model_version(owner))
    except InvalidArgument:
        return None


@dataclass(frozen=True)
class UsageKey:
    principal: str
    model_version: str
    kind: UsageKind
    hour_start: datetime


@dataclass(frozen=True)
class _Batch:
    id: str
    counts: dict[UsageKey, int]


def _hour(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


class UsageRecorder:
    def __init__(
        self,
        channel: Callable[[], aio.Channel],
        *,
        timeout: float,
        flush_seconds: float = 5.0,
        max_keys: int = 100_000,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._channel = channel
        self._timeout = timeout
        self._flush_seconds = flush_seconds
        self._max_keys = max_keys
        self._clock = clock
        # Counts not yet put in a batch, and batches sent but not acknowledged (oldest first).
        self._counts: dict[UsageKey, int] = {}
        self._unacked: list[_Batch] = []
        self._held_keys = 0
        self._warned_full = False
        self._flushing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.dropped = Counter(
            "modelreg_usage_dropped_total",
            "Uses not counted because the recorder held its maximum of keys (events service "
            "unreachable for long).",
            registry=registry if registry is not None else CollectorRegistry(),
        )

    @classmethod
    def for_peers(cls, peers: Peers, **kwargs: Any) -> UsageRecorder:
        return cls(lambda: peers.channel("events"), timeout=peers.timeout, **kwargs)

    @property
    def pending(self) -> dict[UsageKey, int]:
        """Every count not yet acknowledged by the events service (a copy)."""
        total: dict[UsageKey, int] = {}
        for batch in [*self._unacked, _Batch("", self._counts)]:
            for key, n in batch.counts.items():
                total[key] = total.get(key, 0) + n
        return total

    def record(self, model_version: str, kind: UsageKind) -> None:
        """Count one use of `model_version` by the caller of the current RPC."""
        principal = current_principal()
        if principal.method == "internal":
            return
        try:
            parse_model_version(model_version)
            if kind not in _KINDS:
                raise InvalidArgument("kind", f"unknown usage kind {kind}")
        except InvalidArgument:
            # A record RecordUsage would refuse would sink its whole batch; callers pass names
            # they resolved themselves, so this is a bug worth a log line, not a failed call.
            log.warning("usage.bad_record", model_version=model_version[:200], kind=int(kind))
            return
        key = UsageKey(principal.subject, model_version, kind, _hour(self._clock()))
        if key in self._counts:
            self._counts[key] += 1
            return
        if self._held_keys >= self._max_keys:
            self.dropped.inc()
            if not self._warned_full:
                self._warned_full = True
                log.warning("usage.recorder_full", max_keys=self._max_keys)
            return
        self._counts[key] = 1
        self._held_keys += 1

    def _cut_batches(self) -> None:
        """Move the open counts into batches of at most MAX_BATCH_RECORDS, each with its id."""
        counts, self._counts = self._counts, {}
        items = list(counts.items())
        for start in range(0, len(items), MAX_BATCH_RECORDS):
            chunk = dict(items[start : start + MAX_BATCH_RECORDS])
            self._unacked.append(_Batch(uuid.uuid4().hex, chunk))

    async def flush(self) -> int:
        """Send everything counted so far; the number of batches acknowledged. Raises
        `grpc.RpcError` when the events service cannot take them: they stay for the next
        flush, under the same ids."""
        async with self._flushing:
            self._cut_batches()
            acknowledged = 0
            while self._unacked:
                batch = self._unacked[0]
                try:
                    await self._send(batch)
                except grpc.RpcError as exc:
                    if _code(exc) != grpc.StatusCode.INVALID_ARGUMENT:
                        raise
                    # Never accepted however often it is retried: drop it, keep the rest.
                    log.error("usage.batch_refused", batch_id=batch.id, error=str(exc)[:300])
                self._unacked.pop(0)
                self._held_keys -= len(batch.counts)
                acknowledged += 1
            if self._warned_full and self._held_keys < self._max_keys:
                self._warned_full = False
            return acknowledged

    async def _send(self, batch: _Batch) -> None:
        stub = usage_service_pb2_grpc.UsageServiceStub(self._channel())
        await stub.RecordUsage(
            usage_service_pb2.RecordUsageRequest(
                batch_id=batch.id,
                records=[
                    usage_pb2.UsageRecord(
                        model_version=key.model_version,
                        principal=key.principal,
                        kind=key.kind,
                        hour_start_time=timestamp(key.hour_start),
                        count=n,
                    )
                    for key, n in batch.counts.items()
                ],
            ),
            timeout=self._timeout,
        )

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-flush")

    async def stop(self) -> None:
        """Stop the loop and flush once more; counts that cannot be sent now are logged."""
        await cancel_and_wait(self._task)
        self._task = None
        try:
            await self.flush()
        except grpc.RpcError as exc:
            log.warning("usage.lost_at_stop", keys=len(self.pending), error=str(exc)[:300])

    async def _run(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self._flush_seconds)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except grpc.RpcError as exc:
                failures += 1
                if failures == 1 or failures % 60 == 0:
                    log.warning(
                        "usage.flush_failed",
                        failures=failures,
                        keys=len(self.pending),
                        error=str(exc)[:300],
                    )
                continue
            except Exception:
                log.exception("usage.flush_bug")
                continue
            if failures:
                log.info("usage.flush_recovered", failures=failures)
                failures = 0


def _code(exc: grpc.RpcError) -> grpc.StatusCode | None:
    code = getattr(exc, "code", None)
    return code() if callable(code) else None
