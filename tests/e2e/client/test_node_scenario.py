"""The Node.js client (clients/node, loaded from protos/ by @grpc/proto-loader) runs its scenario
against every service in one server: register, alias, resolve, and one event on Subscribe."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path

import pytest

from modelreg_common.server import RegistryServer, ServiceSpec
from testkit import make_settings

NODE_DIR = Path(__file__).resolve().parents[3] / "clients" / "node"


async def test_node_scenario_registers_resolves_and_receives_the_alias_event(
    start_server, all_specs: list[ServiceSpec], tmp_path: Path
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.skip("clients/node has no node_modules: run `npm ci` in clients/node")
    server: RegistryServer = await start_server(
        all_specs, settings=make_settings(home=tmp_path / "home")
    )
    model = f"node-{uuid.uuid4().hex[:10]}"
    process = await asyncio.create_subprocess_exec(
        node, str(NODE_DIR / "scenario.mjs"), server.address, model,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(60):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    version = f"models/{model}/versions/1"
    assert result == {
        "model": f"models/{model}",
        "version": version,
        "state": "MODEL_VERSION_STATE_READY",
        "resolved": version,
        "event_type": "model_version.alias_set",
        "event_subject": version,
    }


async def test_node_scenario_fails_clearly_without_a_server() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.skip("clients/node has no node_modules")
    from modelreg_common.local_postgres import free_port

    process = await asyncio.create_subprocess_exec(
        node, str(NODE_DIR / "scenario.mjs"), f"127.0.0.1:{free_port()}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        _, stderr = await process.communicate()
    assert process.returncode != 0
    assert b"UNAVAILABLE" in stderr or b"14" in stderr
