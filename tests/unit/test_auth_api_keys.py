"""API keys verified over a real gRPC channel against a tiny AccessService that implements only
VerifyApiKey (a fake peer; tests/service/common/test_authn_api_keys.py uses the real one)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
from grpc import aio

from modelreg.metadata.v1 import access_pb2, access_service_pb2
from modelreg_common.api_keys import ApiKeyVerifier
from modelreg_common.auth import Authenticator
from modelreg_common.context import Principal
from modelreg_common.errors import Unauthenticated, Unavailable
from modelreg_common.settings import AuthSettings

GOOD = "mrk_good_0123456789"


@dataclass
class FakeAccess:
    keys: dict[str, access_pb2.ApiKey] = field(default_factory=dict)
    # Digests of the secrets asked about: the fake never needs the secret itself afterwards.
    asked: list[str] = field(default_factory=list)
    fail_with: grpc.StatusCode | None = None
    # When set, answers wait for it: calls stay in flight while the test acts.
    gate: asyncio.Event | None = None
    called: asyncio.Event = field(default_factory=asyncio.Event)

    async def verify(
        self,
        request: access_service_pb2.VerifyApiKeyRequest,
        context: aio.ServicerContext[
            access_service_pb2.VerifyApiKeyRequest, access_service_pb2.VerifyApiKeyResponse
        ],
    ) -> access_service_pb2.VerifyApiKeyResponse:
        self.asked.append(hashlib.sha256(request.secret.encode()).hexdigest())
        self.called.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            await context.abort(self.fail_with, "told to fail")
        key = self.keys.get(request.secret)
        if key is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "api key not found")
        return access_service_pb2.VerifyApiKeyResponse(api_key=key)


@dataclass
class Peer:
    access: FakeAccess
    channel: aio.Channel
    address: str


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    access = FakeAccess(
        keys={
            GOOD: access_pb2.ApiKey(
                name="apiKeys/k1", principal="ci-bot", groups=["ml", "deployers"]
            )
        }
    )
    server = aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        access.verify,
        request_deserializer=access_service_pb2.VerifyApiKeyRequest.FromString,
        response_serializer=access_service_pb2.VerifyApiKeyResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "modelreg.metadata.v1.AccessService", {"VerifyApiKey": handler}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Peer(access, channel, f"127.0.0.1:{port}")
    finally:
        await channel.close()
        await server.stop(0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verifier(peer: Peer, **kwargs: object) -> ApiKeyVerifier:
    return ApiKeyVerifier(lambda: peer.channel, 2.0, **kwargs)  # type: ignore[arg-type]


async def test_valid_key_yields_its_principal_and_groups(peer: Peer) -> None:
    principal = await verifier(peer).verify(GOOD)
    assert principal == Principal(subject="ci-bot", groups=("ml", "deployers"), method="api_key")


async def test_other_tokens_are_left_to_other_verifiers(peer: Peer) -> None:
    keys = verifier(peer)
    assert await keys.verify("t0k") is None
    assert await keys.verify("eyJhbGciOiJIUzI1NiJ9.e30.x") is None
    assert peer.access.asked == []


async def test_unknown_key_is_unauthenticated_and_remembered(peer: Peer) -> None:
    keys = verifier(peer)
    for _ in range(3):
        with pytest.raises(Unauthenticated, match="the API key is not valid") as err:
            await keys.verify("mrk_unknown")
        assert "mrk_unknown" not in err.value.message
    assert len(peer.access.asked) == 1


async def test_oversized_key_is_refused_without_asking(peer: Peer) -> None:
    with pytest.raises(Unauthenticated):
        await verifier(peer).verify("mrk_" + "x" * 1000)
    assert peer.access.asked == []


async def test_verified_key_is_cached_by_digest_until_cache_time_runs_out(peer: Peer) -> None:
    clock = Clock()
    keys = verifier(peer, cache_seconds=30, clock=clock)
    await keys.verify(GOOD)
    clock.now += 29
    await keys.verify(GOOD)
    assert peer.access.asked == [hashlib.sha256(GOOD.encode()).hexdigest()]
    clock.now += 2
    await keys.verify(GOOD)
    assert len(peer.access.asked) == 2


async def test_clear_forgets_verified_keys_at_once(peer: Peer) -> None:
    keys = verifier(peer)
    await keys.verify(GOOD)
    # Revoked in metadata; the revocation event makes the runtime call clear().
    del peer.access.keys[GOOD]
    assert await keys.verify(GOOD) is not None
    keys.clear()
    assert len(keys) == 0
    with pytest.raises(Unauthenticated):
        await keys.verify(GOOD)


async def test_answer_in_flight_during_clear_is_not_cached(peer: Peer) -> None:
    peer.access.gate = asyncio.Event()
    keys = verifier(peer)
    lookup = asyncio.ensure_future(keys.verify(GOOD))
    await asyncio.wait_for(peer.access.called.wait(), 5)
    keys.clear()
    peer.access.gate.set()
    assert await lookup is not None
    assert len(keys) == 0


async def test_key_past_its_expire_time_is_refused_even_from_cache(peer: Peer) -> None:
    expiring = access_pb2.ApiKey(name="apiKeys/k2", principal="temp")
    expiring.expire_time.FromSeconds(int(time.time()) + 60)
    peer.access.keys["mrk_expiring"] = expiring
    wall = [time.time()]
    keys = verifier(peer, cache_seconds=3600, wall_clock=lambda: wall[0])
    assert await keys.verify("mrk_expiring") is not None
    wall[0] += 61
    with pytest.raises(Unauthenticated):
        await keys.verify("mrk_expiring")


async def test_revoked_key_in_answer_is_refused(peer: Peer) -> None:
    revoked = access_pb2.ApiKey(name="apiKeys/k3", principal="gone")
    revoked.revoke_time.FromSeconds(int(time.time()))
    peer.access.keys["mrk_revoked"] = revoked
    with pytest.raises(Unauthenticated):
        await verifier(peer).verify("mrk_revoked")


async def test_concurrent_calls_with_a_new_key_ask_once(peer: Peer) -> None:
    peer.access.gate = asyncio.Event()
    keys = verifier(peer)
    calls = asyncio.gather(*(keys.verify(GOOD) for _ in range(20)))
    await asyncio.wait_for(peer.access.called.wait(), 5)
    peer.access.gate.set()
    results = await calls
    assert {r.subject for r in results if r is not None} == {"ci-bot"}
    assert len(peer.access.asked) == 1


async def test_cache_is_bounded(peer: Peer) -> None:
    for i in range(10):
        peer.access.keys[f"mrk_k{i}"] = access_pb2.ApiKey(name=f"apiKeys/{i}", principal=f"p{i}")
    keys = verifier(peer, max_entries=3)
    for i in range(10):
        await keys.verify(f"mrk_k{i}")
    assert len(keys) == 3
    # The most recent keys are kept; the oldest must be asked again.
    asked = len(peer.access.asked)
    await keys.verify("mrk_k9")
    assert len(peer.access.asked) == asked
    await keys.verify("mrk_k0")
    assert len(peer.access.asked) == asked + 1


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.INTERNAL,
    ],
)
async def test_metadata_failure_is_unavailable_and_not_cached(
    peer: Peer, code: grpc.StatusCode
) -> None:
    peer.access.fail_with = code
    keys = verifier(peer)
    with pytest.raises(Unavailable) as err:
        await keys.verify(GOOD)
    assert err.value.metadata == {"backend": "metadata"}
    assert GOOD not in err.value.message
    peer.access.fail_with = None
    assert await keys.verify(GOOD) is not None


async def test_metadata_down_is_unavailable(peer: Peer) -> None:
    channel = aio.insecure_channel("127.0.0.1:1")
    try:
        keys = ApiKeyVerifier(lambda: channel, 0.5)
        with pytest.raises(Unavailable):
            await keys.verify(GOOD)
    finally:
        await channel.close()


async def test_authenticator_with_api_keys_from_settings(peer: Peer) -> None:
    settings = AuthSettings(mode="token", api_key_cache_seconds=0)
    authenticator = Authenticator.from_settings(settings)
    authenticator.add_verifier(ApiKeyVerifier.from_settings(settings, lambda: peer.channel, 2.0))
    principal = await authenticator.authenticate(f"Bearer {GOOD}")
    assert (principal.subject, principal.method) == ("ci-bot", "api_key")
    with pytest.raises(Unauthenticated, match="API key is not valid"):
        await authenticator.authenticate("Bearer mrk_nope")
    # A cache time of 0 asks metadata every time.
    await authenticator.authenticate(f"Bearer {GOOD}")
    assert len(peer.access.asked) == 3
