"""Webhooks limited to models belong to those models' owners; registry-wide ones to admins.
Readers see only the webhooks of models they may read."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from modelreg.client import AsyncRegistry
from modelreg.client.errors import PermissionDeniedError
from modelreg.metadata.v1 import access_pb2
from modelreg_common.auth import hash_token
from modelreg_common.server import ServiceSpec
from modelreg_common.settings import AuthSettings, TokenEntry
from testkit import make_settings

USERS = ("admin", "alice", "victor", "erin")


def token(user: str) -> str:
    return f"hook-token-{user}-0123456789"


@pytest.fixture
async def served(start_server: Any, all_specs: Sequence[ServiceSpec], monkeypatch: Any) -> Any:
    monkeypatch.setenv("MODELREG_EVENTS_ALLOW_PRIVATE_TARGETS", "true")
    settings = make_settings(
        auth=AuthSettings(
            mode="token",
            tokens=[TokenEntry(sha256=hash_token(token(u)), principal=u) for u in USERS],
            admins=["user:admin"],
        )
    )
    return await start_server(all_specs, settings=settings)


async def test_owners_manage_their_models_webhooks_and_only_admins_registry_wide_ones(
    served: Any,
) -> None:
    mine, theirs = f"mine-{uuid.uuid4().hex[:8]}", f"theirs-{uuid.uuid4().hex[:8]}"
    url = "http://127.0.0.1:9/hook"
    async with (
        AsyncRegistry(served.address, token=token("alice")) as alice,
        AsyncRegistry(served.address, token=token("erin")) as erin,
        AsyncRegistry(served.address, token=token("victor")) as victor,
        AsyncRegistry(served.address, token=token("admin")) as admin,
    ):
        # Alice may create models (and so owns the ones she creates); nobody else has a role.
        registry = (await admin.metadata.get_iam_policy(resource="registry")).policy
        registry.bindings.add(role=access_pb2.ROLE_EDITOR, members=["user:alice"])
        await admin.metadata.set_iam_policy(resource="registry", policy=registry)
        await alice.metadata.create_registered_model(registered_model_id=mine)
        await admin.metadata.create_registered_model(registered_model_id=theirs)
        policy = (await alice.metadata.get_iam_policy(resource=f"models/{mine}")).policy
        policy.bindings.add(role=access_pb2.ROLE_VIEWER, members=["user:victor"])
        policy.bindings.add(role=access_pb2.ROLE_EDITOR, members=["user:erin"])
        await alice.metadata.set_iam_policy(resource=f"models/{mine}", policy=policy)

        hook = (
            await alice.events.create_webhook(webhook={"url": url, "models": [f"models/{mine}"]})
        ).webhook
        # An editor of the model, a viewer, and an owner reaching past her model: refused.
        for caller in (erin, victor):
            with pytest.raises(PermissionDeniedError):
                await caller.events.create_webhook(
                    webhook={"url": url, "models": [f"models/{mine}"]}
                )
        with pytest.raises(PermissionDeniedError):
            await alice.events.create_webhook(
                webhook={"url": url, "models": [f"models/{mine}", f"models/{theirs}"]}
            )
        # Alice is an editor of the registry, but a hook on every model is for admins.
        with pytest.raises(PermissionDeniedError):
            await alice.events.create_webhook(webhook={"url": url})
        everywhere = (await admin.events.create_webhook(webhook={"url": url})).webhook

        # Reading: the viewer sees the model's hook; not the registry-wide one.
        assert (await victor.events.get_webhook(name=hook.name)).webhook.name == hook.name
        with pytest.raises(PermissionDeniedError):
            await victor.events.get_webhook(name=everywhere.name)
        listed = await victor.events.list_webhooks(page_size=1)
        assert [w.name for w in listed.webhooks] == [hook.name]
        assert not listed.next_page_token
        assert {w.name for w in (await admin.events.list_webhooks()).webhooks} >= {
            hook.name,
            everywhere.name,
        }

        # Managing: the viewer may not rotate, test or delete; the owner may.
        with pytest.raises(PermissionDeniedError):
            await victor.events.rotate_webhook_secret(name=hook.name)
        with pytest.raises(PermissionDeniedError):
            await erin.events.delete_webhook(name=hook.name)
        await alice.events.rotate_webhook_secret(name=hook.name)
        await alice.events.delete_webhook(name=hook.name)
        with pytest.raises(PermissionDeniedError):
            await alice.events.delete_webhook(name=everywhere.name)
