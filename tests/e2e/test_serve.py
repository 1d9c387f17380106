"""`modelreg serve` as a new user runs it: embedded PostgreSQL, one port, clean SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelreg_common.local_postgres import free_port
from modelreg_server.catalog import SERVICES, load_specs
from modelreg_server.cli import main as cli_main
from testkit import grpc_services


def wait_serving(target: str, process: subprocess.Popen[bytes], timeout: float) -> float:
    started = time.monotonic()
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() - started < timeout:
            if process.poll() is not None:
                raise AssertionError(f"serve exited early with {process.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic() - started
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise AssertionError(f"not SERVING within {timeout}s")


def stop(process: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=15)
    return time.monotonic() - started


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def serve(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    # A free port for the web UI too, so that no two servers (or a developer's) fight over 8080.
    env.update(
        MODELREG_HOME=str(home),
        MODELREG_LISTEN=f"127.0.0.1:{port}",
        MODELREG_WEB_LISTEN="127.0.0.1:0",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "modelreg_server", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_serve_embedded_default_starts_stops_and_restarts_on_same_data(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    process = serve(home, port)
    try:
        wait_serving(target, process, timeout=60)
        assert cli_main(["health", "--target", target]) == 0
        listed = capsys.readouterr().out
        expected = {n for spec in load_specs() for n in grpc_services(spec.name)}
        for name in expected | {"grpc.health.v1.Health"}:
            assert name in listed
        assert stop(process) < 5
        assert process.returncode == 0, process.stderr.read() if process.stderr else ""
        assert (home / "postgres" / "PG_VERSION").exists()

        process = serve(home, port)
        # About 2 s on an idle box (no initdb, migrations already applied); the bound is loose
        # because test machines are shared, and only catches a restart that redoes set-up.
        assert wait_serving(target, process, timeout=30) < 15
        assert stop(process) < 5
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_catalog_lists_only_importable_specs() -> None:
    assert [spec.name for spec in load_specs()] == list(SERVICES)
