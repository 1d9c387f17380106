"""When to try a failed delivery again: exponential backoff with jitter, honouring
Retry-After, capped."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def backoff_seconds(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Delay after the `attempt`-th failure (1-based): base * 2^(attempt-1), capped, then
    "equal jitter" (half fixed, half random) so retries of many deliveries spread out."""
    ceiling = min(cap, base * (2 ** min(attempt - 1, 30)))
    r = (rng or random).random()
    return float(ceiling / 2 + r * ceiling / 2)


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def next_delay(
    attempt: int,
    retry_after: float | None,
    *,
    base: float,
    cap: float,
    retry_after_cap: float,
    rng: random.Random | None = None,
) -> float:
    delay = backoff_seconds(attempt, base=base, cap=cap, rng=rng)
    if retry_after is not None:
        delay = max(delay, min(retry_after, retry_after_cap))
    return delay
