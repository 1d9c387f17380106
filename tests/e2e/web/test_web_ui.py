"""The web UI against `modelreg serve` as a real process, in token mode with two users.

The gateway is checked over plain HTTP (grpc-web framing, status details, streams, downloads,
assets, refusals), and the pages in headless Chromium driven by playwright-core
(scenario.mjs): search, lineage, approval by a second user, self-approval refused, the audit
log and its live tail. Screenshots go to tests/e2e/web/screenshots/ (or $MODELREG_SCREENSHOTS).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from google.rpc import error_details_pb2, status_pb2

from e2e.journey.serving import wait_serving
from e2e.web.seed import MODEL, Seeded, seed
from modelreg.client import AsyncRegistry
from modelreg.events.v1 import event_service_pb2
from modelreg.lifecycle.v1 import transition_request_pb2
from modelreg.metadata.v1 import registered_model_service_pb2
from modelreg_common.local_postgres import free_port
from modelreg_server.web import decode_frames, encode_data_frame

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
ALICE = "alice-" + uuid.uuid4().hex
BOB = "bob-" + uuid.uuid4().hex
PEER = "peer-" + uuid.uuid4().hex
MAX_MESSAGE_BYTES = 1024 * 1024
AUTH_MODE = "token"
GET_MODEL = "/modelreg.metadata.v1.RegisteredModelService/GetRegisteredModel"


@dataclass(frozen=True)
class Served:
    target: str
    url: str
    seeded: Seeded
    log: Path


def _tokens() -> str:
    entries = [(ALICE, "alice"), (BOB, "bob"), (PEER, "system:peers")]
    return json.dumps(
        [{"sha256": hashlib.sha256(t.encode()).hexdigest(), "principal": p} for t, p in entries]
    )


@pytest.fixture(scope="module")
async def served(
    pg: Any, template: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    home = tmp_path_factory.mktemp("web")
    database = f"web_{uuid.uuid4().hex}"
    await pg.execute(f'CREATE DATABASE "{database}" TEMPLATE "{template}"')
    port, web_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    env.update(
        MODELREG_DATABASE_URL=pg.dsn(database),
        MODELREG_HOME=str(home),
        MODELREG_LISTEN=f"127.0.0.1:{port}",
        MODELREG_WEB_LISTEN=f"127.0.0.1:{web_port}",
        MODELREG_AUTH__MODE=AUTH_MODE,
        MODELREG_AUTH__TOKENS=_tokens(),
        # Both users may do everything their role allows anywhere: what the UI shows and
        # refuses here is the lifecycle's four-eyes rule, not a missing grant. The services'
        # peer principal is an admin too (as in e2e/multiprocess/test_token_mode.py): its
        # roles are not looked up through the very calls that need them.
        MODELREG_AUTH__ADMINS='["user:alice", "user:bob", "user:system:peers"]',
        MODELREG_MAX_MESSAGE_BYTES=str(MAX_MESSAGE_BYTES),
        MODELREG_LOG_LEVEL="info",
    )
    if AUTH_MODE == "token":
        # What the services present to each other; in local mode they call as `local`.
        env["MODELREG_PEERS__TOKEN"] = PEER
    log = home / "serve.log"
    with log.open("wb") as out:
        process = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "modelreg_server", "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await asyncio.to_thread(wait_serving, f"127.0.0.1:{port}", process, 60)
        async with AsyncRegistry(f"127.0.0.1:{port}", token=ALICE) as alice:
            seeded = await seed(alice, home / "files")
        yield Served(f"127.0.0.1:{port}", f"http://127.0.0.1:{web_port}", seeded, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        await pg.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    assert process.returncode == 0, log.read_text()[-4000:]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def grpc_web_headers(token: str | None = BOB, **extra: str) -> dict[str, str]:
    headers = {"Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1", **extra}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def grpc_web(
    http: aiohttp.ClientSession, url: str, body: bytes, token: str | None = BOB
) -> tuple[list[bytes], dict[str, str]]:
    async with http.post(url, data=body, headers=grpc_web_headers(token)) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/grpc-web+proto"
        return decode_frames(await response.read())


def status_details(trailers: dict[str, str]) -> tuple[str, list[tuple[str, str]]]:
    raw = trailers["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(base64.b64decode(raw + "=" * (-len(raw) % 4)))
    reason, violations = "", []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [(v.field, v.description) for v in bad.field_violations]
    return reason, violations


# -- the gateway over HTTP ---------------------------------------------------------------------


async def test_unary_grpc_web_call_reaches_the_servicer(
    served: Served, http: aiohttp.ClientSession
) -> None:
    request = registered_model_service_pb2.GetRegisteredModelRequest(name=f"models/{MODEL}")
    messages, trailers = await grpc_web(
        http, served.url + GET_MODEL, encode_data_frame(request.SerializeToString())
    )
    assert trailers["grpc-status"] == "0"
    reply = registered_model_service_pb2.GetRegisteredModelResponse.FromString(messages[0])
    assert reply.registered_model.tags["team"] == "risk"
    assert reply.registered_model.created_by == "alice"


async def test_errors_carry_status_details_and_the_field(
    served: Served, http: aiohttp.ClientSession
) -> None:
    missing = registered_model_service_pb2.GetRegisteredModelRequest(name="models/nope")
    messages, trailers = await grpc_web(
        http, served.url + GET_MODEL, encode_data_frame(missing.SerializeToString())
    )
    assert messages == []
    assert trailers["grpc-status"] == "5"
    assert status_details(trailers)[0] == "RESOURCE_NOT_FOUND"

    bad = registered_model_service_pb2.SearchRegisteredModelsRequest(filter="name = ")
    _, trailers = await grpc_web(
        http,
        served.url + "/modelreg.metadata.v1.RegisteredModelService/SearchRegisteredModels",
        encode_data_frame(bad.SerializeToString()),
    )
    assert trailers["grpc-status"] == "3"
    reason, violations = status_details(trailers)
    assert reason == "INVALID_FIELD"
    assert [field for field, _ in violations] == ["filter"]


async def test_a_call_with_an_unknown_token_is_unauthenticated(
    served: Served, http: aiohttp.ClientSession
) -> None:
    request = registered_model_service_pb2.GetRegisteredModelRequest(name=f"models/{MODEL}")
    _, trailers = await grpc_web(
        http,
        served.url + GET_MODEL,
        encode_data_frame(request.SerializeToString()),
        token="not-a-token",
    )
    assert trailers["grpc-status"] == "16"
    assert trailers["grpc-message"] == "the bearer token is not valid"


async def test_client_streaming_and_unknown_methods_are_unimplemented(
    served: Served, http: aiohttp.ClientSession
) -> None:
    for path in (
        "/modelreg.artifact.v1.ArtifactService/Upload",
        "/modelreg.metadata.v1.RegisteredModelService/NoSuchMethod",
        "/modelreg.nothing.v1.NothingService/Get",
    ):
        messages, trailers = await grpc_web(http, served.url + path, encode_data_frame(b""))
        assert (messages, trailers["grpc-status"]) == ([], "12"), path
    # Health and reflection are not registry services: not reachable through the gateway.
    async with http.post(
        served.url + "/grpc.health.v1.Health/Check",
        data=encode_data_frame(b""),
        headers=grpc_web_headers(),
    ) as response:
        assert response.status == 405


async def test_malformed_oversized_and_foreign_requests_are_refused(
    served: Served, http: aiohttp.ClientSession
) -> None:
    url = served.url + GET_MODEL
    _, trailers = await grpc_web(http, url, b"\x00\x00\x00\x00\x09abc")
    assert trailers["grpc-status"] == "3"
    assert "truncated" in trailers["grpc-message"]
    _, trailers = await grpc_web(http, url, b"\x01\x00\x00\x00\x00")
    assert (trailers["grpc-status"], trailers["grpc-message"]) == (
        "3",
        "compressed grpc-web messages are not supported",
    )
    _, trailers = await grpc_web(http, url, encode_data_frame(b"x" * (MAX_MESSAGE_BYTES + 10)))
    assert trailers["grpc-status"] == "8"
    async with http.post(url, data=b"{}", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 415
    async with http.post(
        url,
        data=encode_data_frame(b""),
        headers=grpc_web_headers(Origin="https://evil.example.com"),
    ) as r:
        assert r.status == 403


async def test_server_streams_are_relayed_frame_by_frame(
    served: Served, http: aiohttp.ClientSession
) -> None:
    request = event_service_pb2.SubscribeRequest(
        filter=f'subject = "models/{MODEL}"', after_sequence=0
    )
    async with http.post(
        served.url + "/modelreg.events.v1.EventService/Subscribe",
        data=encode_data_frame(request.SerializeToString()),
        headers=grpc_web_headers(),
    ) as response:
        assert response.status == 200
        # The stream never ends by itself: read the first frame as soon as it arrives.
        async with asyncio.timeout(10):
            header = await response.content.readexactly(5)
            assert header[0] == 0
            body = await response.content.readexactly(int.from_bytes(header[1:], "big"))
    event = event_service_pb2.SubscribeResponse.FromString(body).event
    assert (event.type, event.actor) == ("registered_model.created", "alice")


async def test_download_streams_a_file_with_the_callers_token(
    served: Served, http: aiohttp.ClientSession
) -> None:
    url = served.url + "/download"
    owner = f"models/{MODEL}/versions/1"
    auth = {"Authorization": f"Bearer {BOB}"}
    async with http.get(url, params={"owner": owner, "path": "MLmodel"}, headers=auth) as r:
        assert r.status == 200
        assert await r.read() == b"flavor: sklearn\n"
        assert r.headers["Content-Disposition"] == "attachment; filename*=UTF-8''MLmodel"
        assert r.headers["Digest"] == "sha256:" + hashlib.sha256(b"flavor: sklearn\n").hexdigest()
    async with http.get(url, params={"owner": owner, "path": "nope.bin"}, headers=auth) as r:
        assert r.status == 404
    wrong = {"Authorization": "Bearer not-a-token"}
    async with http.get(url, params={"owner": owner, "path": "MLmodel"}, headers=wrong) as r:
        assert r.status == 401
    async with http.get(url, params={"owner": owner}, headers=auth) as r:
        assert r.status == 400


async def test_whoami_is_the_servers_own_authentication(
    served: Served, http: aiohttp.ClientSession
) -> None:
    async with http.get(served.url + "/whoami", headers={"Authorization": f"Bearer {ALICE}"}) as r:
        assert (r.status, (await r.json())["subject"]) == (200, "alice")
    async with http.get(served.url + "/whoami") as r:
        # Local mode: no token is the local principal; token mode: refused.
        if AUTH_MODE == "local":
            assert (r.status, (await r.json())["subject"]) == (200, "local")
        else:
            assert (r.status, (await r.json())["code"]) == (401, "UNAUTHENTICATED")
    async with http.get(served.url + "/whoami", headers={"Authorization": "Bearer wrong"}) as r:
        assert r.status == 401


async def test_assets_client_routes_and_security_headers(
    served: Served, http: aiohttp.ClientSession
) -> None:
    async with http.get(served.url + f"/models/{MODEL}/versions/2") as r:
        assert r.status == 200
        page = await r.text()
        assert '<div id="root">' in page
        assert r.headers["Cache-Control"] == "no-cache"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    script = page.split('src="', 1)[1].split('"', 1)[0]
    async with http.get(served.url + script) as r:
        assert r.status == 200
        assert "immutable" in r.headers["Cache-Control"]
    for missing in ("/assets/nope.js", "/../../pyproject.toml", "/%2e%2e/%2e%2e/pyproject.toml"):
        async with http.get(served.url + missing) as r:
            assert r.status == 404, missing


# -- the pages in a real browser -----------------------------------------------------------------


def _browser_or_skip() -> tuple[str, str]:
    node = shutil.which("node")
    chromium = os.environ.get("MODELREG_CHROMIUM", "/usr/bin/chromium")
    if node is None:
        pytest.skip("node is not installed (make setup installs the browser test tools)")
    if not Path(chromium).exists():
        pytest.skip(f"{chromium} is missing: apt-get install chromium (make setup does)")
    if not (ROOT / "clients/web/node_modules/playwright-core").is_dir():
        pytest.skip("clients/web/node_modules is missing: run make setup (npm ci)")
    return node, chromium


async def test_the_pages_in_a_browser(served: Served) -> None:
    node, chromium = _browser_or_skip()
    screenshots = Path(
        os.environ.get("MODELREG_SCREENSHOTS", ROOT / "tests" / "e2e" / "web" / "screenshots")
    )
    process = await asyncio.create_subprocess_exec(
        node,
        str(Path(__file__).with_name("scenario.mjs")),
        env={
            **os.environ,
            "BASE_URL": served.url,
            "ALICE_TOKEN": ALICE,
            "BOB_TOKEN": BOB,
            "MODEL": MODEL,
            "SCREENSHOTS": str(screenshots),
            "CHROMIUM": chromium,
            "AUTH_MODE": AUTH_MODE,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(180):
        out, err = await process.communicate()
    steps = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert process.returncode == 0, f"{err.decode()}\nsteps: {steps}"
    by_step = {s["step"]: s for s in steps}
    assert by_step["search"]["found"] == [MODEL]
    nodes = by_step["lineage"]["nodes"]
    assert any(n.startswith("datasets/") for n in nodes), nodes
    assert any("/runs/" in n for n in nodes), nodes
    assert "cannot approve" in by_step["self-approval-refused"]["message"]
    assert "model_version.alias_set" in by_step["live-event"]["types"]
    assert any("tags.validated" in line for line in by_step["policy-check-refused"]["shown"])
    shots = sorted(Path(s["path"]).name for s in steps if s["step"] == "screenshot")
    for name in (
        "catalogue-search",
        "model",
        "version",
        "approvals-self",
        "approvals-refused",
        "audit",
        "audit-live",
    ):
        assert f"{name}.png" in shots
        assert (screenshots / f"{name}.png").stat().st_size > 10_000
    print(f"\nscreenshots of the web UI: {screenshots}")

    # What the browser did is what the registry recorded.
    async with AsyncRegistry(served.target, token=BOB) as bob:
        champion = await bob.resolve(f"models:/{MODEL}@champion")
        assert champion.name == f"models/{MODEL}/versions/2"
        request = (
            await bob.lifecycle.get_transition_request(name=served.seeded.request)
        ).transition_request
        assert request.state == transition_request_pb2.TRANSITION_REQUEST_STATE_APPLIED
        assert [(a.reviewer, a.comment) for a in request.approvals] == [
            ("bob", "Checked the November metrics")
        ]


async def test_changes_made_through_the_gateway_record_the_browsers_address(
    served: Served,
) -> None:
    # The browser's socket is bound to a known port, so its address is known exactly.
    port = free_port()
    name = f"peer-{uuid.uuid4().hex[:8]}"
    create = registered_model_service_pb2.CreateRegisteredModelRequest(registered_model_id=name)
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.1", port))
    async with aiohttp.ClientSession(connector=connector) as browser:
        _, trailers = await grpc_web(
            browser,
            served.url + "/modelreg.metadata.v1.RegisteredModelService/CreateRegisteredModel",
            encode_data_frame(create.SerializeToString()),
        )
    assert trailers["grpc-status"] == "0"
    forged = f"forged-{uuid.uuid4().hex[:8]}"
    async with AsyncRegistry(served.target, token=BOB) as bob:
        # A gRPC caller that names another address itself is not believed.
        await bob.metadata.create_registered_model(
            registered_model_id=forged,
            metadata=(
                ("x-modelreg-forwarded-for", "ipv4:203.0.113.9:1234"),
                ("x-modelreg-forwarder", "guess"),
            ),
        )

        async def peer_of(model: str) -> str:
            flt = f'type = "registered_model.created" AND subject = "models/{model}"'
            async with asyncio.timeout(20):
                while True:
                    page = await bob.events.list_events(filter=flt)
                    if page.events:
                        return str(page.events[0].peer)
                    await asyncio.sleep(0.05)

        assert await peer_of(name) == f"ipv4:127.0.0.1:{port}"
        forged_peer = await peer_of(forged)
        assert forged_peer.startswith("ipv4:127.0.0.1:")
        assert "203.0.113.9" not in forged_peer
