"""AccessService over a real server and PostgreSQL: API keys, IAM policies, ResolveAccess, and
the grants that follow a model through create, rename and delete.

These run in local auth mode, where the caller ("local") is an admin; what a non-admin may or
may not do is in test_access_rules.py (the domain over the same database, with the caller's
roles bound) and, over the wire, in test_access_token_mode.py.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

from modelreg.metadata.v1 import access_pb2 as ac
from modelreg.metadata.v1 import access_service_pb2 as acs
from modelreg.metadata.v1 import access_service_pb2_grpc as acs_grpc
from modelreg.metadata.v1 import model_version_pb2 as mv
from modelreg.metadata.v1 import model_version_service_pb2 as mvs
from modelreg.metadata.v1 import registered_model_pb2 as rm
from modelreg.metadata.v1 import registered_model_service_pb2 as rms
from service.metadata.kit import Stubs, expect_error

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@dataclass
class Env:
    md: Stubs
    access: acs_grpc.AccessServiceAsyncStub

    async def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.md.server.dsn)
        try:
            await conn.execute("SET search_path TO metadata")
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def outbox(self, prefix: str = "") -> list[tuple[str, str, dict[str, Any]]]:
        rows = await self.sql(
            "SELECT type, subject, data FROM outbox WHERE starts_with(type, $1) ORDER BY seq",
            prefix,
        )
        return [(r["type"], r["subject"], json.loads(r["data"])) for r in rows]

    async def create_model(self, model_id: str) -> rm.RegisteredModel:
        reply = await self.md.models.CreateRegisteredModel(
            rms.CreateRegisteredModelRequest(
                registered_model_id=model_id, registered_model=rm.RegisteredModel()
            )
        )
        return reply.registered_model

    async def create_key(self, **fields: Any) -> acs.CreateApiKeyResponse:
        request_id = fields.pop("request_id", "")
        return await self.access.CreateApiKey(
            acs.CreateApiKeyRequest(api_key=ac.ApiKey(**fields), request_id=request_id)
        )

    async def policy(self, resource: str) -> ac.IamPolicy:
        return (await self.access.GetIamPolicy(acs.GetIamPolicyRequest(resource=resource))).policy

    async def set_policy(
        self, resource: str, bindings: list[ac.Binding], etag: str = ""
    ) -> ac.IamPolicy:
        reply = await self.access.SetIamPolicy(
            acs.SetIamPolicyRequest(
                resource=resource, policy=ac.IamPolicy(bindings=bindings, etag=etag)
            )
        )
        return reply.policy


@pytest.fixture
async def env(md: Stubs) -> Env:
    return Env(md, acs_grpc.AccessServiceStub(md.channel))


def stamp(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def binding(role: int, *members: str) -> ac.Binding:
    return ac.Binding(role=role, members=list(members))  # type: ignore[arg-type]


# --- API keys -------------------------------------------------------------------------------


async def test_create_api_key_shows_the_secret_once_and_stores_only_its_hash(env: Env) -> None:
    created = await env.create_key(display_name="ci", groups=["ml"])
    secret = created.secret
    assert secret.startswith("mrk_")
    assert len(secret) == 4 + 43
    key = created.api_key
    assert key.name.startswith("apiKeys/")
    assert key.principal == "local"  # the caller, by default
    assert key.created_by == "local"
    assert list(key.groups) == ["ml"]
    assert key.secret_prefix == secret[:12]
    assert key.HasField("create_time")
    assert not key.HasField("revoke_time")
    assert not key.HasField("expire_time")

    rows = await env.sql("SELECT * FROM api_keys")
    assert len(rows) == 1
    assert bytes(rows[0]["secret_sha256"]) == hashlib.sha256(secret.encode()).digest()
    # The secret itself is in no column.
    assert all(secret not in str(value) for value in rows[0].values())

    got = await env.access.GetApiKey(acs.GetApiKeyRequest(name=key.name))
    assert got.api_key == key
    listed = await env.access.ListApiKeys(acs.ListApiKeysRequest())
    assert list(listed.api_keys) == [key]
    assert secret.encode() not in listed.SerializeToString()
    assert secret.encode() not in got.SerializeToString()


async def test_api_key_events_carry_neither_secret_nor_hash(env: Env) -> None:
    created = await env.create_key(display_name="ci")
    await env.access.RevokeApiKey(acs.RevokeApiKeyRequest(name=created.api_key.name))
    events = await env.outbox("api_key.")
    assert [(t, s) for t, s, _ in events] == [
        ("api_key.created", created.api_key.name),
        ("api_key.revoked", created.api_key.name),
    ]
    secret = created.secret
    text = json.dumps([d for _, _, d in events])
    for leak in (secret, hashlib.sha256(secret.encode()).hexdigest(), secret[:12]):
        assert leak not in text
    assert events[0][2]["principal"] == "local"


async def test_admin_creates_a_key_for_another_principal(env: Env) -> None:
    expires = datetime.now(UTC) + timedelta(days=7)
    created = await env.create_key(
        principal="svc-deployer", groups=["deployers", "deployers"], expire_time=stamp(expires)
    )
    key = created.api_key
    assert key.principal == "svc-deployer"
    assert key.created_by == "local"
    assert list(key.groups) == ["deployers"]
    assert abs(key.expire_time.ToDatetime(tzinfo=UTC) - expires) < timedelta(seconds=1)
    verified = await env.access.VerifyApiKey(acs.VerifyApiKeyRequest(secret=created.secret))
    assert verified.api_key.principal == "svc-deployer"
    assert list(verified.api_key.groups) == ["deployers"]


async def test_create_api_key_with_request_id_is_idempotent(env: Env) -> None:
    first = await env.create_key(display_name="ci", request_id="req-1")
    again = await env.create_key(display_name="ci", request_id="req-1")
    assert again.api_key == first.api_key
    # Shown once: the replay does not show the secret again.
    assert again.secret == ""
    assert len(await env.sql("SELECT 1 FROM api_keys")) == 1
    assert len(await env.outbox("api_key.created")) == 1
    rows = await env.sql("SELECT request_id FROM api_keys")
    assert rows[0]["request_id"] == "req-1"
    await expect_error(
        env.create_key(display_name="other", request_id="req-1"),
        INVALID,
        "INVALID_FIELD",
        "request_id",
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"expire_time": stamp(datetime(2020, 1, 1, tzinfo=UTC))}, "api_key.expire_time"),
        ({"display_name": "bad\nname"}, "api_key.display_name"),
        ({"display_name": "x" * 201}, "api_key.display_name"),
        ({"principal": "has space"}, "api_key.principal"),
        ({"principal": "*"}, "api_key.principal"),
        ({"groups": ["ok", ""]}, "api_key.groups[1]"),
        ({"groups": [f"g{i}" for i in range(101)]}, "api_key.groups"),
        ({"request_id": "not valid!"}, "request_id"),
    ],
)
async def test_create_api_key_rejects_bad_fields(
    env: Env, fields: dict[str, Any], field: str
) -> None:
    await expect_error(env.create_key(**fields), INVALID, "INVALID_FIELD", field)
    assert await env.sql("SELECT 1 FROM api_keys") == []


async def test_verify_api_key_refuses_unknown_revoked_and_expired_alike(env: Env) -> None:
    live = await env.create_key(display_name="live")
    revoked = await env.create_key(display_name="revoked")
    expired = await env.create_key(
        display_name="expired", expire_time=stamp(datetime.now(UTC) + timedelta(hours=1))
    )
    await env.access.RevokeApiKey(acs.RevokeApiKeyRequest(name=revoked.api_key.name))
    await env.sql(
        "UPDATE api_keys SET expire_time = now() - interval '1 second' WHERE id = $1",
        expired.api_key.name.removeprefix("apiKeys/"),
    )
    ok = await env.access.VerifyApiKey(acs.VerifyApiKeyRequest(secret=live.secret))
    assert ok.api_key.name == live.api_key.name
    messages = set()
    for secret in (revoked.secret, expired.secret, "mrk_" + "A" * 43, live.secret + "x"):
        with pytest.raises(aio.AioRpcError) as info:
            await env.access.VerifyApiKey(acs.VerifyApiKeyRequest(secret=secret))
        assert info.value.code() == NOT_FOUND
        messages.add(info.value.details())
    # One answer for every reason: no hint which keys exist.
    assert len(messages) == 1
    await expect_error(
        env.access.VerifyApiKey(acs.VerifyApiKeyRequest(secret="")),
        INVALID,
        "INVALID_FIELD",
        "secret",
    )
    await expect_error(
        env.access.VerifyApiKey(acs.VerifyApiKeyRequest(secret="mrk_" + "a" * 600)),
        INVALID,
        "INVALID_FIELD",
        "secret",
    )


async def test_revoke_api_key_once_then_failed_precondition(env: Env) -> None:
    created = await env.create_key(display_name="ci")
    name = created.api_key.name
    revoked = await env.access.RevokeApiKey(acs.RevokeApiKeyRequest(name=name))
    assert revoked.api_key.HasField("revoke_time")
    await expect_error(
        env.access.RevokeApiKey(acs.RevokeApiKeyRequest(name=name)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "INVALID_STATE_TRANSITION",
    )
    # Revoked keys are listed only on request.
    assert list((await env.access.ListApiKeys(acs.ListApiKeysRequest())).api_keys) == []
    shown = await env.access.ListApiKeys(acs.ListApiKeysRequest(show_revoked=True))
    assert [k.name for k in shown.api_keys] == [name]
    assert len(await env.outbox("api_key.revoked")) == 1


async def test_api_key_names_are_checked(env: Env) -> None:
    for bad in ("apiKeys/", "keys/abc", "apiKeys/../x", "apiKeys/ABC"):
        await expect_error(
            env.access.GetApiKey(acs.GetApiKeyRequest(name=bad)), INVALID, "INVALID_FIELD", "name"
        )
        await expect_error(
            env.access.RevokeApiKey(acs.RevokeApiKeyRequest(name=bad)),
            INVALID,
            "INVALID_FIELD",
            "name",
        )
    missing = "apiKeys/" + "0" * 32
    await expect_error(
        env.access.GetApiKey(acs.GetApiKeyRequest(name=missing)), NOT_FOUND, "RESOURCE_NOT_FOUND"
    )
    await expect_error(
        env.access.RevokeApiKey(acs.RevokeApiKeyRequest(name=missing)),
        NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )


async def test_list_api_keys_pages_and_filters_by_principal(env: Env) -> None:
    mine = [(await env.create_key(display_name=f"k{i}")).api_key.name for i in range(3)]
    other = (await env.create_key(principal="svc-ci")).api_key.name
    seen: list[str] = []
    token = ""
    while True:
        page = await env.access.ListApiKeys(acs.ListApiKeysRequest(page_size=2, page_token=token))
        assert len(page.api_keys) <= 2
        seen.extend(k.name for k in page.api_keys)
        token = page.next_page_token
        if not token:
            break
    # An admin without a principal filter sees every key, oldest first.
    assert seen == [*mine, other]
    only = await env.access.ListApiKeys(acs.ListApiKeysRequest(principal="svc-ci"))
    assert [k.name for k in only.api_keys] == [other]
    first = await env.access.ListApiKeys(acs.ListApiKeysRequest(page_size=1))
    await expect_error(
        env.access.ListApiKeys(
            acs.ListApiKeysRequest(principal="svc-ci", page_token=first.next_page_token)
        ),
        INVALID,
        "INVALID_FIELD",
        "page_token",
    )
    await expect_error(
        env.access.ListApiKeys(acs.ListApiKeysRequest(page_size=-1)),
        INVALID,
        "INVALID_FIELD",
        "page_size",
    )
    await expect_error(
        env.access.ListApiKeys(acs.ListApiKeysRequest(principal="a b")),
        INVALID,
        "INVALID_FIELD",
        "principal",
    )


# --- IAM policies ---------------------------------------------------------------------------


async def test_registry_policy_starts_empty_at_etag_zero(env: Env) -> None:
    policy = await env.policy("registry")
    assert policy.resource == "registry"
    assert list(policy.bindings) == []
    assert policy.etag == '"0"'
    assert not policy.HasField("update_time")


async def test_set_policy_normalises_bindings_and_moves_the_etag(env: Env) -> None:
    saved = await env.set_policy(
        "registry",
        [
            binding(ac.ROLE_VIEWER, "user:*", "group:ml"),
            binding(ac.ROLE_ADMIN, "user:root"),
            binding(ac.ROLE_VIEWER, "group:ml", "user:ann"),
            binding(ac.ROLE_EDITOR),
        ],
        etag='"0"',
    )
    # One binding per role, weakest first; members sorted and unique; empty ones dropped.
    assert [(b.role, list(b.members)) for b in saved.bindings] == [
        (ac.ROLE_VIEWER, ["group:ml", "user:*", "user:ann"]),
        (ac.ROLE_ADMIN, ["user:root"]),
    ]
    assert saved.etag == '"1"'
    assert saved.updated_by == "local"
    assert saved.HasField("update_time")
    assert await env.policy("registry") == saved
    events = await env.outbox("iam_policy.")
    assert events == [
        (
            "iam_policy.updated",
            "registry",
            {
                "bindings": [
                    {"role": "viewer", "members": ["group:ml", "user:*", "user:ann"]},
                    {"role": "admin", "members": ["user:root"]},
                ]
            },
        )
    ]
    # No etag: unconditional.
    cleared = await env.set_policy("registry", [])
    assert list(cleared.bindings) == []
    assert cleared.etag == '"2"'


async def test_set_policy_with_stale_etag_is_aborted(env: Env) -> None:
    await env.set_policy("registry", [binding(ac.ROLE_VIEWER, "user:*")], etag='"0"')
    await expect_error(
        env.set_policy("registry", [binding(ac.ROLE_EDITOR, "user:*")], etag='"0"'),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    assert [b.role for b in (await env.policy("registry")).bindings] == [ac.ROLE_VIEWER]


async def test_policy_of_an_unknown_model_is_not_found(env: Env) -> None:
    await expect_error(env.policy("models/nope"), NOT_FOUND, "RESOURCE_NOT_FOUND")
    await expect_error(
        env.set_policy("models/nope", [binding(ac.ROLE_VIEWER, "user:*")]),
        NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )
    assert await env.sql("SELECT 1 FROM iam_policies WHERE resource = 'models/nope'") == []


@pytest.mark.parametrize(
    ("resource", "bindings", "field"),
    [
        ("registry", [binding(ac.ROLE_VIEWER, "user:a", "alice")], "policy.bindings[0].members[1]"),
        ("registry", [binding(ac.ROLE_VIEWER, "group:*")], "policy.bindings[0].members[0]"),
        ("registry", [binding(ac.ROLE_VIEWER, "user:")], "policy.bindings[0].members[0]"),
        ("registry", [binding(ac.ROLE_VIEWER, "user:a b")], "policy.bindings[0].members[0]"),
        ("registry", [binding(ac.ROLE_VIEWER, "team:x")], "policy.bindings[0].members[0]"),
        (
            "registry",
            [binding(ac.ROLE_VIEWER, "user:a"), binding(ac.ROLE_UNSPECIFIED, "user:b")],
            "policy.bindings[1].role",
        ),
        ("registry", [binding(9, "user:a")], "policy.bindings[0].role"),
        ("models/fraud", [binding(ac.ROLE_ADMIN, "user:a")], "policy.bindings[0].role"),
        ("registry", [binding(ac.ROLE_VIEWER, "user:a")] * 101, "policy.bindings"),
        (
            "registry",
            [binding(ac.ROLE_VIEWER, *(f"user:u{i}" for i in range(1001)))],
            "policy.bindings",
        ),
        ("models", [], "resource"),
        ("models/a b", [], "resource"),
        ("projects/x", [], "resource"),
        ("", [], "resource"),
    ],
)
async def test_set_policy_rejects_bad_input_naming_the_field(
    env: Env, resource: str, bindings: list[ac.Binding], field: str
) -> None:
    await env.create_model("fraud")
    before = await env.policy("models/fraud")
    await expect_error(env.set_policy(resource, bindings), INVALID, "INVALID_FIELD", field)
    assert await env.policy("models/fraud") == before
    assert (await env.policy("registry")).etag == '"0"'


async def test_creator_owns_a_new_model(env: Env) -> None:
    await env.create_model("fraud")
    policy = await env.policy("models/fraud")
    assert [(b.role, list(b.members)) for b in policy.bindings] == [(ac.ROLE_OWNER, ["user:local"])]
    assert policy.etag == '"1"'
    # One change, one event: the grant is recorded with the creation.
    events = await env.outbox()
    assert [(t, s) for t, s, _ in events] == [("registered_model.created", "models/fraud")]
    assert events[0][2]["owner"] == "user:local"


async def test_rename_moves_the_policy_and_delete_removes_it(env: Env) -> None:
    await env.create_model("fraud")
    current = await env.policy("models/fraud")
    await env.set_policy(
        "models/fraud",
        [*current.bindings, binding(ac.ROLE_VIEWER, "group:risk")],
        etag=current.etag,
    )
    await env.md.models.RenameRegisteredModel(
        rms.RenameRegisteredModelRequest(name="models/fraud", new_registered_model_id="fraud2")
    )
    moved = await env.policy("models/fraud2")
    assert moved.resource == "models/fraud2"
    assert [(b.role, list(b.members)) for b in moved.bindings] == [
        (ac.ROLE_VIEWER, ["group:risk"]),
        (ac.ROLE_OWNER, ["user:local"]),
    ]
    await expect_error(env.policy("models/fraud"), NOT_FOUND, "RESOURCE_NOT_FOUND")
    # A new model under the old name starts from its creator's grant only.
    await env.create_model("fraud")
    fresh = await env.policy("models/fraud")
    assert [list(b.members) for b in fresh.bindings] == [["user:local"]]

    await env.md.models.DeleteRegisteredModel(
        rms.DeleteRegisteredModelRequest(name="models/fraud2", force=True)
    )
    rows = await env.sql("SELECT resource FROM iam_bindings WHERE resource = 'models/fraud2'")
    assert rows == []
    await env.create_model("fraud2")
    again = await env.policy("models/fraud2")
    assert [(b.role, list(b.members)) for b in again.bindings] == [(ac.ROLE_OWNER, ["user:local"])]


# --- ResolveAccess --------------------------------------------------------------------------


async def test_resolve_access_combines_user_group_and_everyone_grants(env: Env) -> None:
    for model in ("a", "b", "c", "d"):
        await env.create_model(model)
    await env.set_policy("registry", [binding(ac.ROLE_VIEWER, "user:*")])
    await env.set_policy("models/a", [binding(ac.ROLE_EDITOR, "group:ml")])
    # Not above the registry role: left out of model_roles.
    await env.set_policy("models/b", [binding(ac.ROLE_VIEWER, "user:bob")])
    await env.set_policy(
        "models/c", [binding(ac.ROLE_VIEWER, "user:bob"), binding(ac.ROLE_OWNER, "user:bob")]
    )
    await env.set_policy("models/d", [binding(ac.ROLE_APPROVER, "user:*")])

    bob = await env.access.ResolveAccess(acs.ResolveAccessRequest(subject="bob", groups=["ml"]))
    assert bob.registry_role == ac.ROLE_VIEWER
    assert [(m.model, m.role) for m in bob.model_roles] == [
        ("models/a", ac.ROLE_EDITOR),
        ("models/c", ac.ROLE_OWNER),
        ("models/d", ac.ROLE_APPROVER),
    ]
    assert bob.HasField("resolve_time")

    carol = await env.access.ResolveAccess(acs.ResolveAccessRequest(subject="carol"))
    assert carol.registry_role == ac.ROLE_VIEWER
    assert [(m.model, m.role) for m in carol.model_roles] == [("models/d", ac.ROLE_APPROVER)]

    await env.set_policy("registry", [binding(ac.ROLE_ADMIN, "group:ml")])
    admin = await env.access.ResolveAccess(acs.ResolveAccessRequest(subject="x", groups=["ml"]))
    assert admin.registry_role == ac.ROLE_ADMIN
    assert list(admin.model_roles) == []


async def test_resolve_access_without_subject_is_the_caller(env: Env) -> None:
    await env.create_model("mine")
    me = await env.access.ResolveAccess(acs.ResolveAccessRequest())
    assert me.registry_role == ac.ROLE_UNSPECIFIED
    assert [(m.model, m.role) for m in me.model_roles] == [("models/mine", ac.ROLE_OWNER)]


@pytest.mark.parametrize(
    ("subject", "groups", "field"),
    [
        ("a b", [], "subject"),
        ("*", [], "subject"),
        ("x" * 257, [], "subject"),
        ("bob", ["ok", "bad group"], "groups[1]"),
        ("bob", [f"g{i}" for i in range(101)], "groups"),
    ],
)
async def test_resolve_access_rejects_bad_input(
    env: Env, subject: str, groups: list[str], field: str
) -> None:
    await expect_error(
        env.access.ResolveAccess(acs.ResolveAccessRequest(subject=subject, groups=groups)),
        INVALID,
        "INVALID_FIELD",
        field,
    )


# --- lists and the caller's readable models -------------------------------------------------


async def test_lists_are_complete_for_a_caller_who_reads_everything(env: Env) -> None:
    # Local mode: the caller is an admin, so narrowing by readable models changes nothing.
    for model in ("a", "b"):
        await env.create_model(model)
        await env.md.versions.CreateModelVersion(
            mvs.CreateModelVersionRequest(parent=f"models/{model}", model_version=mv.ModelVersion())
        )
    models = await env.md.models.ListRegisteredModels(rms.ListRegisteredModelsRequest())
    assert [m.name for m in models.registered_models] == ["models/a", "models/b"]
    versions = await env.md.versions.SearchModelVersions(mvs.SearchModelVersionsRequest())
    assert [v.name for v in versions.model_versions] == [
        "models/a/versions/1",
        "models/b/versions/1",
    ]


async def test_rename_onto_a_name_with_a_leftover_policy_replaces_it(env: Env) -> None:
    await env.create_model("fraud")
    # A policy row no model owns (say, restored from a backup): never inherited, never in the way.
    await env.sql("INSERT INTO iam_policies (resource, updated_by) VALUES ('models/new', 'x')")
    await env.sql(
        "INSERT INTO iam_bindings (resource, role, member) VALUES ('models/new', 4, 'user:eve')"
    )
    await env.md.models.RenameRegisteredModel(
        rms.RenameRegisteredModelRequest(name="models/fraud", new_registered_model_id="new")
    )
    moved = await env.policy("models/new")
    assert [list(b.members) for b in moved.bindings] == [["user:local"]]
