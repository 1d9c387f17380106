"""Webhook delivery workers: claim due deliveries (SKIP LOCKED, leased), POST them signed,
log every attempt, retry with backoff and jitter (honouring Retry-After), dead-letter after
the last attempt. Any number of replicas may run them."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from modelreg_common.logs import get_logger
from modelreg_common.waits import cancel_and_wait
from modelreg_events.domain.envelope import body_and_headers
from modelreg_events.domain.models import DeliveryJob, SendResult
from modelreg_events.domain.ports import Sender, WebhookRepository
from modelreg_events.domain.retry import next_delay, retry_after_seconds
from modelreg_events.settings import EventsSettings
from modelreg_events.store.notifier import LogNotifier

log = get_logger("modelreg.events.delivery")


class DeliveryWorkers:
    def __init__(
        self,
        repo: WebhookRepository,
        sender: Sender,
        notifier: LogNotifier,
        settings: EventsSettings,
    ) -> None:
        self._repo = repo
        self._sender = sender
        self._notifier = notifier
        self._settings = settings
        self._inflight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-deliveries")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def run_once(self) -> int:
        """Claim and send what is due now; the number of deliveries attempted."""
        jobs = await self._repo.claim(self._settings.delivery_workers, self._lease)
        await asyncio.gather(*(self._attempt(job) for job in jobs))
        return len(jobs)

    @property
    def _lease(self) -> float:
        return max(self._settings.delivery_lease_seconds, self._settings.delivery_timeout_seconds)

    async def _run(self) -> None:
        failures = 0
        while True:
            generation = self._notifier.generation
            try:
                free = self._settings.delivery_workers - len(self._inflight)
                jobs = await self._repo.claim(free, self._lease) if free > 0 else []
                for job in jobs:
                    task = asyncio.create_task(self._attempt(job))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
                failures = 0
                if jobs and len(jobs) == free:
                    await self._wait_for_slot()
                    continue
                due = await self._repo.next_due_in()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("delivery.claim_failed", error=str(exc)[:300], failures=failures)
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                continue
            timeout = self._settings.poll_interval_seconds
            if due is not None:
                timeout = max(0.0, min(timeout, due))
            if timeout > 0:
                await self._notifier.wait_change(generation, timeout)

    async def _wait_for_slot(self) -> None:
        if self._inflight:
            await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)

    async def _attempt(self, job: DeliveryJob) -> None:
        started_at = datetime.now(UTC)
        try:
            if job.secret_error:
                # Never sent unsigned; the store logged which key is missing.
                result = SendResult(0, 0.0, job.secret_error)
            else:
                body, headers = body_and_headers(job.event, job.secrets, int(time.time()))
                result = await self._sender.send(job.url, headers, body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("delivery.bug", delivery=str(job.delivery_id))
            result = SendResult(0, 0.0, f"internal error: {type(exc).__name__}")
        retry_in: float | None = None
        if not result.ok and job.round_attempt < self._settings.max_attempts:
            retry_in = next_delay(
                job.round_attempt,
                retry_after_seconds(result.retry_after),
                base=self._settings.retry_base_seconds,
                cap=self._settings.retry_max_seconds,
                retry_after_cap=self._settings.retry_after_max_seconds,
            )
        try:
            state = await self._repo.record_attempt(job, started_at, result, retry_in=retry_in)
        except Exception as exc:
            # The lease runs out and another attempt follows: at least once.
            log.warning("delivery.record_failed", delivery=str(job.delivery_id), error=str(exc))
            return
        if state == "DEAD_LETTER":
            log.warning(
                "delivery.dead_letter",
                delivery=str(job.delivery_id),
                webhook=job.webhook_id,
                event_id=str(job.event.id),
                attempts=job.round_attempt,
                error=result.error,
            )
        elif not result.ok:
            log.info(
                "delivery.retry",
                delivery=str(job.delivery_id),
                attempt=job.attempt,
                error=result.error,
                retry_in=round(retry_in or 0, 3),
            )
