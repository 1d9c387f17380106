"""`python -m modelreg_server serve` as a real process, for the journey tests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelreg_common.local_postgres import free_port


def token_entries(tokens: Mapping[str, str]) -> str:
    """MODELREG_AUTH__TOKENS for {token: principal}."""
    return json.dumps(
        [
            {"sha256": hashlib.sha256(token.encode()).hexdigest(), "principal": principal}
            for token, principal in tokens.items()
        ]
    )


def wait_serving(target: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"modelreg serve exited with {process.returncode}")
            with contextlib.suppress(grpc.RpcError):
                # wait_for_ready: the call itself waits (up to 1 s) for the port to open.
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1, wait_for_ready=True)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
    raise AssertionError(f"modelreg serve not SERVING within {timeout}s")


@contextlib.contextmanager
def serve(dsn: str, home: Path, tokens: Mapping[str, str]) -> Iterator[str]:
    """Run the whole registry over `dsn` on a free port; yields its target. Local auth mode
    with `tokens` listed: a call with a token acts as its principal, one without as `local`."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    env.update(
        MODELREG_DATABASE_URL=dsn,
        MODELREG_HOME=str(home),
        MODELREG_LISTEN=f"127.0.0.1:{port}",
        MODELREG_AUTH__MODE="local",
        MODELREG_AUTH__TOKENS=token_entries(tokens),
        # The webhook receiver of the journey listens on 127.0.0.1.
        MODELREG_EVENTS_ALLOW_PRIVATE_TARGETS="true",
        MODELREG_EVENTS_RETRY_BASE_SECONDS="0.1",
        MODELREG_LOG_LEVEL="warning",
        # No web UI: a developer's `make serve` may hold 8080.
        MODELREG_WEB_LISTEN="",
    )
    home.mkdir(parents=True, exist_ok=True)
    with (home / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelreg_server", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_serving(f"127.0.0.1:{port}", process, timeout=60)
            yield f"127.0.0.1:{port}"
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
