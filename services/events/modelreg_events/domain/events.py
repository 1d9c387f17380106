"""The event log's rules: publishing, listing, and subscriptions that never miss an event."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from modelreg_common.errors import InvalidArgument, LimitExceeded, NotFound
from modelreg_events.domain.event_types import is_well_formed
from modelreg_events.domain.filters import EventFilter
from modelreg_events.domain.models import EventRecord, NewEvent
from modelreg_events.domain.ports import EventLog, Wakeups

MAX_PUBLISH_BATCH = 1000
MAX_SUBJECT = 1024
MAX_PEER = 512


def parse_event_name(name: str, field: str) -> uuid.UUID:
    prefix, _, raw = name.partition("/")
    if prefix != "events" or not raw:
        raise InvalidArgument(field, f"must be `events/{{id}}`, got {name!r}")
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidArgument(field, f"{raw!r} is not an event id (a UUID)") from None


def check_new_events(events: Sequence[NewEvent]) -> None:
    if len(events) > MAX_PUBLISH_BATCH:
        raise LimitExceeded(
            f"at most {MAX_PUBLISH_BATCH} events per call", limit=f"events={MAX_PUBLISH_BATCH}"
        )
    for i, e in enumerate(events):
        if not e.source:
            raise InvalidArgument(f"events[{i}].source", "is required (or set request.source)")
        if not is_well_formed(e.type):
            raise InvalidArgument(f"events[{i}].type", f"{e.type!r} is not `entity.action`")
        if not e.subject or len(e.subject) > MAX_SUBJECT:
            raise InvalidArgument(
                f"events[{i}].subject", f"is required, at most {MAX_SUBJECT} characters"
            )
        if len(e.peer) > MAX_PEER:
            raise InvalidArgument(f"events[{i}].peer", f"at most {MAX_PEER} characters")


# The models a subscriber may read now (None: every model); raises when it may read none.
ReadableModels = Callable[[], Awaitable[frozenset[str] | None]]


class EventsService:
    def __init__(
        self, log: EventLog, wakeups: Wakeups, *, poll_interval: float, page_size: int
    ) -> None:
        self._log = log
        self._wakeups = wakeups
        self._poll_interval = poll_interval
        self._page_size = page_size

    async def publish(
        self, events: Sequence[NewEvent], *, appended: Callable[[], None] | None = None
    ) -> list[int]:
        """Append `events`; their sequences (0 for an id already in the log) once durable.

        Subscribers are woken as soon as the append commits, before the WAL flush: a flush
        costs a disk sync, and only the caller's answer (which lets a relay mark its outbox
        rows sent) needs to wait for it. Should PostgreSQL crash in between, the caller got no
        answer and publishes the same ids again (at least once, same id); the log never
        reuses a sequence a subscriber may have seen (see the store's crash guard).
        """
        check_new_events(events)
        sequences = await self._log.append(events)
        if sequences:
            # Subscribers in this process need not wait for NOTIFY to come back from the
            # database: appends are serialised, so everything up to this sequence is committed.
            self._wakeups.announce(max(sequences))
        if appended is not None:
            appended()
        # Also when every id was already there: the append that wrote them may not be flushed.
        await self._log.make_durable()
        return sequences

    async def get(
        self, event_id: uuid.UUID, *, readable: frozenset[str] | None = None
    ) -> EventRecord:
        """The event, if the caller may read its model (`readable`: None for every model).
        A hidden event is NOT_FOUND, so its existence is not revealed."""
        event = await self._log.get(event_id, readable=readable)
        if event is None:
            raise NotFound(f"events/{event_id}", kind="event")
        return event

    async def list_events(
        self,
        flt: EventFilter,
        *,
        after: int | None,
        limit: int,
        descending: bool,
        readable: frozenset[str] | None = None,
    ) -> list[EventRecord]:
        return await self._log.page(
            flt, after=after, limit=limit, descending=descending, readable=readable
        )

    async def start_after(self, after: int, *, from_now: bool) -> int:
        """The sequence a new subscription starts after: `after`, or the end of the log."""
        return await self._log.last_sequence() if from_now else after

    async def subscribe(
        self,
        flt: EventFilter,
        *,
        after: int,
        from_now: bool,
        readable: ReadableModels | None = None,
    ) -> AsyncIterator[EventRecord]:
        """Matching events with sequence > `after` (or from the end of the log), forever.

        `readable` gives the caller's readable models (None: all; no function: all) before
        every page, so grants changed while the stream is open apply to what it sends next;
        it narrows both the catch-up and the live tail in the query itself.

        Reads pages from the database and yields one event at a time, so memory stays at one
        page however far behind the subscriber is; the transport's flow control makes a slow
        reader slow down this loop instead of buffering.
        """
        cursor = await self._log.last_sequence() if from_now else after
        while True:
            # Everything up to `announced` is committed (appends are serialised), so once a
            # short page comes back the cursor may skip to it: filtered-out ranges are not
            # scanned again.
            announced = self._wakeups.latest
            models = None if readable is None else await readable()
            page = await self._log.page(flt, after=cursor, limit=self._page_size, readable=models)
            for event in page:
                yield event
                cursor = event.sequence
            if len(page) == self._page_size:
                continue
            cursor = max(cursor, announced)
            await self._wakeups.wait(cursor, self._poll_interval)
