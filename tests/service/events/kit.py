"""Helpers for the events tests: a tiny producer service that writes outbox rows through an
RPC, and a loopback webhook receiver with scripted answers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web

from modelreg_common.access import Role
from modelreg_common.database import transaction
from modelreg_common.outbox import OutboxEvent, add_events
from modelreg_common.permissions import Rule
from modelreg_common.relay import OutboxRelay
from modelreg_common.server import RegistryServer, ServiceRuntime, ServiceSpec

PRODUCER_SERVICE = "modelreg.testing.v1.ProducerService"


class ProducerComponent:
    """`Emit` (request: JSON `{"subject": s, "count": n, "type": t}`) writes n outbox rows in
    one transaction and answers with their ids once committed."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime

    @property
    def service_names(self) -> list[str]:
        return [PRODUCER_SERVICE]

    def register(self, server: grpc.aio.Server) -> None:
        async def emit(request: bytes, context: Any) -> bytes:
            spec = json.loads(request)
            events = [
                OutboxEvent(
                    type=spec.get("type", "model_version.created"),
                    subject=spec["subject"]
                    if spec.get("same_subject")
                    else f"{spec['subject']}/versions/{i + 1}",
                    data={"i": i, "tag": spec.get("tag", "")},
                )
                for i in range(int(spec.get("count", 1)))
            ]
            async with transaction(self.runtime.pool) as conn:
                await add_events(conn, events)
            return json.dumps([str(e.id) for e in events]).encode()

        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    PRODUCER_SERVICE, {"Emit": grpc.unary_unary_rpc_method_handler(emit)}
                ),
            )
        )

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


async def _create(runtime: ServiceRuntime) -> ProducerComponent:
    return ProducerComponent(runtime)


PRODUCER_SPEC = ServiceSpec(
    name="producer",
    schema="producer",
    migrations_package=None,
    create=_create,
    rules={f"/{PRODUCER_SERVICE}/Emit": Rule("producer.emit", Role.EDITOR)},
)


def producer_relay(
    server: RegistryServer, channel: grpc.aio.Channel, *, timeout: float = 5, **options: Any
) -> OutboxRelay:
    """The relay of `server`'s producer service, driven by the test (its server runs none),
    shipping over `channel`; `options` as OutboxRelay takes them."""
    pool = server._pools[[spec.name for spec in server.specs].index("producer")]
    return OutboxRelay(
        pool=pool,
        dsn=server.dsn,
        schema="producer",
        source="producer",
        channel=lambda: channel,
        timeout=timeout,
        **options,
    )


async def emit(channel: grpc.aio.Channel, subject: str, count: int = 1, **extra: Any) -> list[str]:
    call: Any = channel.unary_unary(f"/{PRODUCER_SERVICE}/Emit")
    reply = await call(
        json.dumps({"subject": subject, "count": count, **extra}).encode(), timeout=10
    )
    ids: list[str] = json.loads(reply)
    return ids


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """A loopback HTTP receiver. `script(n)` gives the status (and headers) for the n-th
    request (0-based); default 204."""

    script: Callable[[int], tuple[int, dict[str, str]]] = lambda n: (204, {})
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        n = len(self.received)
        self.received.append(Received(dict(request.headers), body, time.perf_counter()))
        async with self._arrived:
            self._arrived.notify_all()
        status, headers = self.script(n)
        return web.Response(status=status, headers=headers)

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], within: float = 10
    ) -> None:
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: predicate(self.received))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
