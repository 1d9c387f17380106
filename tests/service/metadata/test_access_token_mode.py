"""Over the wire in token mode, through the runtime's authorizer (roles resolved by
ResolveAccess and bound to each call): a caller with a grant on one model sees only that model
in lists and searches, and only its own API keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc import aio

from modelreg.metadata.v1 import access_pb2 as ac
from modelreg.metadata.v1 import access_service_pb2 as acs
from modelreg.metadata.v1 import access_service_pb2_grpc as acs_grpc
from modelreg.metadata.v1 import model_version_pb2 as mv
from modelreg.metadata.v1 import model_version_service_pb2 as mvs
from modelreg.metadata.v1 import model_version_service_pb2_grpc as mvs_grpc
from modelreg.metadata.v1 import registered_model_pb2 as rm
from modelreg.metadata.v1 import registered_model_service_pb2 as rms
from modelreg.metadata.v1 import registered_model_service_pb2_grpc as rms_grpc
from modelreg_common.auth import hash_token
from modelreg_common.settings import AuthSettings, TokenEntry
from modelreg_metadata.app import SPEC
from service.metadata.kit import expect_error
from testkit import make_settings

ROOT_TOKEN = "root-token-" + "r" * 20
ALICE_TOKEN = "alice-token-" + "a" * 20


@dataclass
class As:
    models: rms_grpc.RegisteredModelServiceAsyncStub
    versions: mvs_grpc.ModelVersionServiceAsyncStub
    access: acs_grpc.AccessServiceAsyncStub


def stubs(channel: aio.Channel) -> As:
    return As(
        rms_grpc.RegisteredModelServiceStub(channel),
        mvs_grpc.ModelVersionServiceStub(channel),
        acs_grpc.AccessServiceStub(channel),
    )


@dataclass
class Callers:
    root: As
    alice: As


class _Bearer(aio.UnaryUnaryClientInterceptor):
    """Adds one caller's bearer token to every call of its channel."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_unary(
        self, continuation: Any, details: aio.ClientCallDetails, request: Any
    ) -> Any:
        metadata = aio.Metadata(*(details.metadata or ()))
        metadata.add("authorization", f"Bearer {self._token}")
        return await continuation(
            aio.ClientCallDetails(
                details.method, details.timeout, metadata, details.credentials,
                details.wait_for_ready,
            ),
            request,
        )  # fmt: skip


@pytest.fixture
async def callers(start_server: Any) -> AsyncIterator[Callers]:
    auth = AuthSettings(
        mode="token",
        tokens=[
            TokenEntry(sha256=hash_token(ROOT_TOKEN), principal="root"),
            TokenEntry(sha256=hash_token(ALICE_TOKEN), principal="alice", groups=["ml"]),
        ],
        admins=["user:root"],
    )
    server = await start_server([SPEC], settings=make_settings(auth=auth, relay_enabled=False))
    async with (
        aio.insecure_channel(server.address, interceptors=[_Bearer(ROOT_TOKEN)]) as root,
        aio.insecure_channel(server.address, interceptors=[_Bearer(ALICE_TOKEN)]) as alice,
    ):
        yield Callers(stubs(root), stubs(alice))


async def test_a_model_grant_shows_only_that_model_in_lists(callers: Callers) -> None:
    root, alice = callers.root, callers.alice
    for model in ("a", "b", "c"):
        await root.models.CreateRegisteredModel(
            rms.CreateRegisteredModelRequest(
                registered_model_id=model, registered_model=rm.RegisteredModel()
            )
        )
        await root.versions.CreateModelVersion(
            mvs.CreateModelVersionRequest(parent=f"models/{model}", model_version=mv.ModelVersion())
        )
    # Before any grant alice reads nothing: lists are refused, not silently empty.
    await expect_error(
        alice.models.ListRegisteredModels(rms.ListRegisteredModelsRequest()),
        grpc.StatusCode.PERMISSION_DENIED,
        "MISSING_ROLE",
    )
    await root.access.SetIamPolicy(
        acs.SetIamPolicyRequest(
            resource="models/b",
            policy=ac.IamPolicy(bindings=[ac.Binding(role=ac.ROLE_VIEWER, members=["group:ml"])]),
        )
    )
    listed = await alice.models.ListRegisteredModels(rms.ListRegisteredModelsRequest(page_size=1))
    assert [m.name for m in listed.registered_models] == ["models/b"]
    assert listed.next_page_token == ""
    searched = await alice.models.SearchRegisteredModels(rms.SearchRegisteredModelsRequest())
    assert [m.name for m in searched.registered_models] == ["models/b"]
    versions = await alice.versions.SearchModelVersions(mvs.SearchModelVersionsRequest())
    assert [v.name for v in versions.model_versions] == ["models/b/versions/1"]
    everything = await root.models.ListRegisteredModels(rms.ListRegisteredModelsRequest())
    assert len(everything.registered_models) == 3


async def test_keys_and_roles_of_others_are_out_of_reach(callers: Callers) -> None:
    root, alice = callers.root, callers.alice
    roots = await root.access.CreateApiKey(acs.CreateApiKeyRequest(api_key=ac.ApiKey()))
    alices = await alice.access.CreateApiKey(
        acs.CreateApiKeyRequest(api_key=ac.ApiKey(groups=["ml"]))
    )
    assert alices.api_key.principal == "alice"
    listed = await alice.access.ListApiKeys(acs.ListApiKeysRequest())
    assert [k.name for k in listed.api_keys] == [alices.api_key.name]
    await expect_error(
        alice.access.GetApiKey(acs.GetApiKeyRequest(name=roots.api_key.name)),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )
    await expect_error(
        alice.access.RevokeApiKey(acs.RevokeApiKeyRequest(name=roots.api_key.name)),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )
    await expect_error(
        alice.access.CreateApiKey(acs.CreateApiKeyRequest(api_key=ac.ApiKey(principal="root"))),
        grpc.StatusCode.PERMISSION_DENIED,
        "MISSING_ROLE",
    )
    await expect_error(
        alice.access.ResolveAccess(acs.ResolveAccessRequest(subject="root")),
        grpc.StatusCode.PERMISSION_DENIED,
        "MISSING_ROLE",
    )
    mine = await alice.access.ResolveAccess(acs.ResolveAccessRequest())
    assert mine.registry_role == ac.ROLE_UNSPECIFIED
    every = await root.access.ListApiKeys(acs.ListApiKeysRequest())
    assert {k.name for k in every.api_keys} == {roots.api_key.name, alices.api_key.name}


async def test_an_api_key_authenticates_until_revoked(start_server: Any) -> None:
    auth = AuthSettings(
        mode="token",
        tokens=[TokenEntry(sha256=hash_token(ALICE_TOKEN), principal="alice", groups=["ml"])],
        admins=["user:root"],
        # Everyone may create models; the creator then owns hers.
        default_role="editor",
    )
    server = await start_server([SPEC], settings=make_settings(auth=auth, relay_enabled=False))
    async with aio.insecure_channel(server.address, interceptors=[_Bearer(ALICE_TOKEN)]) as ch:
        alice = stubs(ch)
        await alice.models.CreateRegisteredModel(
            rms.CreateRegisteredModelRequest(
                registered_model_id="fraud", registered_model=rm.RegisteredModel()
            )
        )
        created = await alice.access.CreateApiKey(
            acs.CreateApiKeyRequest(api_key=ac.ApiKey(display_name="ci", groups=["ml"]))
        )
        secret = created.secret
    async with aio.insecure_channel(server.address, interceptors=[_Bearer(secret)]) as ch:
        key = stubs(ch)
        # The key acts as alice: she owns the model she created.
        listed = await key.models.ListRegisteredModels(rms.ListRegisteredModelsRequest())
        assert [m.name for m in listed.registered_models] == ["models/fraud"]
        me = await key.access.ResolveAccess(acs.ResolveAccessRequest())
        assert [(m.model, m.role) for m in me.model_roles] == [("models/fraud", ac.ROLE_OWNER)]
        # A key does not mint keys (it would outlive its own revocation).
        await expect_error(
            key.access.CreateApiKey(acs.CreateApiKeyRequest(api_key=ac.ApiKey())),
            grpc.StatusCode.PERMISSION_DENIED,
            "MISSING_ROLE",
        )
        # Revoked with itself: the next call is refused at once, not after a cache expiry.
        await key.access.RevokeApiKey(acs.RevokeApiKeyRequest(name=created.api_key.name))
        await expect_error(
            key.models.ListRegisteredModels(rms.ListRegisteredModelsRequest()),
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_TOKEN",
        )
    async with aio.insecure_channel(
        server.address, interceptors=[_Bearer("mrk_" + "x" * 43)]
    ) as ch:
        await expect_error(
            stubs(ch).models.ListRegisteredModels(rms.ListRegisteredModelsRequest()),
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_TOKEN",
        )
