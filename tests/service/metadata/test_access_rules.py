"""What a caller who is not an admin may do with keys, grants and lists: the metadata domain
over a real PostgreSQL, with the caller and its roles bound to the call context exactly as the
runtime's interceptor binds them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import asyncpg
import pytest

from modelreg_common.access import Access, Role
from modelreg_common.context import SYSTEM, CallInfo, Principal, bind_call, unbind_call
from modelreg_common.database import create_pool
from modelreg_common.errors import InvalidArgument, NotFound, PermissionDenied
from modelreg_common.migrations import migrate
from modelreg_common.page_tokens import PageTokens
from modelreg_metadata.app import SPEC
from modelreg_metadata.domain.access import AccessService
from modelreg_metadata.domain.model_versions import ModelVersionService
from modelreg_metadata.domain.models import (
    ApiKeyDraft,
    Binding,
    IdempotencyKey,
    ListQuery,
    Manifest,
    ModelVersionDraft,
)
from modelreg_metadata.domain.registered_models import RegisteredModelService
from modelreg_metadata.store.uow import PgUnitOfWork

ADMIN = Access(registry_role=Role.ADMIN)
NOBODY = Access()


def on_models(**roles: Role) -> Access:
    return Access(model_roles=MappingProxyType(dict(roles)))


@contextlib.contextmanager
def acting_as(
    subject: str, access: Access, *, groups: Sequence[str] = (), method: str = "token"
) -> Iterator[None]:
    token = bind_call(
        CallInfo(
            method="/test",
            request_id="test",
            principal=Principal(subject, tuple(groups), method),
            access=access,
        )
    )
    try:
        yield
    finally:
        unbind_call(token)


class NoBlockers:
    async def deletion_blockers(self, model: str) -> list[str]:
        return []


class NoArtifacts:
    async def seal_manifest(self, owner: str) -> Manifest:
        raise AssertionError("not used here")


@dataclass
class Domain:
    access: AccessService
    models: RegisteredModelService
    versions: ModelVersionService
    invalidations: list[str] = field(default_factory=list)


@pytest.fixture
async def domain(dsn: str) -> AsyncIterator[Domain]:
    pool = await create_pool(dsn, "metadata")
    try:
        uow = PgUnitOfWork(pool, PageTokens(b"k" * 32))
        calls: list[str] = []
        d = Domain(
            AccessService(uow, lambda: calls.append("invalidate")),
            RegisteredModelService(uow, NoBlockers(), lambda: calls.append("invalidate")),
            ModelVersionService(uow, NoArtifacts()),
            calls,
        )
        yield d
    finally:
        await pool.close()


async def names(page: Any) -> list[str]:
    return [item.resource_name for item in page.items]


# --- API keys of others ---------------------------------------------------------------------


async def test_a_caller_sees_and_revokes_only_its_own_keys(domain: Domain) -> None:
    with acting_as("alice", NOBODY):
        alices, _ = await domain.access.create_api_key(ApiKeyDraft("a1"), None)
    with acting_as("bob", NOBODY):
        bobs, _ = await domain.access.create_api_key(ApiKeyDraft("b1"), None)

    with acting_as("alice", NOBODY):
        assert (await domain.access.get_api_key(alices.resource_name)).id == alices.id
        # Someone else's key looks exactly like a missing one.
        with pytest.raises(NotFound):
            await domain.access.get_api_key(bobs.resource_name)
        with pytest.raises(NotFound):
            await domain.access.revoke_api_key(bobs.resource_name)
        page = await domain.access.list_api_keys("", False, ListQuery())
        assert await names(page) == [alices.resource_name]
        # Asking by name for one's own keys is fine; for another's is an admin's question.
        page = await domain.access.list_api_keys("alice", False, ListQuery())
        assert await names(page) == [alices.resource_name]
        with pytest.raises(PermissionDenied):
            await domain.access.list_api_keys("bob", False, ListQuery())
        await domain.access.revoke_api_key(alices.resource_name)
    assert domain.invalidations == ["invalidate"]

    with acting_as("root", ADMIN):
        page = await domain.access.list_api_keys("", True, ListQuery())
        assert await names(page) == [alices.resource_name, bobs.resource_name]
        assert (await domain.access.get_api_key(bobs.resource_name)).principal == "bob"
        await domain.access.revoke_api_key(bobs.resource_name)
    assert domain.invalidations == ["invalidate", "invalidate"]


async def test_only_an_admin_makes_keys_for_others_or_with_groups_it_lacks(
    domain: Domain,
) -> None:
    with acting_as("alice", NOBODY, groups=["ml"]):
        with pytest.raises(PermissionDenied):
            await domain.access.create_api_key(ApiKeyDraft(principal="svc-ci"), None)
        # A group the caller is not in would grant it that group's roles.
        with pytest.raises(PermissionDenied):
            await domain.access.create_api_key(ApiKeyDraft(groups=("admins",)), None)
        key, secret = await domain.access.create_api_key(
            ApiKeyDraft(principal="alice", groups=("ml",)), None
        )
        assert key.principal == "alice"
        assert key.groups == ("ml",)
        assert secret
    with acting_as("root", ADMIN):
        key, _ = await domain.access.create_api_key(
            ApiKeyDraft(principal="svc-ci", groups=("admins",)), None
        )
        assert key.created_by == "root"


async def test_a_key_cannot_mint_keys_unless_it_is_an_admins(domain: Domain) -> None:
    # A key creating keys would escape its own expiry and revocation.
    with acting_as("alice", NOBODY, method="api_key"), pytest.raises(PermissionDenied):
        await domain.access.create_api_key(ApiKeyDraft("rotated"), None)
    with acting_as("svc-admin", ADMIN, method="api_key"):
        key, _ = await domain.access.create_api_key(ApiKeyDraft("rotated"), None)
        assert key.principal == "svc-admin"


async def test_a_request_id_replays_only_for_the_caller_that_used_it(domain: Domain) -> None:

    key = IdempotencyKey("req-7", "/modelreg.metadata.v1.AccessService/CreateApiKey", b"h" * 32)
    with acting_as("alice", NOBODY):
        first, secret = await domain.access.create_api_key(ApiKeyDraft("ci"), key)
        again, none = await domain.access.create_api_key(ApiKeyDraft("ci"), key)
        assert again == first
        assert secret
        assert none is None
    with acting_as("bob", NOBODY), pytest.raises(InvalidArgument):
        await domain.access.create_api_key(ApiKeyDraft("ci"), key)


# --- asking about others --------------------------------------------------------------------


async def test_resolving_another_principal_needs_admin_or_internal(domain: Domain) -> None:
    with acting_as("root", ADMIN):
        await domain.models.create("m", "", {}, None)
        await domain.access.set_policy(
            "models/m", [Binding(Role.EDITOR, ("group:ml",)), Binding(Role.OWNER, ("user:root",))],
            "",
        )  # fmt: skip
    with acting_as("alice", NOBODY, groups=["ml"]):
        mine = await domain.access.resolve("", ())
        assert mine.model_roles == {"m": Role.EDITOR}
        # Herself, with a subset of her groups, is still herself.
        assert (await domain.access.resolve("alice", ())).model_roles == {}
        assert (await domain.access.resolve("alice", ["ml"])).model_roles == {"m": Role.EDITOR}
        with pytest.raises(PermissionDenied):
            await domain.access.resolve("root", ())
        # Claiming a group she is not in is asking about someone else.
        with pytest.raises(PermissionDenied):
            await domain.access.resolve("alice", ["admins"])
    token = bind_call(CallInfo(method="/test", request_id="t", principal=SYSTEM))
    try:
        assert (await domain.access.resolve("root", ())).model_roles == {"m": Role.OWNER}
    finally:
        unbind_call(token)


# --- ownership and invalidation -------------------------------------------------------------


async def test_grants_follow_the_model_and_every_change_invalidates(domain: Domain) -> None:
    with acting_as("alice", NOBODY):
        await domain.models.create("m", "", {}, None)
    assert domain.invalidations == ["invalidate"]
    with acting_as("alice", on_models(m=Role.OWNER)):
        policy = await domain.access.get_policy("models/m")
        assert policy.bindings == (Binding(Role.OWNER, ("user:alice",)),)
        await domain.access.set_policy(
            "models/m", [*policy.bindings, Binding(Role.VIEWER, ("user:bob",))], '"1"'
        )
        await domain.models.rename("models/m", "m2", "")
        assert (await domain.access.get_policy("models/m2")).revision == 2
        await domain.models.delete("models/m2", "", False)
    assert len(domain.invalidations) == 4
    # The services' own principal creates without becoming an owner.
    token = bind_call(CallInfo(method="/test", request_id="t", principal=SYSTEM))
    try:
        await domain.models.create("made-by-system", "", {}, None)
        assert (await domain.access.get_policy("models/made-by-system")).bindings == ()
    finally:
        unbind_call(token)


# --- lists show only readable models --------------------------------------------------------


async def test_lists_and_searches_show_only_readable_models(domain: Domain) -> None:

    with acting_as("root", ADMIN):
        for model in ("a", "b", "c", "d"):
            await domain.models.create(model, "", {"team": "risk"}, None)
            for _ in range(2):
                await domain.versions.create(f"models/{model}", ModelVersionDraft(), None)

    reader = on_models(a=Role.VIEWER, c=Role.EDITOR)
    with acting_as("alice", reader):
        models = await domain.models.search(ListQuery())
        assert await names(models) == ["models/a", "models/c"]
        # Page sizes and tokens count only readable rows.
        first = await domain.models.search(ListQuery(page_size=1))
        assert await names(first) == ["models/a"]
        assert first.next_page_token
        second = await domain.models.search(
            ListQuery(page_size=1, page_token=first.next_page_token)
        )
        assert await names(second) == ["models/c"]
        assert second.next_page_token == ""
        filtered = await domain.models.search(ListQuery(filter='tags.team = "risk"'))
        assert await names(filtered) == ["models/a", "models/c"]
        versions = await domain.versions.search(ListQuery(page_size=3))
        assert await names(versions) == [
            "models/a/versions/1",
            "models/a/versions/2",
            "models/c/versions/1",
        ]
        rest = await domain.versions.search(
            ListQuery(page_size=3, page_token=versions.next_page_token)
        )
        assert await names(rest) == ["models/c/versions/2"]
        assert rest.next_page_token == ""

    with acting_as("nobody", NOBODY):
        empty = await domain.models.search(ListQuery())
        assert empty.items == ()
        assert empty.next_page_token == ""
        assert (await domain.versions.search(ListQuery())).items == ()

    with acting_as("viewer", Access(registry_role=Role.VIEWER)):
        assert len((await domain.models.search(ListQuery())).items) == 4


async def test_models_registered_before_grants_get_their_creators_as_owners(
    empty_dsn: str,
) -> None:

    migrations = SPEC.migrations()
    before = [m for m in migrations if m.name != "owners_of_existing_models"]
    conn = await asyncpg.connect(empty_dsn)
    try:
        await migrate(conn, "metadata", before)
        await conn.execute(
            "INSERT INTO metadata.registered_models (name, created_by) VALUES"
            " ('old', 'alice'), ('made-by-system', 'system:modelreg'), ('has-policy', 'bob')"
        )
        await conn.execute(
            "INSERT INTO metadata.iam_policies (resource, updated_by)"
            " VALUES ('models/has-policy', 'root');"
            "INSERT INTO metadata.iam_bindings (resource, role, member)"
            " VALUES ('models/has-policy', 1, 'group:ml')"
        )
        assert await migrate(conn, "metadata", migrations) == [
            "metadata/0003_owners_of_existing_models"
        ]
        rows = await conn.fetch(
            "SELECT resource, role, member FROM metadata.iam_bindings ORDER BY resource"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        ("models/has-policy", 1, "group:ml"),
        ("models/old", 4, "user:alice"),
    ]
