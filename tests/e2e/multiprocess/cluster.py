"""The registry as production runs it, on one machine: every service of this build as its own
`python -m modelreg_server serve --service X` process on its own port, all against one
PostgreSQL database (and SeaweedFS for artifacts), peers wired with `MODELREG_PEERS__*`, and
one service with two replicas behind a multi-address target."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelreg_common.local_postgres import free_port

# Reconnect quickly while a process is still starting; the default backoff starts at 1 s.
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 250),
]


@dataclass
class Replica:
    service: str
    index: int
    port: int
    metrics_port: int
    log: Path
    process: asyncio.subprocess.Process | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    def log_records(self) -> list[dict[str, object]]:
        """The JSON log lines written so far (stderr is line-buffered)."""
        records = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
        return records

    def log_tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Cluster:
    services: list[str]
    replicas: dict[str, list[Replica]] = field(default_factory=dict)

    def target(self, service: str) -> str:
        """One gRPC target for all replicas of a service, gRPC's own multi-address form (the
        stand-in for a Kubernetes Service: it does not change when a replica dies)."""
        ports = [r.port for r in self.replicas[service]]
        if len(ports) == 1:
            return f"127.0.0.1:{ports[0]}"
        return "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports)

    def targets(self) -> dict[str, str]:
        return {service: self.target(service) for service in self.services}

    def all_replicas(self) -> list[Replica]:
        return [r for replicas in self.replicas.values() for r in replicas]


async def wait_serving(replica: Replica, startup_seconds: float) -> None:
    """Until the process reports SERVING on grpc.health.v1 (a Watch stream that waits for the
    channel, so no polling), or fail early with its log if it exits."""
    assert replica.process is not None
    async with aio.insecure_channel(replica.target, options=FAST_RECONNECT) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        async def serving() -> None:
            watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), wait_for_ready=True)
            async for reply in watch:
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    watch.cancel()
                    return

        watcher = asyncio.create_task(serving())
        exited = asyncio.create_task(replica.process.wait())
        try:
            async with asyncio.timeout(startup_seconds):
                done, _ = await asyncio.wait({watcher, exited}, return_when="FIRST_COMPLETED")
        except TimeoutError:
            raise AssertionError(
                f"{replica.name} not SERVING within {startup_seconds}s\n{replica.log_tail()}"
            ) from None
        finally:
            for task in (watcher, exited):
                task.cancel()
        if exited in done:
            raise AssertionError(
                f"{replica.name} exited with {replica.process.returncode}\n{replica.log_tail()}"
            )
        watcher.result()


def base_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}


async def start_cluster(
    services: list[str],
    *,
    dsn: str,
    logs: Path,
    replicated: str,
    extra_env: Mapping[str, Mapping[str, str]],
    startup_seconds: float = 60,
) -> Cluster:
    cluster = Cluster(services)
    for service in services:
        count = 2 if service == replicated else 1
        cluster.replicas[service] = [
            Replica(service, i, free_port(), free_port(), logs / f"{service}-{i}.log")
            for i in range(count)
        ]
    # Targets are known before anything starts: every peer gets all replicas of the others.
    targets = cluster.targets()
    for replica in cluster.all_replicas():
        env = base_environment()
        env.update(
            MODELREG_HOME=str(logs / f"home-{replica.name}"),
            MODELREG_LISTEN=replica.target,
            MODELREG_DATABASE_URL=dsn,
            MODELREG_LOG_FORMAT="json",
            MODELREG_METRICS_LISTEN=f"127.0.0.1:{replica.metrics_port}",
            # Spans go to stdout (discarded); what matters is that a span is active, so the
            # JSON logs on stderr carry trace ids.
            MODELREG_TELEMETRY__EXPORTER="console",
            MODELREG_TELEMETRY__SERVICE_NAME=f"modelreg-{replica.service}",
            MODELREG_SHUTDOWN_GRACE_SECONDS="1",
            MODELREG_PEERS__TIMEOUT_SECONDS="5",
        )
        for peer, target in targets.items():
            if peer != replica.service:
                env[f"MODELREG_PEERS__{peer.upper()}"] = target
        env.update(extra_env.get(replica.service, {}))
        env.update(extra_env.get("*", {}))
        with replica.log.open("wb") as log:
            replica.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "modelreg_server",
                "serve",
                "--service",
                replica.service,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
    try:
        await asyncio.gather(*(wait_serving(r, startup_seconds) for r in cluster.all_replicas()))
    except BaseException:
        await stop_cluster(cluster)
        raise
    return cluster


async def kill(replica: Replica) -> None:
    """SIGKILL: no graceful shutdown, as when a node dies."""
    assert replica.process is not None
    process, replica.process = replica.process, None
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()


async def stop_cluster(cluster: Cluster) -> None:
    processes = [r.process for r in cluster.all_replicas() if r.process is not None]
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            async with asyncio.timeout(15):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
    for replica in cluster.all_replicas():
        replica.process = None
