"""W3 of workloads.md: filtered, keyset-paged search over 10,000 model versions.

Starts `modelreg serve --service metadata` (embedded PostgreSQL, durable commits) like
w1_versions.py, populates 100 models x 100 versions with 16 threads, then pages through q1-q3
with page size 100 using plain generated stubs, and prints one JSON document.

    python bench/w3_search.py [--models 100] [--versions 100] [--scans 20]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from w1_versions import (  # type: ignore[import-not-found]
    Server,
    environment,
    run_load,
    serve,
    summary_ms,
)

from modelreg.metadata.v1 import model_version_pb2 as mv
from modelreg.metadata.v1 import model_version_service_pb2 as mvs
from modelreg.metadata.v1 import model_version_service_pb2_grpc as mvs_grpc
from modelreg.metadata.v1 import registered_model_pb2 as rm
from modelreg.metadata.v1 import registered_model_service_pb2 as rms
from modelreg.metadata.v1 import registered_model_service_pb2_grpc as rms_grpc

STAGES = ("dev", "staging", "prod")


def populate(server: Server, models: int, versions: int) -> dict[str, Any]:
    def make(channel: grpc.Channel) -> Callable[[int], Any]:
        model_stub = rms_grpc.RegisteredModelServiceStub(channel)
        version_stub = mvs_grpc.ModelVersionServiceStub(channel)

        def call(m: int) -> int:
            model_stub.CreateRegisteredModel(
                rms.CreateRegisteredModelRequest(
                    registered_model_id=f"m-{m}",
                    registered_model=rm.RegisteredModel(tags={"team": "a" if m % 2 else "b"}),
                )
            )
            for j in range(1, versions + 1):
                version_stub.CreateModelVersion(
                    mvs.CreateModelVersionRequest(
                        parent=f"models/m-{m}",
                        model_version=mv.ModelVersion(
                            tags={
                                "team": "a" if (m + j) % 2 == 0 else "b",
                                "stage": STAGES[j % 3],
                            }
                        ),
                    )
                )
            return versions

        return call

    started = time.perf_counter()
    result = run_load(server.address, 16, models, make)
    elapsed = time.perf_counter() - started
    if result.errors:
        raise RuntimeError(f"population failed: {result.errors[:3]}")
    total = sum(result.results.values())
    return {
        "versions": total,
        "seconds": round(elapsed, 2),
        "versions_per_s": round(total / elapsed, 1),
    }


BULK_SQL = """
INSERT INTO registered_models (name, created_by, last_version, tags)
SELECT 'b-' || m, 'bench', $2, jsonb_build_object('team', CASE WHEN m % 2 = 1 THEN 'a' ELSE 'b' END)
FROM generate_series(0, $1 - 1) m;
INSERT INTO model_versions (model_id, model_name, version, state, tags, created_by)
SELECT rm.id, rm.name, j, 'PENDING_REGISTRATION',
    jsonb_build_object(
        'team', CASE WHEN (m + j) % 2 = 0 THEN 'a' ELSE 'b' END,
        'stage', (ARRAY['dev', 'staging', 'prod'])[j % 3 + 1]),
    'bench'
FROM generate_series(0, $1 - 1) m
JOIN registered_models rm ON rm.name = 'b-' || m
CROSS JOIN generate_series(1, $2) j;
INSERT INTO model_version_tags (version_id, key, value)
SELECT v.id, t.key, t.value FROM model_versions v, jsonb_each_text(v.tags) t
WHERE v.created_by = 'bench';
ANALYZE;
"""


def bulk_load(server: Server, models: int, versions: int) -> dict[str, Any]:
    """Loads models x versions straight into the server's database (the scale run's data; the
    API path is what W1 measures)."""
    import asyncio

    import asyncpg

    pid_file = server.home / "postgres" / "postmaster.pid"
    port = int(pid_file.read_text().splitlines()[3])

    async def load() -> None:
        conn = await asyncpg.connect(
            f"postgresql://postgres@127.0.0.1:{port}/modelreg",
            server_settings={"search_path": "metadata"},
        )
        try:
            async with conn.transaction():
                for statement in BULK_SQL.split(";"):
                    if statement.strip():
                        args = (models, versions) if "$1" in statement else ()
                        await conn.execute(statement, *args)
        finally:
            await conn.close()

    started = time.perf_counter()
    asyncio.run(load())
    return {"versions": models * versions, "seconds": round(time.perf_counter() - started, 1)}


def run_query(
    address: str,
    filter_text: str,
    expected: int,
    scans: int,
    page_size: int = 100,
    max_pages: int = 0,
) -> dict[str, Any]:
    page_latencies: list[float] = []
    first_pages: list[float] = []
    full_scans: list[float] = []
    counts: list[int] = []
    problems: list[str] = []
    client_before = resource.getrusage(resource.RUSAGE_SELF)
    with grpc.insecure_channel(address) as channel:
        stub = mvs_grpc.ModelVersionServiceStub(channel)
        for scan in range(scans + 1):  # scan 0 is the unmeasured warm-up
            seen: set[str] = set()
            token = ""
            pages: list[float] = []
            scan_start = time.perf_counter()
            while True:
                t0 = time.perf_counter()
                reply = stub.SearchModelVersions(
                    mvs.SearchModelVersionsRequest(
                        filter=filter_text, page_size=page_size, page_token=token
                    )
                )
                pages.append(time.perf_counter() - t0)
                if len(reply.model_versions) > page_size:
                    problems.append("page larger than page_size")
                for version in reply.model_versions:
                    if version.name in seen:
                        problems.append(f"duplicate {version.name}")
                    seen.add(version.name)
                token = reply.next_page_token
                if not token or (max_pages and len(pages) >= max_pages):
                    break
            elapsed = time.perf_counter() - scan_start
            if scan == 0:
                continue
            page_latencies += pages
            first_pages.append(pages[0])
            full_scans.append(elapsed)
            counts.append(len(seen))
    client_after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "filter": filter_text,
        "expected": expected,
        "counts": sorted(set(counts)),
        "pages_per_scan": -(-counts[0] // page_size) if counts else 0,
        "scans": scans,
        "per_page": summary_ms(page_latencies),
        "first_page": summary_ms(first_pages),
        "full_scan": summary_ms(full_scans),
        "correct": not problems
        and set(counts) == {min(expected, max_pages * page_size) if max_pages else expected},
        "problems": problems[:5],
        "client_cpu_s": round(
            (client_after.ru_utime + client_after.ru_stime)
            - (client_before.ru_utime + client_before.ru_stime),
            2,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--versions", type=int, default=100)
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--q3-scans", type=int, default=5)
    # The scale run: bulk-load this many more versions (100 per model) and query them.
    parser.add_argument("--scale", type=int, default=0)
    args = parser.parse_args()
    report: dict[str, Any] = {"environment": environment(), "sizes": vars(args)}
    scaled = args.models != 100 or args.versions != 100
    with serve() as server:
        report["population"] = populate(server, args.models, args.versions)
        cpu_before = server.cpu()
        queries = {}
        if not scaled:
            queries["q1"] = run_query(
                server.address, 'name = "m-42" AND tags.stage = prod', 33, args.scans
            )
            queries["q2"] = run_query(
                server.address, 'name LIKE "m-4%" AND tags.team = a', 550, args.scans
            )
        half = args.models * args.versions // 2
        queries["q3"] = run_query(server.address, "tags.team = a", half, args.q3_scans)
        cpu_after = server.cpu()
        report["W3"] = queries
        if args.scale:
            scale_models = args.scale // 100
            report["scale_load"] = bulk_load(server, scale_models, 100)
            report["W3_scale"] = {
                "q1": run_query(
                    server.address, 'name = "b-4242" AND tags.stage = prod', 33, args.scans
                ),
                "q2": run_query(
                    server.address,
                    'name LIKE "b-42%" AND tags.team = a',
                    50 * len([m for m in range(scale_models) if str(m).startswith("42")]),
                    3,
                ),
                # 500,000 results: the first 50 pages of each scan are measured.
                "q3_first_50_pages": run_query(
                    server.address, "tags.team = a", scale_models * 50, 3, max_pages=50
                ),
            }
        report["server_cpu_s"] = {k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_after}
        report["memory"] = server.memory()
    if not args.scale:
        report["not_run"] = "the 1,000,000-version scale run (use --scale 1000000)"
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
