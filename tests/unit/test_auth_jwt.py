"""JWT bearer tokens: accepted with HS256/RS256/ES256, refused with a reason otherwise."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from modelreg_common.auth import Authenticator, hash_token
from modelreg_common.context import Principal
from modelreg_common.errors import Unauthenticated, Unavailable
from modelreg_common.jwt_tokens import JwksKeys, JwtVerifier
from modelreg_common.settings import AuthSettings, JwtSettings, TokenEntry

ISSUER = "https://idp.example"
AUDIENCE = "modelreg"
SECRET = "s" * 40

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(private_key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.get_algorithm_by_name(alg)
    public = json.loads(algorithm.to_jwk(private_key.public_key()))
    return {**public, "kid": kid, "use": "sig", "alg": alg}


def write_jwks(path: Path, *keys: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"keys": list(keys)}))
    return path


@pytest.fixture
def jwks_file(tmp_path: Path) -> Path:
    return write_jwks(
        tmp_path / "jwks.json", jwk(RSA_KEY, "rsa-1", "RS256"), jwk(EC_KEY, "ec-1", "ES256")
    )


def settings(jwks_file: Path | None = None, **overrides: Any) -> JwtSettings:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "algorithms": ["HS256", "RS256", "ES256"] if jwks_file else ["HS256"],
        "hs256_secret": SECRET,
        "jwks_file": jwks_file,
    }
    values.update(overrides)
    return JwtSettings(**values)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 300,
        "groups": ["ml", "risk"],
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def token(alg: str = "RS256", kid: str | None = "rsa-1", **claim_overrides: Any) -> str:
    key: Any = {"HS256": SECRET, "RS256": RSA_KEY, "ES256": EC_KEY}[alg]
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(**claim_overrides), key, algorithm=alg, headers=headers)


async def refused(verifier: JwtVerifier, bearer: str) -> str:
    with pytest.raises(Unauthenticated) as err:
        await verifier.verify(bearer)
    message = err.value.message
    assert bearer not in message
    for part in bearer.split("."):
        if len(part) > 8:
            assert part not in message
    return message


@pytest.mark.parametrize(("alg", "kid"), [("HS256", None), ("RS256", "rsa-1"), ("ES256", "ec-1")])
async def test_signed_token_yields_subject_and_groups(jwks_file: Path, alg: str, kid: str) -> None:
    verifier = JwtVerifier.from_settings(settings(jwks_file))
    principal = await verifier.verify(token(alg, kid))
    assert principal == Principal(subject="alice", groups=("ml", "risk"), method="jwt")


@pytest.mark.parametrize(
    ("bearer", "reason"),
    [
        (lambda: token(exp=int(time.time()) - 120), "expired"),
        (lambda: token(iss="https://evil.example"), "issuer"),
        (lambda: token(aud="another-service"), "audience"),
        (lambda: token(iat=int(time.time()) + 3600, nbf=int(time.time()) + 3600), "not valid yet"),
        (lambda: token(exp=None), "'exp'"),
        (lambda: token(aud=None), "'aud'"),
        (lambda: token(iss=None), "'iss'"),
        (lambda: token(sub=None), "'sub'"),
    ],
)
async def test_bad_claims_are_refused_with_the_reason(
    jwks_file: Path, bearer: Any, reason: str
) -> None:
    verifier = JwtVerifier.from_settings(settings(jwks_file))
    assert reason in await refused(verifier, bearer())


async def test_expiry_within_leeway_is_accepted_beyond_it_refused(jwks_file: Path) -> None:
    verifier = JwtVerifier.from_settings(settings(jwks_file, leeway_seconds=60))
    assert await verifier.verify(token(exp=int(time.time()) - 30)) is not None
    assert "expired" in await refused(verifier, token(exp=int(time.time()) - 120))


async def test_signature_by_another_key_is_refused(jwks_file: Path) -> None:
    forged = jwt.encode(claims(), OTHER_RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})
    verifier = JwtVerifier.from_settings(settings(jwks_file))
    assert "signature" in await refused(verifier, forged)
    hs_forged = jwt.encode(claims(), "x" * 40, algorithm="HS256")
    assert "signature" in await refused(verifier, hs_forged)


async def test_tampered_payload_is_refused(jwks_file: Path) -> None:
    header, _, signature = token().split(".")
    payload = base64.urlsafe_b64encode(json.dumps(claims(sub="root")).encode()).rstrip(b"=")
    verifier = JwtVerifier.from_settings(settings(jwks_file))
    assert "signature" in await refused(verifier, f"{header}.{payload.decode()}.{signature}")


async def test_unknown_kid_is_refused(jwks_file: Path) -> None:
    verifier = JwtVerifier.from_settings(settings(jwks_file))
    assert "'nope' is unknown" in await refused(verifier, token(kid="nope"))


async def test_alg_none_is_refused() -> None:
    unsigned = jwt.encode(claims(), "", algorithm="none")
    assert unsigned.endswith(".")
    verifier = JwtVerifier.from_settings(settings())
    assert "'none' is not accepted" in await refused(verifier, unsigned)


async def test_algorithm_not_configured_is_refused(jwks_file: Path) -> None:
    verifier = JwtVerifier.from_settings(settings(jwks_file, algorithms=["ES256"]))
    assert "'RS256' is not accepted" in await refused(verifier, token("RS256"))
    assert "'HS256' is not accepted" in await refused(verifier, token("HS256", kid=None))


async def test_rsa_public_key_used_as_hmac_secret_is_refused(jwks_file: Path) -> None:
    """Algorithm confusion: an HS256 token 'signed' with the issuer's public key."""
    from cryptography.hazmat.primitives import serialization

    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT","kid":"rsa-1"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    import hashlib
    import hmac

    signing_input = header + b"." + body
    signature = base64.urlsafe_b64encode(
        hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    ).rstrip(b"=")
    forged = (signing_input + b"." + signature).decode()
    verifier = JwtVerifier.from_settings(settings(jwks_file))
    assert "signature" in await refused(verifier, forged)


async def test_key_of_another_type_for_the_kid_is_refused(jwks_file: Path) -> None:
    # The token claims ES256 but names the RSA key.
    mixed = jwt.encode(claims(), EC_KEY, algorithm="ES256", headers={"kid": "rsa-1"})
    verifier = JwtVerifier.from_settings(settings(jwks_file))
    assert "is for RS256, not ES256" in await refused(verifier, mixed)


async def test_missing_kid_uses_the_only_key_and_is_refused_among_several(
    tmp_path: Path, jwks_file: Path
) -> None:
    single = write_jwks(tmp_path / "one.json", jwk(EC_KEY, "ec-1", "ES256"))
    one = JwtVerifier.from_settings(settings(single, algorithms=["ES256"], hs256_secret=None))
    assert await one.verify(token("ES256", kid=None)) is not None
    several = JwtVerifier.from_settings(settings(jwks_file))
    assert "no 'kid'" in await refused(several, token("ES256", kid=None))


@pytest.mark.parametrize("bearer", ["mrk_abc", "t0k", "a.b", "not.a.jwt!", "e30.e30.x"])
async def test_tokens_that_are_not_jwts_are_left_to_other_verifiers(bearer: str) -> None:
    # e30 is "{}": JSON, but without "alg" it is no JOSE header.
    verifier = JwtVerifier.from_settings(settings())
    assert await verifier.verify(bearer) is None


async def test_undecodable_parts_with_a_jwt_header_are_malformed(jwks_file: Path) -> None:
    header, payload, _ = token().split(".")
    verifier = JwtVerifier.from_settings(settings(jwks_file))
    # A 1-character base64url signature cannot decode to bytes.
    assert "malformed" in await refused(verifier, f"{header}.{payload}.a")
    # Signed, but the payload is not JSON.
    not_json = jwt.api_jws.encode(b"not json", RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})
    assert "malformed" in await refused(verifier, not_json)


@pytest.mark.parametrize(
    ("claim", "payload", "groups"),
    [
        ("groups", {"groups": "solo"}, ("solo",)),
        ("groups", {"groups": ["a", 3, "", "b"]}, ("a", "b")),
        ("groups", {"groups": {"not": "a list"}}, ()),
        ("roles", {"groups": None}, ()),
        ("realm_access.roles", {"realm_access": {"roles": ["ops"]}}, ("ops",)),
        ("https://example.com/groups", {"https://example.com/groups": ["ns"]}, ("ns",)),
    ],
)
async def test_groups_claim(
    jwks_file: Path, claim: str, payload: dict[str, Any], groups: tuple[str, ...]
) -> None:
    verifier = JwtVerifier.from_settings(settings(jwks_file, groups_claim=claim))
    principal = await verifier.verify(token(**payload))
    assert principal is not None
    assert principal.groups == groups


async def test_subject_claim_is_configurable(jwks_file: Path) -> None:
    verifier = JwtVerifier.from_settings(settings(jwks_file, subject_claim="email"))
    principal = await verifier.verify(token(email="alice@example.com"))
    assert principal is not None
    assert principal.subject == "alice@example.com"
    assert "'email'" in await refused(verifier, token())


async def test_unreadable_jwks_file_fails_at_start(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(Unavailable, match="not a usable JWK Set"):
        JwtVerifier.from_settings(settings(broken))
    with pytest.raises(FileNotFoundError):
        JwtVerifier.from_settings(settings(tmp_path / "missing.json"))


async def test_rotated_jwks_file_is_read_again_on_unknown_kid(tmp_path: Path) -> None:
    path = write_jwks(tmp_path / "jwks.json", jwk(EC_KEY, "ec-1", "ES256"))
    now = [1000.0]
    keys = JwksKeys(file=path, cache_seconds=3600, min_refresh_seconds=10, clock=lambda: now[0])
    keys.load_now()
    verifier = JwtVerifier(settings(path, hs256_secret=None, algorithms=["RS256"]), keys)
    await refused(verifier, token("RS256", kid="rsa-1"))
    write_jwks(path, jwk(EC_KEY, "ec-1", "ES256"), jwk(RSA_KEY, "rsa-1", "RS256"))
    # Refetched moments ago: an unknown kid does not make it read again yet.
    now[0] += 5
    await refused(verifier, token("RS256", kid="rsa-1"))
    now[0] += 10
    assert await verifier.verify(token("RS256", kid="rsa-1")) is not None
    assert keys.fetches == 3


async def test_authenticator_tries_jwt_after_static_tokens(jwks_file: Path) -> None:
    authenticator = Authenticator.from_settings(
        AuthSettings(
            mode="token",
            tokens=[TokenEntry(sha256=hash_token("t0k"), principal="bob")],
            jwt=settings(jwks_file),
        )
    )
    assert (await authenticator.authenticate("Bearer t0k")).subject == "bob"
    principal = await authenticator.authenticate(f"Bearer {token('ES256', 'ec-1')}")
    assert (principal.subject, principal.method) == ("alice", "jwt")
    with pytest.raises(Unauthenticated, match="expired"):
        await authenticator.authenticate(f"Bearer {token(exp=int(time.time()) - 100)}")


async def test_without_jwt_settings_a_jwt_is_just_an_unknown_token() -> None:
    authenticator = Authenticator.from_settings(AuthSettings(mode="token"))
    with pytest.raises(Unauthenticated, match="bearer token is not valid"):
        await authenticator.authenticate(f"Bearer {token('HS256', kid=None)}")


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"algorithms": ["none"]}, "algorithms"),
        ({"algorithms": []}, "algorithms"),
        ({"algorithms": ["HS256"], "hs256_secret": None}, "needs hs256_secret"),
        ({"algorithms": ["HS256"], "hs256_secret": "short"}, "at least 32"),
        ({"algorithms": ["RS256"], "hs256_secret": None}, "need jwks_file or jwks_url"),
        ({"jwks_file": "/x.json", "jwks_url": "https://idp/jwks"}, "not both"),
        ({"jwks_url": "ftp://idp/jwks"}, "jwks_url"),
        ({"issuer": ""}, "issuer"),
        ({"audience": ""}, "audience"),
    ],
)
def test_settings_refuse_unsafe_or_incomplete_configuration(
    overrides: dict[str, Any], error: str
) -> None:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "algorithms": ["HS256"],
        "hs256_secret": SECRET,
    }
    values.update(overrides)
    with pytest.raises(ValidationError, match=error):
        JwtSettings(**values)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelreg_common.settings import Settings

    monkeypatch.setenv("MODELREG_AUTH__JWT__ISSUER", ISSUER)
    monkeypatch.setenv("MODELREG_AUTH__JWT__AUDIENCE", AUDIENCE)
    monkeypatch.setenv("MODELREG_AUTH__JWT__ALGORITHMS", '["ES256"]')
    monkeypatch.setenv("MODELREG_AUTH__JWT__JWKS_URL", "https://idp.example/jwks.json")
    monkeypatch.setenv("MODELREG_AUTH__JWT__GROUPS_CLAIM", "roles")
    loaded = Settings().auth.jwt
    assert loaded is not None
    assert (loaded.algorithms, loaded.groups_claim) == (["ES256"], "roles")
    assert loaded.jwks_url == "https://idp.example/jwks.json"
