"""JWT bearer tokens against a real server, with keys from a JWKS URL served over HTTP here."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from grpc import aio

from modelreg_common.errors import Unauthenticated, Unavailable
from modelreg_common.jwt_tokens import JwksKeys, JwtVerifier
from modelreg_common.settings import JwtSettings
from testkit import PROBE_SERVICE, error_details, make_settings, probe_spec

ISSUER = "https://idp.example"
AUDIENCE = "modelreg"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwk(private_key: Any, kid: str, alg: str) -> dict[str, Any]:
    public = json.loads(jwt.get_algorithm_by_name(alg).to_jwk(private_key.public_key()))
    return {**public, "kid": kid, "alg": alg, "use": "sig"}


def token(key: Any, alg: str, kid: str, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "exp": now + 300,
        "iat": now,
        "groups": ["ml"],
    }
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


@dataclass
class Idp:
    """An identity provider's JWKS endpoint: the keys it publishes, and how often it is asked."""

    url: str = ""
    keys: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    requests: int = 0


@pytest.fixture
async def idp() -> AsyncIterator[Idp]:
    state = Idp(keys=[jwk(RSA_KEY, "rsa-1", "RS256")])

    async def jwks(request: web.Request) -> web.Response:
        state.requests += 1
        if state.status != 200:
            return web.Response(status=state.status, text="down")
        return web.json_response({"keys": state.keys})

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
    try:
        yield state
    finally:
        await runner.cleanup()


def jwt_settings(idp: Idp, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "algorithms": ["RS256", "ES256"],
        "jwks_url": idp.url,
        "jwks_min_refresh_seconds": 0,
    }
    values.update(overrides)
    return values


def whoami(channel: aio.Channel) -> aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(f"/{PROBE_SERVICE}/WhoAmI")


async def test_server_accepts_jwt_signed_by_a_key_from_the_jwks_url(
    start_server: Any, idp: Idp
) -> None:
    settings = make_settings(
        auth={"mode": "token", "jwt": jwt_settings(idp), "admins": ["group:ml"]}
    )
    server = await start_server([probe_spec()], settings=settings)
    bearer = token(RSA_KEY, "RS256", "rsa-1")
    async with aio.insecure_channel(server.address) as channel:
        reply = await whoami(channel)(b"", metadata=[("authorization", f"Bearer {bearer}")])
        assert reply == b"alice"
        # The set is cached: the second call does not ask the IdP again.
        await whoami(channel)(b"", metadata=[("authorization", f"Bearer {bearer}")])
    assert idp.requests == 1


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: token(RSA_KEY, "RS256", "rsa-1", exp=int(time.time()) - 600), "expired"),
        (lambda: token(RSA_KEY, "RS256", "rsa-1", iss="https://evil.example"), "issuer"),
        (lambda: token(RSA_KEY, "RS256", "rsa-1", aud="other"), "audience"),
        (lambda: token(EC_KEY, "ES256", "rsa-1"), "is for RS256"),
        (
            lambda: token(rsa.generate_private_key(65537, 2048), "RS256", "rsa-1"),
            "signature",
        ),
        (lambda: token(RSA_KEY, "RS256", "rsa-9"), "unknown"),
        (
            lambda: jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "root"}, "", "none"),
            "'none' is not accepted",
        ),
    ],
)
async def test_server_refuses_bad_jwts_as_unauthenticated(
    start_server: Any, idp: Idp, make: Any, reason: str
) -> None:
    settings = make_settings(auth={"mode": "token", "jwt": jwt_settings(idp)})
    server = await start_server([probe_spec()], settings=settings)
    bearer = make()
    async with aio.insecure_channel(server.address) as channel:
        with pytest.raises(aio.AioRpcError) as err:
            await whoami(channel)(b"", metadata=[("authorization", f"Bearer {bearer}")])
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    details = err.value.details() or ""
    assert reason in details
    assert bearer not in details
    assert error_details(err.value)[0] == "INVALID_TOKEN"


async def test_rotated_key_is_fetched_on_unknown_kid(idp: Idp) -> None:
    verifier = JwtVerifier.from_settings(JwtSettings(**jwt_settings(idp)))
    assert await verifier.verify(token(RSA_KEY, "RS256", "rsa-1")) is not None
    idp.keys.append(jwk(EC_KEY, "ec-2", "ES256"))
    principal = await verifier.verify(token(EC_KEY, "ES256", "ec-2"))
    assert principal is not None
    assert (principal.subject, principal.groups, principal.method) == ("alice", ("ml",), "jwt")
    assert idp.requests == 2


async def test_unknown_kids_refetch_at_most_every_min_refresh_seconds(idp: Idp) -> None:
    verifier = JwtVerifier.from_settings(
        JwtSettings(**jwt_settings(idp, jwks_min_refresh_seconds=3600))
    )
    for kid in ("a", "b", "c", "d"):
        with pytest.raises(Unauthenticated, match="unknown"):
            await verifier.verify(token(RSA_KEY, "RS256", kid))
    assert idp.requests == 1


async def test_idp_down_before_any_fetch_is_unavailable(idp: Idp) -> None:
    idp.status = 503
    verifier = JwtVerifier.from_settings(JwtSettings(**jwt_settings(idp)))
    with pytest.raises(Unavailable) as err:
        await verifier.verify(token(RSA_KEY, "RS256", "rsa-1"))
    assert err.value.metadata == {"backend": "jwks"}


async def test_idp_down_later_keeps_the_keys_already_fetched(idp: Idp) -> None:
    now = [0.0]
    settings = JwtSettings(**jwt_settings(idp))
    keys = JwksKeys(url=idp.url, cache_seconds=60, min_refresh_seconds=0, clock=lambda: now[0])
    verifier = JwtVerifier(settings, keys)
    assert await verifier.verify(token(RSA_KEY, "RS256", "rsa-1")) is not None
    idp.status = 500
    now[0] += 120
    assert await verifier.verify(token(RSA_KEY, "RS256", "rsa-1")) is not None
    assert idp.requests == 2


async def test_unreachable_jwks_url_is_unavailable() -> None:
    keys = JwksKeys(url="http://127.0.0.1:1/jwks.json", timeout_seconds=2)
    with pytest.raises(Unavailable):
        await keys.key("rsa-1")


async def test_jwks_url_answering_garbage_is_unavailable(idp: Idp) -> None:
    idp.keys = [{"kty": "nonsense"}]
    verifier = JwtVerifier.from_settings(JwtSettings(**jwt_settings(idp)))
    with pytest.raises(Unavailable, match="not a usable JWK Set"):
        await verifier.verify(token(RSA_KEY, "RS256", "rsa-1"))
