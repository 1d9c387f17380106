"""Real processes, killed with SIGKILL: a producer between its commit and the relay, and the
events service in the middle of webhook deliveries. After restarts every acknowledged change
has exactly one event in the log, every ACTIVE webhook got it at least once, and a Subscribe
stream resumed from its last sequence saw every event exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from aiohttp import web
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelreg.events.v1 import (
    event_service_pb2,
    event_service_pb2_grpc,
    webhook_pb2,
    webhook_service_pb2,
    webhook_service_pb2_grpc,
)
from modelreg.events.webhooks import verify_signature
from service.events.kit import Received, Receiver, emit

ROOT = Path(__file__).resolve().parents[3]
PRODUCER = Path(__file__).with_name("producer_main.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, log: Path):
        self.name, self.argv, self.env, self.port, self.log = name, argv, env, port, log
        self.process: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        async with asyncio.timeout(30), aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except aio.AioRpcError:
                    pass
                if self.process.returncode is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
                await asyncio.sleep(0.1)

    async def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                await self.kill9()


@pytest.fixture
async def procs(dsn: str, tmp_path: Path) -> AsyncIterator[tuple[Proc, Proc]]:
    events_port, producer_port = free_port(), free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    common = {
        **base,
        "MODELREG_DATABASE_URL": dsn,
        "MODELREG_LOG_FORMAT": "json",
        "MODELREG_SHUTDOWN_GRACE_SECONDS": "1",
        "MODELREG_PEERS__TIMEOUT_SECONDS": "2",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), base.get("PYTHONPATH", "")]),
    }
    events = Proc(
        "events",
        [sys.executable, "-m", "modelreg_server", "serve", "--service", "events"],
        {
            **common,
            "MODELREG_HOME": str(tmp_path / "events"),
            "MODELREG_LISTEN": f"127.0.0.1:{events_port}",
            "MODELREG_EVENTS_ALLOW_PRIVATE_TARGETS": "true",
            "MODELREG_EVENTS_DELIVERY_TIMEOUT_SECONDS": "1",
            "MODELREG_EVENTS_DELIVERY_LEASE_SECONDS": "2",
            "MODELREG_EVENTS_RETRY_BASE_SECONDS": "0.05",
            "MODELREG_EVENTS_RETRY_MAX_SECONDS": "0.5",
            "MODELREG_EVENTS_MAX_ATTEMPTS": "50",
        },
        events_port,
        tmp_path / "events.log",
    )
    producer = Proc(
        "producer",
        [sys.executable, str(PRODUCER)],
        {
            **common,
            "MODELREG_HOME": str(tmp_path / "producer"),
            "MODELREG_LISTEN": f"127.0.0.1:{producer_port}",
            "MODELREG_PEERS__EVENTS": f"127.0.0.1:{events_port}",
        },
        producer_port,
        tmp_path / "producer.log",
    )
    yield events, producer
    await producer.stop()
    await events.stop()


async def test_kill_9_of_producer_and_events_loses_nothing(procs, open_channel) -> None:
    events, producer = procs
    release = asyncio.Event()

    hold = Receiver()

    async def slow_then_ok(request: web.Request) -> web.Response:
        body = await request.read()
        hold.received.append(_received(request, body))
        async with hold._arrived:
            hold._arrived.notify_all()
        if not release.is_set():
            await release.wait()  # the events service dies while this delivery is in flight
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", slow_then_ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]

    await events.start()
    echannel = open_channel(events.address)
    hooks = webhook_service_pb2_grpc.WebhookServiceStub(echannel)
    log = event_service_pb2_grpc.EventServiceStub(echannel)
    created = await hooks.CreateWebhook(
        webhook_service_pb2.CreateWebhookRequest(webhook=webhook_pb2.Webhook(url=url))
    )
    disabled = await hooks.CreateWebhook(
        webhook_service_pb2.CreateWebhookRequest(
            webhook=webhook_pb2.Webhook(url=url, state=webhook_pb2.WEBHOOK_STATE_DISABLED)
        )
    )
    stream = log.Subscribe(event_service_pb2.SubscribeRequest(after_sequence=0))
    seen: list[tuple[int, str]] = []

    await producer.start()
    pchannel = open_channel(producer.address)
    acked = await emit(pchannel, "models/crash", 10)
    async with asyncio.timeout(20):
        while len(seen) < 10:
            reply = await stream.read()
            seen.append((reply.event.sequence, reply.event.id))
        await _wait(lambda: len(hold.received) >= 1)
    # Deliveries are in flight (the receiver is holding them): kill the events service.
    await events.kill9()
    with pytest.raises(aio.AioRpcError) as err:
        while True:
            await stream.read()
    assert err.value.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    )
    # The producer keeps acknowledging changes; its relay cannot ship them. Then it dies too,
    # between its commits and its relay.
    acked += await emit(pchannel, "models/crash-b", 10)
    await producer.kill9()
    release.set()

    await events.start()
    await producer.start()
    echannel = open_channel(events.address)
    log = event_service_pb2_grpc.EventServiceStub(echannel)
    hooks = webhook_service_pb2_grpc.WebhookServiceStub(echannel)
    # Resume from the last sequence the stream saw: the rest, exactly once.
    stream = log.Subscribe(event_service_pb2.SubscribeRequest(after_sequence=seen[-1][0]))
    async with asyncio.timeout(30):
        while len(seen) < 20:
            reply = await stream.read()
            seen.append((reply.event.sequence, reply.event.id))
    stream.cancel()
    assert sorted(i for _, i in seen) == sorted(acked)
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)

    listed = await log.ListEvents(event_service_pb2.ListEventsRequest(page_size=1000))
    ids = [e.id for e in listed.events if e.source == "producer"]
    assert sorted(ids) == sorted(acked)  # exactly one event per acknowledged change

    async with asyncio.timeout(30):
        await _wait(lambda: set(acked) <= {r.headers["webhook-id"] for r in hold.received})
    for r in hold.received:
        verify_signature(created.secret, r.headers, r.body)
    # Only the ACTIVE webhook has deliveries.
    none = await hooks.ListDeliveries(
        webhook_service_pb2.ListDeliveriesRequest(parent=disabled.webhook.name)
    )
    assert list(none.deliveries) == []
    await runner.cleanup()


def _received(request: web.Request, body: bytes) -> Received:
    return Received(dict(request.headers), body, 0.0)


async def _wait(predicate: Callable[[], bool]) -> None:
    # Polling state that another process changes; no event to await across processes.
    while not predicate():  # noqa: ASYNC110 - the state changes in another process
        await asyncio.sleep(0.05)
