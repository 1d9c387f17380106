"""The outbox relay, run by every service: ships its schema's outbox rows to the events
service's PublishEvents and stamps them sent.

- Wakes on NOTIFY `modelreg_outbox` (payload: the schema) over a dedicated connection, with a
  polling fallback for lost notifications and a dropped LISTEN connection.
- Claims rows with `FOR UPDATE SKIP LOCKED`, so replicas share the work. The row lock is the
  claim (the outbox has no lease column), so the claiming transaction stays open across the
  PublishEvents call; the call has a deadline, and a crash rolls the claim back.
- Per-subject order: a row is shipped only if no earlier unsent row of its subject is held by
  another relay; otherwise it waits for the next round.
- At least once: PublishEvents is idempotent on the event id, so a row shipped twice (a crash
  after publishing, before the commit that marks it) is recorded once.
- While the events service is down, producers keep committing; the relay backs off
  exponentially and catches up when it is back.
- When the events service runs in this very process (no events target configured), the relay
  hands it the batch directly instead of over loopback gRPC: same call, same idempotency, no
  serialisation, HTTP/2 framing or interceptors on every event's critical path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
from google.protobuf import struct_pb2
from grpc import aio

from modelreg.events.v1 import event_pb2, event_service_pb2, event_service_pb2_grpc
from modelreg_common.errors import DomainError
from modelreg_common.logs import get_logger
from modelreg_common.outbox import NOTIFY_CHANNEL
from modelreg_common.timestamps import timestamp
from modelreg_common.waits import cancel_and_wait

if TYPE_CHECKING:
    from modelreg_common.server import ServiceRuntime

log = get_logger("modelreg.relay")

# PublishEvents of an events service in this process: the request, and a callback it calls
# once the events are in the log (ordered, visible) but before they are flushed to disk.
LocalPublish = Callable[
    [event_service_pb2.PublishEventsRequest, Callable[[], None]],
    Awaitable[event_service_pb2.PublishEventsResponse],
]

# The events service of each server in this process, by the `Peers` its services share (a
# process may hold several servers: tests, benchmarks). Weak, so a stopped server is forgotten.
_local_events: weakref.WeakKeyDictionary[object, LocalPublish] = weakref.WeakKeyDictionary()


def serve_events_locally(peers: object, publish: LocalPublish | None) -> None:
    """Let the relays of the server owning `peers` call `publish` (PublishEvents of its own
    events service) directly; None withdraws it (the service is stopping)."""
    if publish is None:
        _local_events.pop(peers, None)
    else:
        _local_events[peers] = publish


class Listener:
    """LISTEN on one channel over a dedicated connection, reconnecting when it drops.

    `on_payload` runs on the loop for each notification; `on_reconnect` after every (re)connect,
    since notifications sent while disconnected are lost.
    """

    def __init__(
        self,
        dsn: str,
        channel: str,
        on_payload: Callable[[str], None],
        on_reconnect: Callable[[], None],
        *,
        name: str,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._on_payload = on_payload
        self._on_reconnect = on_reconnect
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"listen:{self._name}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def _notified(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        self._on_payload(str(payload))

    async def _run(self) -> None:
        delay = 0.1
        while True:
            conn: asyncpg.Connection[Any] | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn, server_settings={"application_name": f"modelreg-listen-{self._name}"}
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(self._channel, self._notified)
                self.connected.set()
                delay = 0.1
                self._on_reconnect()
                await lost.wait()
                log.warning("listen.lost", channel=self._channel, name=self._name)
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("listen.failed", channel=self._channel, error=str(exc))
            finally:
                self.connected.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=1))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


_CLAIM = """
WITH claimed AS (
    SELECT seq, id, type, subject, actor, request_id, data, trace_context, occurred_at, peer
    FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT $1
    FOR UPDATE SKIP LOCKED
)
SELECT c.*, EXISTS (
    SELECT 1 FROM outbox o
    WHERE o.sent_at IS NULL AND o.subject = c.subject AND o.seq < c.seq
      AND o.seq NOT IN (SELECT seq FROM claimed)
) AS blocked
FROM claimed c ORDER BY c.seq
"""


# Parsed on every pooled connection of a service whose relay runs (its hot path).
RELAY_STATEMENTS = (_CLAIM,)


def _struct(value: Any) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, dict):
        s.update(value)
    return s


def _event(row: asyncpg.Record, source: str) -> event_pb2.Event:
    trace = row["trace_context"]
    if isinstance(trace, str):
        trace = json.loads(trace)
    return event_pb2.Event(
        id=str(row["id"]),
        source=source,
        type=row["type"],
        subject=row["subject"],
        time=timestamp(row["occurred_at"]),
        actor=row["actor"],
        request_id=row["request_id"],
        data=_struct(row["data"]),
        trace_context={str(k): str(v) for k, v in (trace or {}).items()},
        peer=row["peer"],
    )


class OutboxRelay:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool[Any],
        dsn: str,
        schema: str,
        source: str,
        channel: Callable[[], aio.Channel],
        timeout: float,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        max_backoff: float = 10.0,
        concurrency: int = 2,
        local: Callable[[], LocalPublish | None] | None = None,
    ) -> None:
        self._pool = pool
        self._local = local
        self._schema = schema
        self._source = source
        self._channel = channel
        self._timeout = timeout
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._concurrency = concurrency
        self._order = asyncio.Lock()
        self._failures = 0
        self._blocked_seen = False
        self._wake = asyncio.Event()
        self._listener = Listener(
            dsn, NOTIFY_CHANNEL, self._on_notify, self._wake.set, name=f"outbox-{schema}"
        )
        self._task: asyncio.Task[None] | None = None
        self.shipped = 0

    @classmethod
    def for_service(cls, runtime: ServiceRuntime, schema: str, source: str) -> OutboxRelay:
        peers = runtime.peers
        # A configured target is another deployment; only then must the call leave the process.
        local = (lambda: _local_events.get(peers)) if peers.is_local("events") else None
        return cls(
            pool=runtime.pool,
            dsn=runtime.dsn,
            schema=schema,
            source=source,
            channel=lambda: peers.channel("events"),
            timeout=peers.timeout,
            concurrency=runtime.settings.relay_concurrency,
            local=local,
        )

    def _on_notify(self, payload: str) -> None:
        if payload == self._schema:
            self._wake.set()

    async def start(self) -> None:
        self._listener.start()
        self._task = asyncio.create_task(self._run(), name=f"relay:{self._schema}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self._listener.stop()

    async def run_once(self) -> int:
        """Ship one batch; the number of rows marked sent. Raises if the events service
        cannot be reached (the claim is rolled back)."""
        # Rounds claim and append one after the other, so the log takes this outbox's events
        # in the order a single relay would ship them (across subjects too: a version's event
        # never precedes its model's). Only the flush that follows the append overlaps the
        # next round; over gRPC, where the two are one call, rounds do not overlap at all.
        await self._order.acquire()
        ordered = True

        def appended() -> None:
            nonlocal ordered
            if ordered:
                ordered = False
                self._order.release()

        try:
            return await self._ship(appended)
        finally:
            appended()

    async def _ship(self, appended: Callable[[], None]) -> int:
        async with self._pool.acquire() as conn:
            # The transaction is begun and ended by hand so that each end is one round trip:
            # three per round (begin, claim, mark and commit) instead of five. A round that
            # raises leaves it open; the pool's reset rolls it back, releasing the claim.
            # The only write here is `sent_at`. Losing it in a crash re-ships rows the log
            # already holds (deduplicated by id), so it need not wait for a WAL flush: that
            # keeps an fsync out of every relay round.
            await conn.execute("BEGIN; SET LOCAL synchronous_commit = off")
            # Rows skipped as locked belong to another relay; a later row of the same subject
            # must wait for it (`blocked`), or the subject's events would be reordered.
            claimed = await conn.fetch(_CLAIM, self._batch_size)
            rows = [r for r in claimed if not r["blocked"]]
            if len(rows) < len(claimed):
                self._blocked_seen = True
            if not rows:
                await conn.execute("COMMIT")
                return 0
            request = event_service_pb2.PublishEventsRequest(
                source=self._source, events=[_event(r, self._source) for r in rows]
            )
            local = self._local() if self._local is not None else None
            if local is not None:
                async with asyncio.timeout(self._timeout):
                    await local(request, appended)
            else:
                stub = event_service_pb2_grpc.EventServiceStub(self._channel())
                await stub.PublishEvents(request, timeout=self._timeout)
            # A simple query takes no parameters; the sequence numbers are integers read from
            # the table, so writing them into the text is safe.
            seqs = ",".join(str(int(r["seq"])) for r in rows)
            await conn.execute(
                f"UPDATE outbox SET sent_at = now() WHERE seq = any('{{{seqs}}}'::bigint[]); COMMIT"
            )
        self.shipped += len(rows)
        return len(rows)

    async def drain(self) -> int:
        total = 0
        while (n := await self.run_once()) > 0:
            total += n
        return total

    async def _run(self) -> None:
        # Up to `concurrency` rounds overlap: a round spends much of its time waiting for the
        # log's WAL flush after its append, and an event committed meanwhile would otherwise
        # queue behind that flush. The next round claims (SKIP LOCKED) and appends once the
        # previous one has appended (see run_once), so the order of the log is unchanged.
        rounds: set[asyncio.Task[int]] = set()
        due = True
        while True:
            if due and len(rounds) < self._concurrency:
                due = False
                self._wake.clear()
                rounds.add(asyncio.create_task(self._round(), name=f"relay-round:{self._schema}"))
            waiter: asyncio.Task[bool] | None = None
            waitables: set[asyncio.Future[Any]] = set(rounds)
            if len(rounds) < self._concurrency:
                waiter = asyncio.create_task(self._wake.wait())
                waitables.add(waiter)
            try:
                done, _ = await asyncio.wait(
                    waitables,
                    # Only an idle relay polls (the fallback for a lost NOTIFY); a running
                    # round always ends.
                    timeout=None if rounds else self._poll_interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            except asyncio.CancelledError:
                for task in rounds:
                    task.cancel()
                await asyncio.gather(*rounds, return_exceptions=True)
                raise
            finally:
                if waiter is not None:
                    waiter.cancel()
            if not done or self._wake.is_set():
                due = True
            for task in [t for t in rounds if t in done]:
                rounds.discard(task)
                shipped = task.result()
                # A full batch may have more behind it; a failed round (-1) retries after its
                # backoff; rows another round held back as `blocked` may go once it is done.
                if shipped >= self._batch_size or shipped < 0 or self._blocked_seen:
                    self._blocked_seen = False
                    due = True

    async def _round(self) -> int:
        """One run_once that never raises: the rows shipped, or -1 after a failure and its
        backoff."""
        try:
            shipped = await self.run_once()
        except asyncio.CancelledError:
            raise
        except (
            grpc.RpcError,
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            DomainError,
        ) as exc:
            self._failures += 1
            delay = min(self._max_backoff, 0.05 * 2 ** min(self._failures, 10))
            delay *= 0.5 + random.random() / 2
            if self._failures == 1 or self._failures % 20 == 0:
                log.warning(
                    "outbox.relay_failed",
                    schema=self._schema,
                    failures=self._failures,
                    error=str(exc)[:300],
                    retry_in=round(delay, 2),
                )
            await asyncio.sleep(delay)
            return -1
        except Exception:
            log.exception("outbox.relay_bug", schema=self._schema)
            await asyncio.sleep(self._max_backoff)
            return -1
        if self._failures:
            log.info("outbox.relay_recovered", schema=self._schema, failures=self._failures)
            self._failures = 0
        if shipped:
            log.debug("outbox.relayed", schema=self._schema, count=shipped)
        return shipped
