"""The `modelreg` client commands against every service in one in-process server: tables,
`--json`, JSON lines for events, and exit codes that are gRPC status code numbers."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from e2e.client.clikit import Cli
from modelreg_common.auth import hash_token
from modelreg_common.server import RegistryServer, ServiceSpec
from modelreg_common.settings import AuthSettings, TokenEntry
from modelreg_server.cli import main as modelreg
from testkit import make_settings

if TYPE_CHECKING:
    from conftest import StartServer

REVIEWER = "reviewer-" + uuid.uuid4().hex


@pytest.fixture
async def server(
    start_server: StartServer,
    all_specs: list[ServiceSpec],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> RegistryServer:
    monkeypatch.setenv("MODELREG_EVENTS_ALLOW_PRIVATE_TARGETS", "true")
    # Local mode: token-less calls are "local" (an admin); the reviewer's token is a second
    # user, who may review any model through the default role.
    auth = AuthSettings(
        tokens=[TokenEntry(sha256=hash_token(REVIEWER), principal="reviewer")],
        default_role="approver",
    )
    return await start_server(all_specs, settings=make_settings(home=tmp_path / "home", auth=auth))


@pytest.fixture
def cli(server: RegistryServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(server.address, capsys)


def folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "model.pkl").write_bytes(b"\x80\x04weights" * 1000)
    (root / "sub" / "conf.json").write_text('{"threshold": 0.5}')
    return root


async def test_models_and_versions(cli: Cli, tmp_path: Path) -> None:
    model = f"cli-{uuid.uuid4().hex[:8]}"
    code, out, _ = await cli("models", "create", model, "--description", "d", "--tag", "team=risk")
    assert code == 0
    assert f"models/{model}" in out
    code, _, err = await cli("models", "create", model)
    assert code == 6  # ALREADY_EXISTS
    assert "RESOURCE_ALREADY_EXISTS" in err

    listed = await cli.json("models", "list", "--limit", "0")
    assert f"models/{model}" in [m["name"] for m in listed]
    code, out, _ = await cli("models", "list")
    assert out.splitlines()[0].split()[:2] == ["NAME", "LATEST_VERSION"]

    signature = json.dumps({"inputs": [{"name": "x", "type": "DATA_TYPE_FLOAT32"}]})
    version = await cli.json(
        "versions", "register", model, str(folder(tmp_path / "m")), "--signature", signature,
        "--tag", "stage=dev", "--run", "",
    )  # fmt: skip
    assert version["state"] == "MODEL_VERSION_STATE_READY"
    assert version["artifact_file_count"] == "2"
    assert version["signature"]["inputs"][0]["name"] == "x"

    code, out, _ = await cli("versions", "list", model)
    assert f"models/{model}/versions/1" in out
    assert "READY" in out
    shown = await cli.json("versions", "show", model, "1")
    assert shown["name"] == f"models/{model}/versions/1"
    assert (await cli.json("versions", "show", f"models:/{model}/1"))["name"] == shown["name"]

    dest = tmp_path / "down"
    code, out, _ = await cli("versions", "download", f"models/{model}/versions/1", str(dest))
    assert code == 0
    assert (dest / "sub" / "conf.json").read_text() == '{"threshold": 0.5}'

    code, _, err = await cli("versions", "show", model, "9")
    assert code == 5  # NOT_FOUND
    assert "RESOURCE_NOT_FOUND" in err
    code, _, err = await cli("versions", "register", model, str(tmp_path / "nothing"))
    assert code == 5
    code, _, err = await cli("versions", "register", model, str(dest), "--signature", "{nope")
    assert code == 3
    assert "not JSON" in err

    code, out, _ = await cli("models", "show", model)
    assert "description" in out
    code, out, _ = await cli("models", "delete", model, "--force")
    assert code == 0, out
    code, _, _ = await cli("models", "show", model)
    assert code == 5


async def test_alias_requests_deployments_and_audit(cli: Cli, tmp_path: Path) -> None:
    model = f"cli-{uuid.uuid4().hex[:8]}"
    (tmp_path / "model.pkl").write_bytes(b"weights")
    for _ in range(2):
        await cli.json("versions", "register", model, str(tmp_path / "model.pkl"))
    code, out, err = await cli("alias", "set", model, "champion", "1", "--reason", "first")
    assert code == 0, err
    assert f"models/{model}/versions/1" in out
    code, out, _ = await cli("alias", "history", model, "champion")
    assert "first" in out
    assert out.splitlines()[0].split()[:2] == ["TIME", "ACTION"]

    request = await cli.json(
        "requests", "create", model, "2", "--alias", "challenger", "--comment", "try it"
    )
    assert request["state"] == "TRANSITION_REQUEST_STATE_PENDING"
    code, out, _ = await cli("requests", "list", model, "--state", "pending")
    assert request["name"] in out
    code, _, err = await cli("requests", "approve", request["name"])
    assert code == 7  # PERMISSION_DENIED: the requester ("local") cannot approve
    rejected = await cli.json(
        "requests", "reject", request["name"], "--comment", "no", "--token", REVIEWER
    )
    assert rejected["state"] == "TRANSITION_REQUEST_STATE_REJECTED"
    code, _, err = await cli("requests", "list", model, "--state", "sideways")
    assert code == 3
    code, _, err = await cli("requests", "create", model, "2")
    assert code == 3
    assert "--alias" in err

    deployed = await cli.json(
        "deployments", "record", model, "1", "--environment", "prod", "--endpoint", "https://x"
    )
    assert deployed["status"] == "DEPLOYMENT_STATUS_ACTIVE"
    code, out, _ = await cli("deployments", "list", model, "--current")
    assert "prod" in out
    code, _, _ = await cli("deployments", "record", model, "1", "--environment", "p", "--status",
                           "exploded")  # fmt: skip
    assert code == 3

    code, out, _ = await cli("alias", "delete", model, "champion")
    assert code == 0
    code, _, err = await cli("alias", "delete", model, "champion")
    assert code == 5

    code, out, _ = await cli("audit", "report", model)
    assert code == 0
    assert out.startswith(f"# Audit report: models/{model}")
    assert "## Deployments" in out
    report = await cli.json("audit", "report", model)
    assert [r["request"]["state"] for r in report["transition_requests"]] == [
        "TRANSITION_REQUEST_STATE_REJECTED"
    ]
    assert report["deployments"][0]["deployment"]["environment"] == "prod"


async def test_events_and_webhooks(cli: Cli, tmp_path: Path) -> None:
    model = f"cli-{uuid.uuid4().hex[:8]}"
    hook = await cli.json(
        "webhooks", "create", "http://127.0.0.1:9/hook", "--id", f"h-{model}",
        "--event-type", "registered_model.created",
    )  # fmt: skip
    assert hook["secret"].startswith("whsec_")
    name = hook["webhook"]["name"]
    code, out, _ = await cli("webhooks", "list")
    assert name in out
    code, _, err = await cli("webhooks", "create", "ftp://nowhere", "--id", "x")
    assert code == 3

    await cli.json("models", "create", model)
    code, out, err = await cli(
        "events", "tail", "--filter", f'subject = "models/{model}"', "--after", "0", "--count", "1"
    )
    assert code == 0, err
    event = json.loads(out.splitlines()[0])
    assert (event["type"], event["subject"]) == ("registered_model.created", f"models/{model}")

    code, out, _ = await cli("events", "export", "--filter", f'subject = "models/{model}"')
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["type"] for e in lines] == ["registered_model.created"]
    code, out, _ = await cli(
        "events", "export", "--filter", f'subject = "models/{model}"', "--after", event["sequence"]
    )
    assert out == ""
    code, _, err = await cli("events", "export", "--filter", "colour = red")
    assert code == 3
    assert "filter" in err

    code, out, _ = await cli("webhooks", "deliveries", name)
    assert code == 0
    assert out.splitlines()[0].startswith("EVENT_SEQUENCE")


def test_the_modelreg_command_runs_the_client_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from modelreg_common.local_postgres import free_port

    target = f"127.0.0.1:{free_port()}"
    assert modelreg(["models", "list", "--target", target, "--timeout", "0.5"]) == 14
    assert "UNAVAILABLE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        modelreg(["models", "list", "--limit", "many"])
    assert usage.value.code == 3
    assert modelreg(["version"]) == 0


async def test_usage_lists_who_downloaded_and_resolved_a_version(
    cli: Cli, server: RegistryServer, tmp_path: Path
) -> None:
    model = f"use-{uuid.uuid4().hex[:8]}"
    (tmp_path / "model.pkl").write_bytes(b"weights")
    await cli.json("versions", "register", model, str(tmp_path / "model.pkl"))
    code, _, err = await cli("alias", "set", model, "champion", "1", "--reason", "first")
    assert code == 0, err
    code, _, err = await cli(
        "versions", "download", f"models:/{model}@champion", str(tmp_path / "out")
    )
    assert code == 0, err
    # Counted in memory on the hot path; flushed to the events service every few seconds.
    await server.usage.flush()
    rows = await cli.json("usage", "list", model)
    kinds = {(r["model_version"], r["principal"], r["kind"]): int(r["count"]) for r in rows}
    version = f"models/{model}/versions/1"
    assert kinds[(version, "local", "USAGE_KIND_ALIAS_RESOLUTION")] >= 1
    assert kinds[(version, "local", "USAGE_KIND_DOWNLOAD")] >= 1
    code, out, _ = await cli("usage", "list", model, "--filter", "kind = DOWNLOAD")
    assert code == 0
    assert "DOWNLOAD" in out
    assert "ALIAS_RESOLUTION" not in out
