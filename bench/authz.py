"""What an authorization check costs (issue #9: under 1 ms at p50 added to a call).

Two measurements, printed as one JSON document:

- in process: the interceptor's work for a call, `Authorizer.access_for` (cached roles of a
  principal with model grants) plus `check` against the permission table, timed over many
  iterations; and the cache-miss path, which asks a real metadata service (`ResolveAccess`).
- end to end: `modelreg serve` in token mode; the same `GetModelVersion` call, interleaved, by
  an admin by configuration (no role lookup at all) and by a user who holds a grant on the
  model (cached roles plus the table check). The difference of the p50s is the added cost.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import MappingProxyType
from typing import Any

from modelreg.client import Registry
from modelreg.metadata.v1 import access_pb2
from modelreg_common.access import Access, Role
from modelreg_common.authorizer import Authorizer, check
from modelreg_common.context import Principal
from modelreg_common.local_postgres import free_port
from modelreg_common.permissions import RULES
from modelreg_common.settings import AuthSettings

ADMIN_TOKEN = "bench-admin-" + uuid.uuid4().hex
USER_TOKEN = "bench-user-" + uuid.uuid4().hex


class _Grants:
    def __init__(self, models: int) -> None:
        self.roles = MappingProxyType({f"m{i}": Role.VIEWER for i in range(models)})

    async def resolve(self, subject: str, groups: tuple[str, ...]) -> Access:
        return Access(model_roles=self.roles)


def in_process(iterations: int) -> dict[str, Any]:
    authorizer = Authorizer(AuthSettings(mode="token"), _Grants(1000))
    principal = Principal(subject="alice", groups=("ml",))
    rule = RULES["/modelreg.metadata.v1.ModelVersionService/GetModelVersion"]

    class Request:
        name = "models/m7/versions/3"

    async def run() -> list[float]:
        await authorizer.access_for(principal)  # fill the cache
        samples = []
        for _ in range(iterations):
            started = time.perf_counter_ns()
            access = await authorizer.access_for(principal)
            check(rule, access, Request)
            samples.append((time.perf_counter_ns() - started) / 1000)
        return samples

    samples = asyncio.run(run())
    samples.sort()
    return {
        "iterations": iterations,
        "model_grants": 1000,
        "p50_us": round(samples[len(samples) // 2], 2),
        "p99_us": round(samples[int(len(samples) * 0.99)], 2),
    }


def token_entry(token: str, principal: str) -> dict[str, str]:
    return {"sha256": hashlib.sha256(token.encode()).hexdigest(), "principal": principal}


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    address = f"127.0.0.1:{free_port()}"
    env = dict(os.environ)
    env.update(
        {
            "MODELREG_HOME": str(home),
            "MODELREG_LISTEN": address,
            "MODELREG_LOG_LEVEL": "warning",
            "MODELREG_WEB_LISTEN": "",
            "MODELREG_AUTH__MODE": "token",
            "MODELREG_AUTH__TOKENS": json.dumps(
                [token_entry(ADMIN_TOKEN, "admin"), token_entry(USER_TOKEN, "alice")]
            ),
            "MODELREG_AUTH__ADMINS": json.dumps(["user:admin"]),
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "modelreg_server.cli", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(home / "server.log", "wb"),  # noqa: SIM115
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        done = subprocess.run(
            [sys.executable, "-m", "modelreg_server.cli", "health", "--target", address],
            capture_output=True,
            check=False,
        )
        if done.returncode == 0:
            return process, address
        time.sleep(0.3)
    process.kill()
    raise RuntimeError("server did not become healthy")


def end_to_end(address: str, calls: int) -> dict[str, Any]:
    model = f"authz-{uuid.uuid4().hex[:8]}"
    with Registry(address, token=ADMIN_TOKEN) as admin, Registry(address, token=USER_TOKEN) as user:
        admin.metadata.create_registered_model(registered_model_id=model)
        version = admin.metadata.create_model_version(parent=f"models/{model}").model_version
        policy = admin.metadata.get_iam_policy(resource=f"models/{model}").policy
        policy.bindings.add(role=access_pb2.ROLE_VIEWER, members=["user:alice"])
        admin.metadata.set_iam_policy(resource=f"models/{model}", policy=policy)
        # Cache-miss cost: the first call after an invalidation asks metadata for the roles.
        started = time.perf_counter()
        user.metadata.get_model_version(name=version.name)
        first_call_ms = (time.perf_counter() - started) * 1000
        timings: dict[str, list[float]] = {"admin": [], "granted_user": []}
        for _ in range(200):  # warm both paths
            admin.metadata.get_model_version(name=version.name)
            user.metadata.get_model_version(name=version.name)
        for _ in range(calls):
            for who, client in (("admin", admin), ("granted_user", user)):
                started = time.perf_counter()
                client.metadata.get_model_version(name=version.name)
                timings[who].append((time.perf_counter() - started) * 1000)
    p50 = {who: statistics.median(values) for who, values in timings.items()}
    return {
        "calls_each": calls,
        "admin_p50_ms": round(p50["admin"], 3),
        "granted_user_p50_ms": round(p50["granted_user"], 3),
        "added_p50_ms": round(p50["granted_user"] - p50["admin"], 3),
        "first_call_after_grant_ms": round(first_call_ms, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=200_000)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    result: dict[str, Any] = {
        "benchmark": "authz",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average": os.getloadavg(),
        "in_process": in_process(args.iterations),
    }
    with tempfile.TemporaryDirectory(prefix="modelreg-authz-") as tmp:
        process, address = start_server(Path(tmp))
        try:
            result["end_to_end"] = end_to_end(address, args.calls)
        finally:
            process.terminate()
            process.wait(20)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
