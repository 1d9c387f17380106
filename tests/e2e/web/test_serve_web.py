"""When `modelreg serve` runs the web UI, and what happens when its port is taken."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from e2e.journey.serving import wait_serving
from modelreg.events.v1 import event_service_pb2
from modelreg_common.local_postgres import free_port
from modelreg_common.settings import Settings, TlsSettings
from modelreg_server.catalog import SERVICES
from modelreg_server.cli import web_off_reason
from modelreg_server.web import decode_frames, encode_data_frame


def test_the_ui_runs_only_where_every_service_does() -> None:
    assert web_off_reason(Settings(), None) is None
    assert web_off_reason(Settings(), list(SERVICES)) is None
    assert web_off_reason(Settings(web_listen=""), None) == "MODELREG_WEB_LISTEN is empty"
    assert web_off_reason(Settings(), ["metadata"]) == "not every service runs in this process"
    tls = Settings(tls=TlsSettings(cert_file=Path("/x.pem"), key_file=Path("/x.key")))
    assert web_off_reason(tls, None) == "TLS is configured on the gRPC port"


@contextlib.contextmanager
def occupied(port: int) -> Iterator[None]:
    """Holds `port` on 127.0.0.1, unless something else already does (then it stays taken)."""
    sock = socket.socket()
    try:
        with contextlib.suppress(OSError):
            sock.bind(("127.0.0.1", port))
            sock.listen()
        yield
    finally:
        sock.close()


def _serve(dsn: str, home: Path, port: int, **extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    env.update(
        MODELREG_DATABASE_URL=dsn,
        MODELREG_HOME=str(home),
        MODELREG_LISTEN=f"127.0.0.1:{port}",
        **extra,
    )
    home.mkdir(parents=True, exist_ok=True)
    with (home / "serve.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "modelreg_server", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@pytest.mark.slow
async def test_a_taken_default_port_leaves_the_registry_serving_without_the_ui(
    dsn: str, tmp_path: Path
) -> None:
    port = free_port()
    with occupied(8080):
        process = await asyncio.to_thread(_serve, dsn, tmp_path, port)
        try:
            await asyncio.to_thread(wait_serving, f"127.0.0.1:{port}", process, 60)
        finally:
            code = await asyncio.to_thread(_stop, process)
    log = (tmp_path / "serve.log").read_text()
    assert code == 0, log[-3000:]
    assert '"web.unavailable"' in log


@pytest.mark.slow
async def test_a_taken_explicit_port_stops_start_up(dsn: str, tmp_path: Path) -> None:
    web_port = free_port()
    with occupied(web_port):
        process = await asyncio.to_thread(
            _serve, dsn, tmp_path, free_port(), MODELREG_WEB_LISTEN=f"127.0.0.1:{web_port}"
        )
        try:
            code = await asyncio.to_thread(process.wait, 60)
        finally:
            await asyncio.to_thread(_stop, process)
    assert code != 0
    assert "address already in use" in (tmp_path / "serve.log").read_text().lower()


@pytest.mark.slow
async def test_local_mode_refuses_a_ui_on_a_public_address(dsn: str, tmp_path: Path) -> None:
    process = await asyncio.to_thread(
        _serve, dsn, tmp_path, free_port(), MODELREG_WEB_LISTEN=f"0.0.0.0:{free_port()}"
    )
    try:
        code = await asyncio.to_thread(process.wait, 60)
    finally:
        await asyncio.to_thread(_stop, process)
    assert code != 0
    assert "refusing to serve the web UI on 0.0.0.0" in (tmp_path / "serve.log").read_text()


@pytest.mark.slow
async def test_sigterm_with_a_live_tail_open_stops_within_the_grace(
    dsn: str, tmp_path: Path
) -> None:
    web_port = free_port()
    port = free_port()
    process = await asyncio.to_thread(
        _serve,
        dsn,
        tmp_path,
        port,
        MODELREG_WEB_LISTEN=f"127.0.0.1:{web_port}",
        MODELREG_SHUTDOWN_GRACE_SECONDS="1",
    )
    try:
        await asyncio.to_thread(wait_serving, f"127.0.0.1:{port}", process, 60)
        subscribe = event_service_pb2.SubscribeRequest(from_now=True)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{web_port}/modelreg.events.v1.EventService/Subscribe",
                data=encode_data_frame(subscribe.SerializeToString()),
                headers={"Content-Type": "application/grpc-web+proto"},
            ) as response,
        ):
            # The headers are in: the stream is open, and no event will come to end it.
            assert response.status == 200
            reading = asyncio.create_task(response.read())
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, 15)
            elapsed = time.monotonic() - started
            body = await reading
    finally:
        await asyncio.to_thread(_stop, process)
    assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]
    assert elapsed < 5
    # The stream ends with a status the browser can read, not a cut connection.
    _, trailers = decode_frames(body)
    assert trailers["grpc-status"] in ("1", "14"), trailers
