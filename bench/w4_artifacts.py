"""W4: one large file through the artifact service, on the local backend (the embedded
default) and on S3 (SeaweedFS), against the physical floor and aiobotocore direct.

Starts its own PostgreSQL (LocalPostgres) and SeaweedFS (LocalS3); each artifact server runs
in its own process (so its RSS is its own), sampled every 0.2 s with its children, after a
1 MiB warm-up transfer. The client is this process, using the project's transfer helpers
(`upload_file` hashes while sending and compares with the service's digest; `download_file`
verifies the sha256). Each measurement runs `--repeat` times; medians are reported.

    python bench/w4_artifacts.py [--size-mib 256] [--repeat 3] [--parts-in-flight 2]
        [--malloc-mmap-threshold 1048576] [--malloc-arena-max 2] [--skip-local | --skip-s3]
        [--workdir DIR] [--keep]

Prints one JSON document. Default size 256 MiB (W4 allows it on slow hosts; this box is a
shared 2-core VM with other engineers' test suites running, so numbers are noisy; its disk
absorbs `cp`+`sync` at ~2 GB/s, far above the 225 MiB/s of the issue's reference machine).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

MIB = 1024 * 1024


# -- the server process -------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    """Child mode: run a RegistryServer with only the artifact service until stdin closes."""
    from modelreg_common.memory import tune_malloc

    arena_max = json.loads(args.artifact_settings).get("malloc_arena_max", 2)
    if arena_max:
        # First thing, before threads have their own malloc arenas: what the server's start-up
        # should do (the artifact service's own call comes after gRPC's and the pool's threads
        # exist, and cannot take back arenas already made).
        tune_malloc(arena_max=arena_max)
    from modelreg_artifact.app import make_spec
    from modelreg_artifact.settings import ArtifactSettings
    from modelreg_common.logs import configure_logging
    from modelreg_common.server import RegistryServer
    from modelreg_common.settings import Settings

    settings = Settings(listen="127.0.0.1:0", home=Path(args.workdir), log_level="warning")
    configure_logging(settings)
    artifact = ArtifactSettings.model_validate_json(args.artifact_settings)

    async def main() -> None:
        server = RegistryServer(settings, [make_spec(artifact)], args.dsn)
        await server.start()
        print(server.address, flush=True)
        await asyncio.to_thread(sys.stdin.read)
        await server.stop(1)

    asyncio.run(main())


class ServerProcess:
    def __init__(
        self,
        dsn: str,
        workdir: Path,
        artifact_settings: dict[str, Any],
        server_env: dict[str, str] | None = None,
    ) -> None:
        env = dict(os.environ)
        env.update(server_env or {})
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--dsn", dsn, "--workdir", str(workdir),
             "--artifact-settings", json.dumps(artifact_settings)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert self.process.stdout is not None
        self.address = self.process.stdout.readline().strip()
        if not self.address:
            raise RuntimeError("artifact server did not start")

    def tree_rss(self) -> int:
        try:
            root = psutil.Process(self.process.pid)
            procs = [root, *root.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs)
        except psutil.NoSuchProcess:
            return 0

    def tree_cpu(self) -> float:
        try:
            root = psutil.Process(self.process.pid)
            return sum(_cpu(p) for p in [root, *root.children(recursive=True)])
        except psutil.NoSuchProcess:
            return 0.0

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class RssSampler:
    """Peak RSS of a process tree (and of this client) every 0.2 s while a transfer runs, and
    the CPU seconds both spent (less sensitive than MiB/s to other jobs on a shared box)."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.baseline = server.tree_rss()
        self.server_cpu = self.client_cpu = 0.0
        self.peak = self.baseline
        self.client_peak = psutil.Process().memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self.server.tree_rss())
            self.client_peak = max(self.client_peak, me.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self._cpu_before = (self.server.tree_cpu(), _cpu(psutil.Process()))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.server.tree_rss())
        self.server_cpu = self.server.tree_cpu() - self._cpu_before[0]
        self.client_cpu = _cpu(psutil.Process()) - self._cpu_before[1]

    def report(self) -> dict[str, float]:
        return {
            "server_rss_before_mib": round(self.baseline / MIB, 1),
            "server_rss_peak_mib": round(self.peak / MIB, 1),
            "server_rss_growth_mib": round((self.peak - self.baseline) / MIB, 1),
            "client_rss_peak_mib": round(self.client_peak / MIB, 1),
        }


# -- measurements --------------------------------------------------------------------------------


def mib_s(size: int, seconds: float) -> float:
    return round(size / MIB / seconds, 1)


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def drop_file_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def physical_floor(source: Path, scratch: Path, size: int, repeat: int) -> dict[str, Any]:
    """The floor on the same filesystem, each measured `repeat` times (median reported)."""
    runs: dict[str, list[float]] = {
        "cp_hot_mib_s": [], "cp_sync_mib_s": [], "dd_fdatasync_write_mib_s": [],
        "dd_o_direct_read_mib_s": [],
    }  # fmt: skip
    target = scratch / "floor.bin"
    for _ in range(repeat):
        subprocess.run(["cat", str(source)], check=True, stdout=subprocess.DEVNULL)  # warm
        subprocess.run(["sync"], check=True)
        runs["cp_hot_mib_s"].append(mib_s(size, timed(["cp", str(source), str(target)])))
        target.unlink()
        subprocess.run(["sync"], check=True)
        cp_sync = timed(["sh", "-c", f"cp '{source}' '{target}' && sync"])
        runs["cp_sync_mib_s"].append(mib_s(size, cp_sync))
        target.unlink()
        subprocess.run(["sync"], check=True)
        dd_write = timed(
            ["dd", f"if={source}", f"of={target}", "bs=1M", "conv=fdatasync", "status=none"]
        )
        runs["dd_fdatasync_write_mib_s"].append(mib_s(size, dd_write))
        drop_file_cache(target)
        dd_read = timed(
            ["dd", f"if={target}", "of=/dev/null", "bs=1M", "iflag=direct", "status=none"]
        )
        runs["dd_o_direct_read_mib_s"].append(mib_s(size, dd_read))
        target.unlink()
    result: dict[str, Any] = {k: statistics.median(v) for k, v in runs.items()}
    result["runs"] = runs
    return result


async def through_service(
    server: ServerProcess, source: Path, scratch: Path, size: int, digest: str, repeat: int
) -> dict[str, Any]:
    """Upload then download through the service `repeat` times (medians; memory: the peak
    growth over the server's RSS before the first transfer)."""
    from grpc import aio

    from modelreg.artifact.transfer import download_file, upload_file
    from modelreg.artifact.v1 import artifact_service_pb2_grpc

    ups: list[float] = []
    downs: list[float] = []
    cpu: dict[str, list[float]] = {"server_up": [], "server_down": [], "client_up": [],
                                   "client_down": []}  # fmt: skip
    ok = True
    up_peak = down_peak = client_peak = 0
    async with aio.insecure_channel(server.address) as channel:
        stub = artifact_service_pb2_grpc.ArtifactServiceStub(channel)
        # Warm-up with a small file: imports, pools and first-call set-up are not transfer cost.
        warm = scratch / "warm.bin"
        warm.write_bytes(os.urandom(MIB))
        await upload_file(stub, "models/w4-warmup/versions/1", "warm.bin", warm)
        await download_file(stub, "models/w4-warmup/versions/1", "warm.bin", warm)
        warm.unlink()
        baseline = server.tree_rss()
        for _ in range(repeat):
            owner = f"models/w4-{uuid.uuid4().hex[:8]}/versions/1"
            with RssSampler(server) as up_rss:
                started = time.perf_counter()
                entry = await upload_file(stub, owner, "model.bin", source)
                ups.append(time.perf_counter() - started)
            target = scratch / "downloaded.bin"
            with RssSampler(server) as down_rss:
                started = time.perf_counter()
                await download_file(stub, owner, "model.bin", target)
                downs.append(time.perf_counter() - started)
            ok = ok and entry.digest == digest and target.stat().st_size == size
            ok = ok and await asyncio.to_thread(sha256_file, target) == digest
            target.unlink()
            cpu["server_up"].append(round(up_rss.server_cpu, 2))
            cpu["client_up"].append(round(up_rss.client_cpu, 2))
            cpu["server_down"].append(round(down_rss.server_cpu, 2))
            cpu["client_down"].append(round(down_rss.client_cpu, 2))
            up_peak = max(up_peak, up_rss.peak)
            down_peak = max(down_peak, down_rss.peak)
            client_peak = max(client_peak, up_rss.client_peak, down_rss.client_peak)
    return {
        "upload_mib_s": mib_s(size, statistics.median(ups)),
        "download_mib_s": mib_s(size, statistics.median(downs)),
        "upload_runs_mib_s": [mib_s(size, t) for t in ups],
        "download_runs_mib_s": [mib_s(size, t) for t in downs],
        "digest_ok": ok,
        "cpu_seconds_runs": cpu,
        "memory": {
            "server_rss_before_mib": round(baseline / MIB, 1),
            "server_rss_peak_upload_mib": round(up_peak / MIB, 1),
            "server_rss_peak_download_mib": round(down_peak / MIB, 1),
            "server_rss_growth_mib": round((max(up_peak, down_peak) - baseline) / MIB, 1),
            "client_rss_peak_mib": round(client_peak / MIB, 1),
        },
    }


async def s3_direct(
    s3: Any, bucket: str, source: Path, scratch: Path, size: int, part: int
) -> dict[str, Any]:
    """aiobotocore to the same SeaweedFS: multipart upload (same part size, 4 in flight) and a
    streamed GET to a file."""
    from aiobotocore.session import get_session

    async with get_session().create_client(
        "s3", endpoint_url=s3.endpoint_url, region_name="us-east-1",
        aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
    ) as client:  # fmt: skip
        key = f"direct/{uuid.uuid4().hex}"
        started = time.perf_counter()
        upload = await client.create_multipart_upload(Bucket=bucket, Key=key)
        slots = asyncio.Semaphore(4)
        parts: list[dict[str, Any]] = []

        async def put(number: int, data: bytes) -> None:
            try:
                response = await client.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload["UploadId"],
                    PartNumber=number,
                    Body=data,
                )
                parts.append({"PartNumber": number, "ETag": response["ETag"]})
            finally:
                slots.release()

        tasks = []
        with source.open("rb") as handle:
            number = 1
            while True:
                await slots.acquire()
                data = await asyncio.to_thread(handle.read, part)
                if not data and number > 1:
                    slots.release()
                    break
                tasks.append(asyncio.create_task(put(number, data)))
                number += 1
                if len(data) < part:
                    break
        await asyncio.gather(*tasks)
        parts.sort(key=lambda p: p["PartNumber"])
        await client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )
        up = time.perf_counter() - started
        target = scratch / "direct.bin"
        started = time.perf_counter()
        response = await client.get_object(Bucket=bucket, Key=key)
        with target.open("wb") as out:
            async for chunk in response["Body"].iter_chunks(1 * MIB):
                out.write(chunk)
        down = time.perf_counter() - started
        target.unlink()
        await client.delete_object(Bucket=bucket, Key=key)
    return {"upload_mib_s": mib_s(size, up), "download_mib_s": mib_s(size, down)}


def service_settings(args: argparse.Namespace, values: dict[str, Any]) -> dict[str, Any]:
    if args.malloc_arena_max is not None:
        values["malloc_arena_max"] = args.malloc_arena_max
    return values


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """Allocator settings for the server process only (not this client, not SeaweedFS)."""
    if not args.malloc_mmap_threshold:
        return {}
    return {"MALLOC_MMAP_THRESHOLD_": str(args.malloc_mmap_threshold)}


async def fresh_database(pg: Any, name: str) -> str:
    """One database per backend: blobs are deduplicated per database, and a blob stored by one
    backend is not in the other."""
    import asyncpg

    conn = await asyncpg.connect(pg.dsn())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return str(pg.dsn(name))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        while data := handle.read(4 * MIB):
            h.update(data)
    return f"sha256:{h.hexdigest()}"


async def run_local(
    args: argparse.Namespace,
    pg: Any,
    workdir: Path,
    source: Path,
    scratch: Path,
    size: int,
    digest: str,
    result: dict[str, Any],
) -> None:
    local = ServerProcess(
        await fresh_database(pg, "w4_local"),
        workdir,
        service_settings(args, {"root": str(workdir / "artifacts")}),
        server_env(args),
    )
    try:
        result["local"] = await through_service(local, source, scratch, size, digest, args.repeat)
    finally:
        local.stop()
    floor = result["physical_floor"]
    result["local"]["upload_vs_cp_sync"] = round(
        result["local"]["upload_mib_s"] / floor["cp_sync_mib_s"], 2
    )
    result["local"]["download_vs_hot_cp"] = round(
        result["local"]["download_mib_s"] / floor["cp_hot_mib_s"], 2
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from aiobotocore.session import get_session

    from modelreg_common.local_postgres import LocalPostgres
    from modelreg_common.local_s3 import LocalS3

    size = args.size_mib * MIB
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="modelreg-w4-"))
    workdir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - set-up, before timing
    workdir.chmod(0o755)  # noqa: ASYNC240
    source = workdir / "source.bin"
    with source.open("wb") as out:
        for _ in range(args.size_mib):
            out.write(os.urandom(MIB))
    digest = sha256_file(source)
    part = 8 * MIB
    pg = LocalPostgres(workdir / "pg", durable=True)
    s3 = LocalS3(workdir / "s3")
    await asyncio.to_thread(pg.start)
    await asyncio.to_thread(s3.start)
    result: dict[str, Any] = {
        "workload": "W4",
        "file_size_mib": args.size_mib,
        "scaled_down": args.size_mib < 1024,
        "host": {"cores": os.cpu_count(), "python": platform.python_version(),
                 "note": "shared 2-core VM, other engineers' jobs running: noisy",
                 "load_average_start": [round(x, 2) for x in os.getloadavg()]},
    }  # fmt: skip
    try:
        scratch = workdir / "scratch"
        scratch.mkdir()
        result["physical_floor"] = physical_floor(source, scratch, size, args.repeat)

        if not args.skip_local:
            await run_local(args, pg, workdir, source, scratch, size, digest, result)
        if args.skip_s3:
            result["host"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
            return result

        bucket = "w4-bench"
        async with get_session().create_client(
            "s3", endpoint_url=s3.endpoint_url, region_name="us-east-1",
            aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
        ) as client:  # fmt: skip
            await client.create_bucket(Bucket=bucket)
        directs = [
            await s3_direct(s3, bucket, source, scratch, size, part) for _ in range(args.repeat)
        ]
        result["s3_direct"] = {
            "upload_mib_s": statistics.median(d["upload_mib_s"] for d in directs),
            "download_mib_s": statistics.median(d["download_mib_s"] for d in directs),
            "runs": directs,
        }
        s3_settings = {
            "backend": "s3",
            "part_size_bytes": part,
            "parts_in_flight": args.parts_in_flight,
            "s3": {"endpoint_url": s3.endpoint_url, "bucket": bucket, "prefix": "registry/",
                   "access_key_id": s3.access_key, "secret_access_key": s3.secret_key},
        }  # fmt: skip
        remote = ServerProcess(
            await fresh_database(pg, "w4_s3"),
            workdir,
            service_settings(args, s3_settings),
            server_env(args),
        )
        try:
            result["s3"] = await through_service(remote, source, scratch, size, digest, args.repeat)
        finally:
            remote.stop()
        direct = result["s3_direct"]
        result["s3"]["upload_vs_direct"] = round(
            result["s3"]["upload_mib_s"] / direct["upload_mib_s"], 2
        )
        result["s3"]["download_vs_direct"] = round(
            result["s3"]["download_mib_s"] / direct["download_mib_s"], 2
        )
        result["host"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        await asyncio.to_thread(s3.stop)
        await asyncio.to_thread(pg.stop)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--workdir", default="")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument(
        "--malloc-mmap-threshold", type=int, default=0,
        help="glibc M_MMAP_THRESHOLD for the server process (0: glibc's dynamic default)",
    )  # fmt: skip
    parser.add_argument(
        "--malloc-arena-max", type=int, default=None,
        help="the artifact service's malloc_arena_max (0: glibc's default; unset: the service's)",
    )  # fmt: skip
    parser.add_argument("--parts-in-flight", type=int, default=2, help="S3 backend setting")
    parser.add_argument("--skip-local", action="store_true", help="only the S3 part")
    parser.add_argument("--skip-s3", action="store_true", help="only the local part")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--artifact-settings", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
