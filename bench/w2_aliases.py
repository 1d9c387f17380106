"""W2 (../shared/workloads.md): alias resolution through the embedded default.

Starts `modelreg serve` (all services of this build, embedded PostgreSQL under a temporary
MODELREG_HOME) in its own process, creates one model with 10 READY versions carrying the W1
tags, points `champion` at version 7, then resolves `models/<m>@champion` with the project's
Python client: 1 worker thread, then 16, each thread with its own client (one channel).
Every reply must be the full record of version 7. Prints one JSON document.

Server logs are at WARNING: at INFO every RPC writes a JSON line to stderr, which is logging
cost, not registry cost (the setting is in the JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from modelreg.client import Registry

ROOT = Path(__file__).resolve().parent.parent


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
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    def __init__(self, home: Path, log_level: str) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self.home = home
        env = dict(os.environ)
        env.update(
            {
                "MODELREG_HOME": str(home),
                "MODELREG_LISTEN": self.address,
                "MODELREG_LOG_LEVEL": log_level,
                "MODELREG_WEB_LISTEN": "",
                # Peers are this process; named explicitly so no channel is made before the
                # listener has its port.
                "MODELREG_PEERS__METADATA": self.address,
                "MODELREG_PEERS__ARTIFACT": self.address,
                "MODELREG_PEERS__LIFECYCLE": self.address,
                "MODELREG_PEERS__EVENTS": self.address,
            }
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modelreg_server.cli", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(home / "server.log", "w"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {(home / 'server.log').read_text()[-3000:]}")
            done = subprocess.run(
                [sys.executable, "-m", "modelreg_server.cli", "health", "--target", self.address],
                capture_output=True,
                check=False,
            )
            if done.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("server did not become healthy")

    def processes(self) -> dict[str, list[psutil.Process]]:
        server = psutil.Process(self.process.pid)
        tree = [server, *server.children(recursive=True)]
        database: list[psutil.Process] = []
        for proc in psutil.process_iter(["pid", "cmdline", "name"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if "postgres" in (proc.info["name"] or "") and str(self.home) in cmdline:
                database = [proc, *proc.children(recursive=True)]
                break
        ids = {p.pid for p in database}
        return {"server": [p for p in tree if p.pid not in ids], "database": database}

    def cpu_seconds(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for role, procs in self.processes().items():
            total = 0.0
            for proc in procs:
                try:
                    times = proc.cpu_times()
                    total += times.user + times.system
                except psutil.Error:
                    pass
            totals[role] = total
        return totals

    def rss_mb(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for role, procs in self.processes().items():
            total = 0
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            out[role] = round(total / 2**20, 1)
        return out

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def populate(address: str) -> tuple[str, str]:
    model = f"w2-{uuid.uuid4().hex[:8]}"
    with Registry(address) as registry:
        registry.metadata.create_registered_model(registered_model_id=model)
        for i in range(10):
            created = registry.metadata.create_model_version(
                parent=f"models/{model}",
                model_version={
                    "source": f"file:///models/{model}/{i}",
                    "run": "",
                    "tags": w1_tags(i),
                },
            )
            registry.metadata.finalize_model_version(name=created.model_version.name)
        registry.lifecycle.set_alias(
            name=f"models/{model}/aliases/champion", version=f"models/{model}/versions/7"
        )
    return model, f"models/{model}/versions/7"


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(1, int(-(-q * len(sorted_values) // 1)))  # nearest rank
    return sorted_values[min(rank, len(sorted_values)) - 1]


def run(address: str, reference: str, expected: str, threads: int, calls: int) -> dict[str, Any]:
    counter = iter(range(calls))
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []
    wrong = 0
    clients = [Registry(address) for _ in range(threads)]
    for client in clients:
        for _ in range(64 // threads or 1):  # warm-up: 64 calls in all, not measured
            client.lifecycle.resolve_alias(name=reference)
    start_barrier = threading.Barrier(threads + 1)

    def worker(client: Registry) -> None:
        nonlocal wrong
        mine: list[float] = []
        start_barrier.wait()
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                break
            began = time.perf_counter()
            try:
                reply = client.lifecycle.resolve_alias(name=reference)
            except Exception as exc:
                with lock:
                    failures.append(repr(exc)[:300])
                continue
            mine.append(time.perf_counter() - began)
            if reply.model_version.name != expected or len(reply.model_version.tags) != 5:
                with lock:
                    wrong += 1
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for w in workers:
        w.start()
    cpu_before = time.process_time()
    start_barrier.wait()
    began = time.perf_counter()
    for w in workers:
        w.join()
    wall = time.perf_counter() - began
    client_cpu = time.process_time() - cpu_before
    for client in clients:
        client.close()
    ordered = sorted(latencies)
    ms = 1000.0
    return {
        "threads": threads,
        "n": len(ordered),
        "errors": len(failures),
        "error_samples": failures[:5],
        "calls_per_s": round(len(ordered) / wall, 1),
        "wall_s": round(wall, 3),
        "p50_ms": round(percentile(ordered, 0.50) * ms, 3),
        "p90_ms": round(percentile(ordered, 0.90) * ms, 3),
        "p99_ms": round(percentile(ordered, 0.99) * ms, 3),
        "mean_ms": round(sum(ordered) / max(len(ordered), 1) * ms, 3),
        "max_ms": round(ordered[-1] * ms, 3) if ordered else None,
        "correct": wrong == 0 and not failures,
        "wrong_replies": wrong,
        "client_cpu_s": round(client_cpu, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--single-calls", type=int, default=2000)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelreg-w2-") as tmp:
        home = Path(tmp)
        home.chmod(0o755)
        server = Server(home, args.log_level)
        try:
            model, expected = populate(server.address)
            reference = f"models/{model}@champion"
            time.sleep(1.0)  # let start-up work settle before measuring (workloads.md)
            results = {}
            for name, threads, calls in (
                ("1_client", 1, args.single_calls),
                ("16_clients", 16, args.calls),
            ):
                cpu_before = server.cpu_seconds()
                results[name] = run(server.address, reference, expected, threads, calls)
                cpu_after = server.cpu_seconds()
                for role in cpu_after:
                    results[name][f"{role}_cpu_s"] = round(
                        cpu_after[role] - cpu_before.get(role, 0.0), 2
                    )
            memory = server.rss_mb()
        finally:
            server.stop()
    import grpc

    report = {
        "workload": "W2",
        "registry": "modelreg",
        "target": "embedded default (modelreg serve, all services, embedded PostgreSQL)",
        "server_log_level": args.log_level,
        "host": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "grpcio": grpc.__version__,
            "platform": platform.platform(),
        },
        "sizes": {"models": 1, "versions": 10, "tags_per_version": 5, "warmup_calls": 64},
        "results": results,
        "server_memory_mb": memory,
        "targets": {"1_client_p50_ms": 1.0, "1_client_p99_ms": 3.0, "16_clients_calls_per_s": 2500},
        "notes": "2-core host shared with other work: numbers are noisy.",
    }
    print(json.dumps(report, indent=2))
    return 0 if all(r["correct"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
