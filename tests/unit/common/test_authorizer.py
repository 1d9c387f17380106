"""The authorizer's answers: admins by configuration, the default role, the per-principal
cache and its invalidation."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from modelreg_common.access import Access, Role
from modelreg_common.authorizer import Authorizer, FollowedAccess
from modelreg_common.context import Principal
from modelreg_common.errors import PermissionDenied
from modelreg_common.settings import AuthSettings


class Grants:
    def __init__(self) -> None:
        self.asked: list[tuple[str, tuple[str, ...]]] = []

    async def resolve(self, subject: str, groups: tuple[str, ...]) -> Access:
        self.asked.append((subject, groups))
        return Access(model_roles=MappingProxyType({"fraud": Role.EDITOR}))


def authorizer(grants: Grants, **settings: object) -> Authorizer:
    return Authorizer(AuthSettings.model_validate({"mode": "token", **settings}), grants)


async def test_admins_by_configuration_are_never_looked_up() -> None:
    grants = Grants()
    auth = authorizer(grants, admins=["user:ops", "group:registry-admins"])
    for principal in (
        Principal(subject="ops"),
        Principal(subject="carol", groups=("ml", "registry-admins")),
        Principal(subject="anyone", method="local"),
    ):
        assert (await auth.access_for(principal)).registry_role is Role.ADMIN
    assert grants.asked == []
    # A subject named like an admin group is not a member of it.
    assert (await auth.access_for(Principal(subject="registry-admins"))).registry_role < Role.ADMIN


async def test_stored_grants_meet_the_default_role_and_are_cached_until_invalidated() -> None:
    grants = Grants()
    auth = authorizer(grants, default_role="viewer")
    alice = Principal(subject="alice", groups=("b", "a"))
    access = await auth.access_for(alice)
    assert access.registry_role is Role.VIEWER
    assert access.role_on("fraud") is Role.EDITOR
    assert access.role_on("churn") is Role.VIEWER
    await auth.access_for(Principal(subject="alice", groups=("a", "b")))
    assert grants.asked == [("alice", ("a", "b"))]
    auth.invalidate()
    await auth.access_for(alice)
    assert len(grants.asked) == 2


class Revocable:
    """Grants on a set of models that the test changes."""

    def __init__(self, *models: str) -> None:
        self.models = set(models)
        self.asked = 0

    async def resolve(self, subject: str, groups: tuple[str, ...]) -> Access:
        self.asked += 1
        return Access(model_roles=MappingProxyType(dict.fromkeys(self.models, Role.VIEWER)))


async def test_followed_access_follows_invalidations_and_the_cache_lifetime() -> None:
    now = [0.0]
    grants = Revocable("fraud", "churn")
    auth = Authorizer(
        AuthSettings(mode="token", access_cache_seconds=30), grants, clock=lambda: now[0]
    )
    alice = Principal(subject="alice")
    followed = FollowedAccess(auth, alice, await auth.access_for(alice), "events.subscribe")
    assert await followed.readable_models() == frozenset({"fraud", "churn"})
    assert grants.asked == 1  # nothing changed: no lookup per page
    grants.models = {"fraud"}
    auth.invalidate()
    assert await followed.readable_models() == frozenset({"fraud"})
    assert grants.asked == 2
    # A change whose news never arrived is picked up once the cache lifetime has passed.
    grants.models = {"fraud", "churn"}
    now[0] += 29
    assert await followed.readable_models() == frozenset({"fraud"})
    now[0] += 2
    assert await followed.readable_models() == frozenset({"fraud", "churn"})
    grants.models = set()
    auth.invalidate()
    with pytest.raises(PermissionDenied, match="no longer read"):
        await followed.readable_models()
