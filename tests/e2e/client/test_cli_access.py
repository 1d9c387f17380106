"""`modelreg keys` and `modelreg access` against every service in one in-process server: a
secret printed once, revocation, grants edited with their etag, and exit codes that are gRPC
status code numbers."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

from e2e.client.clikit import Cli
from modelreg.client.cli import Output, _edit_policy
from modelreg.client.errors import AbortedError
from modelreg.metadata.v1 import access_pb2 as ac
from modelreg_common.auth import hash_token
from modelreg_common.server import RegistryServer, ServiceSpec
from modelreg_common.settings import AuthSettings, TokenEntry
from testkit import make_settings

if TYPE_CHECKING:
    from conftest import StartServer

READER = "reader-token-" + "x" * 24


@pytest.fixture
async def server(
    start_server: StartServer, all_specs: list[ServiceSpec], tmp_path: Path
) -> RegistryServer:
    # Local mode: token-less calls are "local" (an admin); the reader's token is a second user.
    auth = AuthSettings(tokens=[TokenEntry(sha256=hash_token(READER), principal="reader")])
    return await start_server(all_specs, settings=make_settings(home=tmp_path / "home", auth=auth))


@pytest.fixture
def cli(server: RegistryServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(server.address, capsys)


async def test_keys_create_prints_the_secret_once_then_list_and_revoke(cli: Cli) -> None:
    code, out, err = await cli("keys", "create", "--name", "ci", "--group", "ml")
    assert code == 0, err
    secret = next(line.split()[1] for line in out.splitlines() if line.startswith("secret "))
    assert secret.startswith("mrk_")
    assert "shown once" in out
    name = next(line.split()[1] for line in out.splitlines() if line.startswith("name "))
    assert name.startswith("apiKeys/")

    listed = await cli.json("keys", "list")
    assert [k["name"] for k in listed] == [name]
    assert listed[0]["groups"] == ["ml"]
    assert listed[0]["secret_prefix"] == secret[:12]
    code, out, _ = await cli("keys", "list")
    assert out.splitlines()[0].split()[:3] == ["NAME", "DISPLAY_NAME", "PRINCIPAL"]
    assert secret not in out

    code, out, _ = await cli("keys", "revoke", name)
    assert code == 0
    assert f"revoked {name}" in out
    assert await cli.json("keys", "list") == []
    assert [k["name"] for k in await cli.json("keys", "list", "--all")] == [name]
    code, _, err = await cli("keys", "revoke", name.removeprefix("apiKeys/"))
    assert code == 9  # FAILED_PRECONDITION: already revoked
    assert "INVALID_STATE_TRANSITION" in err


async def test_keys_create_json_and_bad_input(cli: Cli) -> None:
    created = await cli.json(
        "keys", "create", "--principal", "svc-deployer", "--expires-in-days", "30"
    )
    assert created["secret"].startswith("mrk_")
    assert created["api_key"]["principal"] == "svc-deployer"
    assert "expire_time" in created["api_key"]
    code, _, err = await cli("keys", "create", "--expires-in-days", "0")
    assert code == 3
    assert "--expires-in-days" in err
    code, _, err = await cli("keys", "create", "--principal", "has space")
    assert code == 3
    assert "api_key.principal" in err
    code, _, _ = await cli("keys", "revoke", "apiKeys/" + "0" * 32)
    assert code == 5


async def test_policy_grant_and_revoke_edit_one_binding(cli: Cli) -> None:
    code, _, err = await cli("models", "create", "fraud")
    assert code == 0, err
    policy = await cli.json("access", "get", "fraud")
    assert policy["bindings"] == [{"role": "ROLE_OWNER", "members": ["user:local"]}]

    granted = await cli.json("access", "grant", "fraud", "viewer", "group:risk")
    assert granted["bindings"] == [
        {"role": "ROLE_VIEWER", "members": ["group:risk"]},
        {"role": "ROLE_OWNER", "members": ["user:local"]},
    ]
    assert granted["etag"] != policy["etag"]
    code, out, _ = await cli("access", "grant", "models/fraud", "viewer", "group:risk")
    assert code == 0
    assert "unchanged" in out
    code, out, _ = await cli("access", "get", "fraud")
    assert "VIEWER" in out
    assert "group:risk" in out

    revoked = await cli.json("access", "revoke", "fraud", "viewer", "group:risk")
    assert revoked["bindings"] == [{"role": "ROLE_OWNER", "members": ["user:local"]}]
    code, out, _ = await cli("access", "revoke", "fraud", "viewer", "group:risk")
    assert code == 0
    assert "unchanged" in out

    registry = await cli.json("access", "grant", "registry", "admin", "group:platform")
    assert registry["resource"] == "registry"
    code, _, err = await cli("access", "grant", "fraud", "admin", "user:x")
    assert code == 3  # admin only on the registry
    assert "policy.bindings" in err
    code, _, err = await cli("access", "grant", "fraud", "superuser", "user:x")
    assert code == 3
    assert "unknown role" in err
    code, _, err = await cli("access", "grant", "fraud", "viewer", "alice")
    assert code == 3
    assert "members" in err
    code, _, _ = await cli("access", "get", "nope")
    assert code == 5


async def test_a_grant_from_the_cli_lets_a_reader_see_one_model(cli: Cli) -> None:
    for model in ("seen", "hidden"):
        code, _, err = await cli("models", "create", model)
        assert code == 0, err
    code, _, _ = await cli("models", "list", "--token", READER)
    assert code == 7  # PERMISSION_DENIED: nothing is readable yet
    code, _, err = await cli("access", "grant", "seen", "viewer", "user:reader")
    assert code == 0, err
    models = await cli.json("models", "list", "--token", READER)
    assert [m["name"] for m in models] == ["models/seen"]
    code, _, _ = await cli("access", "grant", "seen", "viewer", "user:x", "--token", READER)
    assert code == 7  # only owners manage a model's grants


class _FlakyPolicies:
    """get/set_iam_policy where someone else writes between the first read and write."""

    def __init__(self, aborts: int) -> None:
        self.aborts = aborts
        self.sets: list[ac.IamPolicy] = []
        self.revision = 1

    def get_iam_policy(self, *, resource: str) -> Any:
        policy = ac.IamPolicy(resource=resource, etag=f'"{self.revision}"')
        return SimpleNamespace(policy=policy)

    def set_iam_policy(self, *, resource: str, policy: ac.IamPolicy) -> Any:
        self.sets.append(policy)
        if self.aborts:
            self.aborts -= 1
            self.revision += 1
            raise AbortedError("etag mismatch", reason="ETAG_MISMATCH")
        return SimpleNamespace(policy=policy)


def _grant(metadata: _FlakyPolicies) -> str:
    out = io.StringIO()
    args = argparse.Namespace(resource="registry", role="viewer", member="user:*")
    _edit_policy(SimpleNamespace(metadata=metadata), Output(True, out), args, grant=True)  # type: ignore[arg-type]
    return out.getvalue()


def test_policy_edit_redoes_the_read_once_after_a_concurrent_change() -> None:
    flaky = _FlakyPolicies(aborts=1)
    written = json.loads(_grant(flaky))
    assert [p.etag for p in flaky.sets] == ['"1"', '"2"']
    assert written["bindings"] == [{"role": "ROLE_VIEWER", "members": ["user:*"]}]
    with pytest.raises(AbortedError):
        _grant(_FlakyPolicies(aborts=2))
