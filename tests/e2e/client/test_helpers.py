"""The client's helpers against every service in one in-process server, sync and async: register
a folder, download it back with digest checks, promote through a policy, resume a Subscribe."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from modelreg.client import (
    AsyncRegistry,
    CallPolicy,
    NotFoundError,
    Registry,
    parse_reference,
)
from modelreg.client.helpers import Reference
from modelreg.metadata.v1 import model_version_pb2
from modelreg_common.server import RegistryServer, ServiceSpec
from testkit import make_settings

if TYPE_CHECKING:
    from conftest import StartServer


@pytest.fixture
async def server(
    start_server: StartServer, all_specs: list[ServiceSpec], tmp_path: Path
) -> RegistryServer:
    return await start_server(all_specs, settings=make_settings(home=tmp_path / "home"))


def model_folder(root: Path) -> dict[str, bytes]:
    files = {
        "MLmodel": b"flavor: sklearn\n",
        "weights/model.bin": os.urandom(300_000),
        "weights/empty.txt": b"",
    }
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return files


SIGNATURE = {
    "inputs": [{"name": "amount", "type": "DATA_TYPE_FLOAT64", "shape": ["-1"]}],
    "outputs": [{"name": "score", "type": "DATA_TYPE_FLOAT32"}],
}


def test_references_parse_in_every_documented_form() -> None:
    assert parse_reference("models:/fraud@champion") == Reference("models/fraud", alias="champion")
    assert parse_reference("models/fraud@champion") == Reference("models/fraud", alias="champion")
    assert parse_reference("models:/fraud/3") == Reference(
        "models/fraud", version="models/fraud/versions/3"
    )
    assert parse_reference("models/fraud/versions/3").version == "models/fraud/versions/3"
    for bad in ("fraud", "models:/fraud", "models:/fraud@", "models/fraud/3", "models:/a b@x"):
        with pytest.raises(ValueError, match="not a model"):
            parse_reference(bad)


async def test_sync_register_download_promote(server: RegistryServer, tmp_path: Path) -> None:
    source = tmp_path / "model"
    files = model_folder(source)
    model = f"h-{uuid.uuid4().hex[:10]}"
    seen: list[tuple[str, int, int]] = []

    def journey() -> None:
        with Registry(server.address) as registry:
            version = registry.register_model(
                model, source, signature=SIGNATURE, tags={"team": "risk"},
                progress=lambda p, d, t: seen.append((p, d, t)),
            )  # fmt: skip
            assert version.state == model_version_pb2.MODEL_VERSION_STATE_READY
            assert version.artifact_file_count == len(files)
            assert version.signature.inputs[0].name == "amount"
            # The second registration finds the model and makes version 2.
            second = registry.register_model(f"models/{model}", source / "MLmodel")
            assert second.version == 2

            moved = registry.promote(model, 1, "champion", reason="first")
            assert moved.moved
            assert moved.alias is not None
            dest = tmp_path / "out"
            got = registry.download(f"models:/{model}@champion", dest)
            assert got.name == version.name
            for path, data in files.items():
                assert (dest / path).read_bytes() == data
            one = registry.download(f"models:/{model}/2", tmp_path / "two")
            assert one.version == 2
            assert (tmp_path / "two" / "MLmodel").exists()

            with pytest.raises(NotFoundError):
                registry.download(f"models:/{model}@nobody", tmp_path / "x")
            events = registry.subscribe(f'subject = "models/{model}"', after_sequence=0)
            assert next(events).type == "registered_model.created"
            events.close()  # cancels the stream
            with pytest.raises(FileNotFoundError):
                registry.register_model(model, tmp_path / "missing")

            # A protected alias: promote opens a transition request instead.
            registry.lifecycle.set_policy(
                policy={"name": f"models/{model}/policy",
                        "rules": [{"aliases": ["champion"], "protected": True}]}
            )  # fmt: skip
            pending = registry.promote(model, 2, "champion", reason="better")
            assert not pending.moved
            assert pending.transition_request is not None
            assert pending.transition_request.alias == "champion"
            with pytest.raises(NotFoundError):
                registry.promote(model, 99, "challenger")

    await asyncio.to_thread(journey)
    total = sum(len(d) for d in files.values())
    first_registration = [s for s in seen if s[2] == total]
    assert first_registration[-1][1] == total
    assert [d for _, d, _ in first_registration] == sorted(d for _, d, _ in first_registration)


async def test_async_register_download_and_digest_check(
    server: RegistryServer, tmp_path: Path
) -> None:
    source = tmp_path / "model"
    files = model_folder(source)
    model = f"a-{uuid.uuid4().hex[:10]}"
    progress: list[int] = []
    async with AsyncRegistry(server.address) as registry:
        version = await registry.register_model(
            model, source, progress=lambda _p, done, _t: progress.append(done)
        )
        assert version.state == model_version_pb2.MODEL_VERSION_STATE_READY
        assert progress[-1] == sum(len(d) for d in files.values())
        dest = tmp_path / "out"
        downloaded: list[int] = []
        got = await registry.download(
            version.name, dest, progress=lambda _p, done, _t: downloaded.append(done)
        )
        assert got.name == version.name
        assert downloaded[-1] == progress[-1]
        for path, data in files.items():
            assert hashlib.sha256((dest / path).read_bytes()).digest() == (
                hashlib.sha256(data).digest()
            )


async def test_subscribe_resumes_after_the_last_sequence_seen(
    server: RegistryServer, tmp_path: Path
) -> None:
    model = f"s-{uuid.uuid4().hex[:10]}"
    flt = f'type = "registered_model.created" AND subject = "models/{model}*"'
    async with AsyncRegistry(server.address) as registry:
        start = await registry.last_sequence()
        for suffix in ("a", "b", "c"):
            await registry.metadata.create_registered_model(registered_model_id=model + suffix)
        got: list[str] = []
        async with asyncio.timeout(20):
            async for event in registry.subscribe(flt, after_sequence=start):
                got.append(event.subject)
                if len(got) == 2:
                    break
            last = await registry.last_sequence(f'subject = "models/{model}a"')
            # A new subscription from a sequence continues where the first one stopped.
            async for event in registry.subscribe(flt, after_sequence=last):
                got.append(event.subject)
                if len(got) == 4:
                    break
        assert got[:2] == [f"models/{model}a", f"models/{model}b"]
        assert got[2:] == [f"models/{model}b", f"models/{model}c"]


async def test_subscribe_resumes_across_a_server_restart(
    start_server, all_specs: list[ServiceSpec], tmp_path: Path
) -> None:
    from modelreg_common.local_postgres import free_port

    settings = make_settings(home=tmp_path / "home", listen=f"127.0.0.1:{free_port()}")
    first = await start_server(all_specs, settings=settings)
    model = f"r-{uuid.uuid4().hex[:10]}"
    flt = f'subject = "models/{model}*"'
    got: list[str] = []
    arrived = asyncio.Event()

    # Patient retries: after the restart the channel reconnects with its own backoff.
    patient = CallPolicy(max_attempts=30, max_backoff=0.5)
    async with AsyncRegistry(first.address, policy=patient) as registry:

        async def follow() -> None:
            async for event in registry.subscribe(flt, after_sequence=0, max_backoff=0.2):
                got.append(event.subject)
                arrived.set()

        listener = asyncio.create_task(follow())
        try:
            await registry.metadata.create_registered_model(registered_model_id=model + "a")
            async with asyncio.timeout(20):
                await arrived.wait()
            await first.stop(0)
            second = await start_server(all_specs, settings=settings)
            assert second.address == first.address
            arrived.clear()
            await registry.metadata.create_registered_model(registered_model_id=model + "b")
            async with asyncio.timeout(30):
                while len(got) < 2:
                    await arrived.wait()
                    arrived.clear()
        finally:
            listener.cancel()
    assert got == [f"models/{model}a", f"models/{model}b"]
