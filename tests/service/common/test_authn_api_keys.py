"""API keys against the real metadata service: created by AccessService, verified by
`ApiKeyVerifier` over a channel to it, and used as bearer tokens on a server in token mode."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from grpc import aio

from modelreg.metadata.v1 import access_pb2, access_service_pb2, access_service_pb2_grpc
from modelreg_common.api_keys import ApiKeyVerifier
from modelreg_common.auth import Authenticator, hash_token
from modelreg_common.context import Principal
from modelreg_common.errors import Unauthenticated, Unavailable
from modelreg_common.server import RegistryServer
from modelreg_metadata.app import SPEC
from testkit import PROBE_SERVICE, error_details, make_settings, probe_spec

ADMIN_TOKEN = "admin-t0ken"


class _Bearer(aio.UnaryUnaryClientInterceptor):
    """Sends a bearer token on every call, as the runtime's peer channels do."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: aio.ClientCallDetails, request: Any
    ) -> Any:
        metadata = aio.Metadata(*(details.metadata or ()))
        metadata.add("authorization", f"Bearer {self._token}")
        return await continuation(
            aio.ClientCallDetails(
                details.method,
                details.timeout,
                metadata,
                details.credentials,
                details.wait_for_ready,
            ),
            request,
        )


@dataclass
class Registry:
    server: RegistryServer
    keys: ApiKeyVerifier
    admin: aio.Channel
    access: access_service_pb2_grpc.AccessServiceAsyncStub

    async def create_key(self, **fields: Any) -> str:
        reply = await self.access.CreateApiKey(
            access_service_pb2.CreateApiKeyRequest(api_key=access_pb2.ApiKey(**fields))
        )
        return reply.secret

    async def revoke(self, secret: str) -> None:
        listed = await self.access.ListApiKeys(access_service_pb2.ListApiKeysRequest())
        (key,) = [k for k in listed.api_keys if secret.startswith(k.secret_prefix)]
        await self.access.RevokeApiKey(access_service_pb2.RevokeApiKeyRequest(name=key.name))

    async def whoami(self, secret: str) -> bytes:
        async with aio.insecure_channel(self.server.address) as channel:
            call: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                f"/{PROBE_SERVICE}/WhoAmI"
            )
            return await call(b"", metadata=[("authorization", f"Bearer {secret}")], timeout=10)


@pytest.fixture
async def registry(start_server: Any) -> AsyncIterator[Registry]:
    """Metadata plus the probe in token mode; API keys verified by asking this metadata over a
    channel that authenticates as an admin (the runtime uses its peer channel instead)."""
    settings = make_settings(
        relay_enabled=False,
        auth={
            "mode": "token",
            "tokens": [{"sha256": hash_token(ADMIN_TOKEN), "principal": "admin"}],
            "admins": ["user:admin", "user:ci-bot"],
        },
    )
    # The server's port is known once it started; the verifier opens its channel on first use.
    address: list[str] = []
    channels: list[aio.Channel] = []

    def channel() -> aio.Channel:
        made = aio.insecure_channel(address[0], interceptors=[_Bearer(ADMIN_TOKEN)])
        channels.append(made)
        return made

    keys = ApiKeyVerifier(channel, 5.0, cache_seconds=300)
    authenticator = Authenticator.from_settings(settings.auth)
    authenticator.add_verifier(keys)
    server = await start_server(
        [SPEC, probe_spec()], settings=settings, authenticator=authenticator
    )
    address.append(server.address)
    admin_channel = channel()
    try:
        yield Registry(
            server, keys, admin_channel, access_service_pb2_grpc.AccessServiceStub(admin_channel)
        )
    finally:
        for made in channels:
            await made.close()


async def test_key_created_by_metadata_verifies_as_its_principal(registry: Registry) -> None:
    secret = await registry.create_key(principal="ci-bot", groups=["ml"], display_name="ci")
    assert secret.startswith("mrk_")
    principal = await registry.keys.verify(secret)
    assert principal == Principal(subject="ci-bot", groups=("ml",), method="api_key")


async def test_api_key_authenticates_calls(registry: Registry) -> None:
    secret = await registry.create_key(principal="ci-bot")
    assert await registry.whoami(secret) == b"ci-bot"
    assert len(registry.keys) == 1


async def test_unknown_key_is_unauthenticated(registry: Registry) -> None:
    with pytest.raises(aio.AioRpcError) as err:
        await registry.whoami("mrk_" + "x" * 43)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert err.value.details() == "the API key is not valid"
    assert error_details(err.value)[0] == "INVALID_TOKEN"


async def test_revoked_key_is_refused_once_the_cache_is_cleared(registry: Registry) -> None:
    secret = await registry.create_key(principal="ci-bot")
    assert await registry.whoami(secret) == b"ci-bot"
    await registry.revoke(secret)
    # The `api_key.revoked` event makes the runtime clear the cache.
    registry.keys.clear()
    with pytest.raises(aio.AioRpcError) as err:
        await registry.whoami(secret)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_key_with_expire_time_is_accepted_until_then(registry: Registry) -> None:
    expire = datetime.now(UTC) + timedelta(hours=1)
    key = access_pb2.ApiKey(principal="ci-bot")
    key.expire_time.FromDatetime(expire)
    reply = await registry.access.CreateApiKey(access_service_pb2.CreateApiKeyRequest(api_key=key))
    assert await registry.keys.verify(reply.secret) is not None
    later = ApiKeyVerifier(
        lambda: registry.admin,
        5.0,
        wall_clock=lambda: (expire + timedelta(seconds=1)).timestamp(),
    )
    with pytest.raises(Unauthenticated):
        await later.verify(reply.secret)


async def test_cache_keeps_digests_not_secrets(registry: Registry) -> None:
    secret = await registry.create_key(principal="ci-bot")
    await registry.keys.verify(secret)
    cached = list(registry.keys._cache)
    assert cached == [hashlib.sha256(secret.encode()).hexdigest()]


async def test_metadata_down_makes_key_checks_unavailable(start_server: Any) -> None:
    server = await start_server([SPEC], settings=make_settings(relay_enabled=False))
    address = server.address
    await server.stop(0)
    channel = aio.insecure_channel(address)
    try:
        keys = ApiKeyVerifier(lambda: channel, 1.0)
        with pytest.raises(Unavailable) as err:
            await keys.verify("mrk_" + "y" * 43)
        assert err.value.metadata == {"backend": "metadata"}
    finally:
        await channel.close()


async def test_runtime_refuses_a_revoked_key_at_once(start_server: Any) -> None:
    """Wired by the runtime itself: keys checked over its peer channel, and the revocation
    (which invalidates the authorizer) clears the key cache in the same process."""
    settings = make_settings(
        relay_enabled=False,
        auth={
            "mode": "token",
            "tokens": [{"sha256": hash_token(ADMIN_TOKEN), "principal": "admin"}],
            "admins": ["user:admin", "user:ci-bot"],
            # Long enough that only the revocation can make the key fail.
            "api_key_cache_seconds": 3600,
        },
    )
    server = await start_server([SPEC, probe_spec()], settings=settings)
    async with aio.insecure_channel(
        server.address, interceptors=[_Bearer(ADMIN_TOKEN)]
    ) as admin_channel:
        access = access_service_pb2_grpc.AccessServiceStub(admin_channel)
        created = await access.CreateApiKey(
            access_service_pb2.CreateApiKeyRequest(api_key=access_pb2.ApiKey(principal="ci-bot"))
        )
        async with aio.insecure_channel(server.address) as channel:
            call: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                f"/{PROBE_SERVICE}/WhoAmI"
            )
            bearer = [("authorization", f"Bearer {created.secret}")]
            assert await call(b"", metadata=bearer, timeout=10) == b"ci-bot"
            await access.RevokeApiKey(
                access_service_pb2.RevokeApiKeyRequest(name=created.api_key.name)
            )
            with pytest.raises(aio.AioRpcError) as err:
                await call(b"", metadata=bearer, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
