"""W5 of workloads.md: event delivery latency (webhook and Subscribe) and log throughput.

Starts `modelreg serve --service metadata --service events` (the embedded default: its own
PostgreSQL under a temporary MODELREG_HOME, outbox relay on) in a subprocess. The producer is
the real metadata service: each CreateModelVersion commits a `model_version.created` outbox
row, the relay ships it to PublishEvents, the log wakes the Subscribe stream and the webhook
worker. A loopback aiohttp receiver and a Subscribe stream run in this process, on the
client's clock.

The delivery run happens twice on the same server, each with its own model, webhook and
subscription: first right after start-up (`delivery_cold_start`: every pooled connection,
prepared statement and plan is new, and the first ~15 events pay for it), then once the
server has served that traffic (`delivery`), as it has after W1-W4 in workloads.md's order.

Then the log's throughput: PublishEvents batches of 500 from 4 concurrent callers.

    python bench/w5_events.py [--versions 200] [--throughput-events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelreg.events.v1 import (
    event_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
    webhook_pb2,
    webhook_service_pb2,
    webhook_service_pb2_grpc,
)
from modelreg.events.webhooks import verify_signature
from modelreg.metadata.v1 import model_version_pb2 as mv
from modelreg.metadata.v1 import model_version_service_pb2 as mvs
from modelreg.metadata.v1 import model_version_service_pb2_grpc as mvs_grpc
from modelreg.metadata.v1 import registered_model_service_pb2 as rms
from modelreg.metadata.v1 import registered_model_service_pb2_grpc as rms_grpc

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def hexid(*parts: object) -> str:
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()[:32]


def w1_tags(i: int) -> dict[str, str]:
    return {
        "framework": "sklearn",
        "dataset": f"ds-{i % 10}",
        "owner": f"user{i % 7}",
        "git_sha": hashlib.sha1(str(i).encode()).hexdigest(),
        "idx": str(i),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    s = sorted(values)

    def rank(p: float) -> float:
        return round(s[max(0, min(len(s) - 1, -(-int(p * len(s)) // 100) - 1))], 3)

    return {
        "n": len(s),
        "p50": rank(50),
        "p90": rank(90),
        "p99": rank(99),
        "mean": round(sum(s) / len(s), 3),
        "max": round(s[-1], 3),
    }


def tree_cpu(root: int) -> float:
    """CPU seconds of a process and all its descendants (server + embedded PostgreSQL)."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        cpu[pid] = (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / CLK_TCK
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += cpu.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total


async def wait_serving(address: str, process: subprocess.Popen[bytes]) -> None:
    async with asyncio.timeout(90), aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except aio.AioRpcError:
                pass
            if process.poll() is not None:
                raise SystemExit("server exited during start-up")
            await asyncio.sleep(0.2)


async def delivery_latency(address: str, versions: int) -> dict[str, Any]:
    model = f"w5-{uuid.uuid4().hex[:8]}"
    progress = asyncio.Event()  # set on every receipt
    webhook_t2: dict[str, float] = {}
    webhook_dupes = 0
    unrelated = 0
    bad_signatures = 0
    secret = ""

    async def handle(request: web.Request) -> web.Response:
        nonlocal webhook_dupes, unrelated, bad_signatures
        body = await request.read()
        at = time.perf_counter()
        try:
            verify_signature(secret, request.headers, body)
        except ValueError:
            bad_signatures += 1
        subject = json.loads(body).get("subject", "")
        if not subject.startswith(f"models/{model}/versions/"):
            unrelated += 1
        elif subject in webhook_t2:
            webhook_dupes += 1
        else:
            webhook_t2[subject] = at
        progress.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    channel = aio.insecure_channel(address)
    await rms_grpc.RegisteredModelServiceStub(channel).CreateRegisteredModel(
        rms.CreateRegisteredModelRequest(registered_model_id=model)
    )
    created = await webhook_service_pb2_grpc.WebhookServiceStub(channel).CreateWebhook(
        webhook_service_pb2.CreateWebhookRequest(
            webhook=webhook_pb2.Webhook(
                url=f"http://127.0.0.1:{port}/hook",
                event_types=["model_version.created"],
                models=[f"models/{model}"],
            )
        )
    )
    secret = created.secret
    stream_t2: dict[str, float] = {}
    stream_dupes = 0
    sub_channel = aio.insecure_channel(address)
    stream = event_service_pb2_grpc.EventServiceStub(sub_channel).Subscribe(
        event_service_pb2.SubscribeRequest(
            from_now=True,
            filter=f'type = "model_version.created" AND subject = "models/{model}/*"',
        )
    )

    # W5 asks to wait until the subscription is in effect: its response headers say so.
    await stream.initial_metadata()

    async def read_stream() -> None:
        nonlocal stream_dupes
        async for reply in stream:
            at = time.perf_counter()
            if reply.event.subject in stream_t2:
                stream_dupes += 1
            else:
                stream_t2[reply.event.subject] = at
            progress.set()

    reader = asyncio.create_task(read_stream())
    versions_stub = mvs_grpc.ModelVersionServiceStub(channel)

    async def create(i: int) -> tuple[str, float, float]:
        t0 = time.perf_counter()
        reply = await versions_stub.CreateModelVersion(
            mvs.CreateModelVersionRequest(
                parent=f"models/{model}",
                model_version=mv.ModelVersion(
                    source=f"s3://bench/{model}/{hexid('src', i)}", tags=w1_tags(i)
                ),
            ),
            timeout=10,
        )
        return reply.model_version.name, t0, time.perf_counter()

    # Warm-up: the subscription and the webhook are in effect once a first event arrives.
    warm, _, _ = await create(-1)
    async with asyncio.timeout(30):
        while warm not in stream_t2 or warm not in webhook_t2:
            await progress.wait()
            progress.clear()
    stream_t2.clear()
    webhook_t2.clear()

    calls: list[tuple[str, float, float]] = []
    errors: list[str] = []
    for i in range(versions):
        try:
            calls.append(await create(i))
        except grpc.RpcError as exc:
            errors.append(str(exc)[:200])
    deadline = time.perf_counter() + 30
    names = {n for n, _, _ in calls}
    while time.perf_counter() < deadline and not (
        names <= set(webhook_t2) and names <= set(stream_t2)
    ):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(progress.wait(), max(0.0, deadline - time.perf_counter()))
        progress.clear()
    reader.cancel()
    # Where the time goes: producer commit (event time) -> appended to the log (publish time).
    lags: list[float] = []
    token = ""
    log_stub = event_service_pb2_grpc.EventServiceStub(channel)
    while True:
        page = await log_stub.ListEvents(
            event_service_pb2.ListEventsRequest(
                filter=f'subject = "models/{model}/*"', page_size=1000, page_token=token
            )
        )
        for e in page.events:
            lag = e.publish_time.ToDatetime() - e.time.ToDatetime()
            lags.append(lag.total_seconds() * 1000)
        token = page.next_page_token
        if not token:
            break
    await sub_channel.close()
    await channel.close()
    await runner.cleanup()

    def measure(t2: dict[str, float]) -> dict[str, Any]:
        got = [(t2[n] - t0, t2[n] - t1) for n, t0, t1 in calls if n in t2]
        return {
            "t2_minus_t0_ms": percentiles([a * 1000 for a, _ in got]),
            "t2_minus_t1_ms": percentiles([b * 1000 for _, b in got]),
            "missing": len(names - set(t2)),
        }

    return {
        "versions": versions,
        "create_errors": len(errors),
        "error_samples": errors[:3],
        "create_latency_ms": percentiles([(t1 - t0) * 1000 for _, t0, t1 in calls]),
        "webhook": {
            **measure(webhook_t2),
            "duplicates": webhook_dupes,
            "unrelated": unrelated,
            "bad_signatures": bad_signatures,
        },
        "subscribe": {**measure(stream_t2), "duplicates": stream_dupes},
        "relay_lag_ms": percentiles(lags),
        "guarantees": "at-least-once (outbox + idempotent log); webhook retries with backoff "
        "to dead-letter; duplicates only with the same webhook-id / event id",
    }


async def log_throughput(address: str, total: int, batch: int, callers: int) -> dict[str, Any]:
    channel = aio.insecure_channel(address)
    stub = event_service_pb2_grpc.EventServiceStub(channel)
    batches = [
        [
            event_pb2.Event(
                id=str(uuid.uuid4()),
                type="model_version.created",
                subject=f"models/tp/versions/{b * batch + i}",
                actor="bench",
            )
            for i in range(batch)
        ]
        for b in range(total // batch)
    ]
    queue = list(range(len(batches)))
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            b = queue.pop()
            t0 = time.perf_counter()
            await stub.PublishEvents(
                event_service_pb2.PublishEventsRequest(source="bench", events=batches[b]),
                timeout=30,
            )
            latencies.append((time.perf_counter() - t0) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(callers)))
    wall = time.perf_counter() - start
    await channel.close()
    return {
        "events": total,
        "batch": batch,
        "callers": callers,
        "wall_s": round(wall, 3),
        "events_per_s": round(total / wall, 1),
        "batch_latency_ms": percentiles(latencies),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", type=int, default=200)
    parser.add_argument("--throughput-events", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--callers", type=int, default=4)
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of the server (e.g. MODELREG_RELAY_CONCURRENCY=1)",
    )
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="modelreg-w5-"))
    home.chmod(0o755)  # noqa: ASYNC240 - set-up, before anything is measured
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    env.update(
        MODELREG_HOME=str(home),
        MODELREG_LOG_LEVEL="warning",
        MODELREG_POOL_MAX_SIZE="20",
        MODELREG_EVENTS_ALLOW_PRIVATE_TARGETS="true",
    )
    env.update(item.split("=", 1) for item in args.server_env)
    command = [
        sys.executable,
        "-m",
        "modelreg_server",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--service",
        "metadata",
        "--service",
        "events",
    ]
    # Set-up, before anything is measured.
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)  # noqa: ASYNC220
    address = f"127.0.0.1:{port}"
    try:
        await wait_serving(address, process)
        await asyncio.sleep(1)  # let start-up work settle before measuring (workloads.md)
        # First on the fresh server: its pooled connections, prepared statements and plans
        # are all new. Then again (a fresh model, webhook and subscription) on the server as
        # it is once it has served some traffic, as after W1-W4 in workloads.md's order.
        cold = await delivery_latency(address, args.versions)
        cpu0, client0 = tree_cpu(process.pid), time.process_time()
        latency = await delivery_latency(address, args.versions)
        cpu1, client1 = tree_cpu(process.pid), time.process_time()
        throughput = await log_throughput(address, args.throughput_events, args.batch, args.callers)
        cpu2, client2 = tree_cpu(process.pid), time.process_time()
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    print(
        json.dumps(
            {
                "workload": "W5",
                "registry": "modelreg (embedded default: metadata + events in one process)",
                "host": {
                    "cores": os.cpu_count(),
                    "python": platform.python_version(),
                    "note": "2 shared cores, other engineers' jobs running: noisy",
                },
                "delivery_cold_start": cold,
                "delivery": {
                    **latency,
                    "cpu_s": {
                        "server_and_db": round(cpu1 - cpu0, 2),
                        "client_and_receiver": round(client1 - client0, 2),
                    },
                },
                "log_throughput": {
                    **throughput,
                    "cpu_s": {
                        "server_and_db": round(cpu2 - cpu1, 2),
                        "client": round(client2 - client1, 2),
                    },
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
