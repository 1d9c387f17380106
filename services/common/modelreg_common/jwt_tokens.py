"""JWT bearer tokens: an identity provider signs them, the registry checks them with PyJWT.

The key that checks a token is chosen by the algorithm configured for it, never by trusting the
token's own header alone: an HS256 token is checked with the shared secret only, an RS256/ES256
token with a key from the issuer's JWK Set whose type matches. Error messages say why a token
failed (expired, wrong issuer, ...) and never contain the token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from modelreg_common.context import Principal
from modelreg_common.errors import Unauthenticated, Unavailable
from modelreg_common.logs import get_logger
from modelreg_common.settings import JwtSettings

log = get_logger("modelreg.auth.jwt")

# header.payload.signature, base64url without padding; an empty signature is still "a JWT"
# (alg none) so that it is refused here rather than offered to the next verifier.
_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
# A JWK Set bigger than this is not a key set.
_MAX_JWKS_BYTES = 1024 * 1024

_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the JWT has expired"),
    (jwt.ImmatureSignatureError, "the JWT is not valid yet (nbf/iat in the future)"),
    (jwt.InvalidIssuerError, "the JWT issuer is not accepted"),
    (jwt.InvalidAudienceError, "the JWT audience is not accepted"),
    (jwt.InvalidSignatureError, "the JWT signature is not valid"),
    (jwt.InvalidAlgorithmError, "the JWT algorithm is not accepted"),
    (jwt.DecodeError, "the JWT is malformed"),
)


def _header(token: str) -> dict[str, Any] | None:
    """The token's JOSE header when it has the shape of a JWT, else None (not ours)."""
    if not _JWT_SHAPE.match(token):
        return None
    encoded = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(header, dict) or "alg" not in header:
        return None
    return header


def _claim(payload: Mapping[str, Any], name: str) -> Any:
    """A claim by exact name, else by a dotted path into nested objects (`realm_access.roles`).

    Exact names come first because namespaced claims (`https://example.com/groups`) contain dots.
    """
    if name in payload:
        return payload[name]
    value: Any = payload
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _groups(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str) and item)
    return ()


def _show(value: Any) -> str:
    """A header value for an error message: short, printable, never much of the token."""
    text = str(value)
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


class JwksKeys:
    """The issuer's public keys, from a file or a URL, cached.

    The set is re-read after `cache_seconds`, and at once (at most every `min_refresh_seconds`)
    when a token names a key it does not have, which is how an issuer's key rotation arrives.
    Fetches run off the event loop, one at a time.
    """

    def __init__(
        self,
        *,
        file: Path | None = None,
        url: str | None = None,
        cache_seconds: float = 300.0,
        min_refresh_seconds: float = 30.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (file is None) == (url is None):
            raise ValueError("JwksKeys needs exactly one of file or url")
        self._file = file
        self._url = url
        self._cache_seconds = cache_seconds
        self._min_refresh_seconds = min_refresh_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._keys: jwt.PyJWKSet | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    @property
    def source(self) -> str:
        return str(self._file) if self._file is not None else str(self._url)

    def load_now(self) -> None:
        """Read a JWKS file at start-up, so a broken one stops the server instead of every call."""
        if self._file is not None:
            self._store(self._parse(self._file.read_bytes()))

    async def key(self, kid: str | None) -> jwt.PyJWK | None:
        """The key named `kid`; with no `kid`, the set's only key. None when there is none."""
        keys = await self._current()
        found = self._find(keys, kid)
        if found is None and kid is not None and self._may_refresh():
            keys = await self._refresh(force=True)
            found = self._find(keys, kid)
        return found

    @staticmethod
    def _find(keys: jwt.PyJWKSet, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            only = list(keys)
            return only[0] if len(only) == 1 else None
        for key in keys:
            if key.key_id == kid:
                return key
        return None

    def _may_refresh(self) -> bool:
        return (
            self._attempted_at is None
            or self._clock() - self._attempted_at >= self._min_refresh_seconds
        )

    async def _current(self) -> jwt.PyJWKSet:
        if self._keys is not None and self._clock() - self._fetched_at < self._cache_seconds:
            return self._keys
        return await self._refresh(force=False)

    async def _refresh(self, *, force: bool) -> jwt.PyJWKSet:
        async with self._lock:
            # Another caller may have refreshed while this one waited for the lock.
            fresh = self._keys is not None and (
                self._clock() - self._fetched_at < self._cache_seconds
            )
            if self._keys is not None and fresh and not force:
                return self._keys
            if not self._may_refresh():
                # Fetched (or failed to) moments ago: do not hammer the issuer.
                if self._keys is not None:
                    return self._keys
                raise Unavailable(
                    "the JWT signing keys could not be fetched; retry later", backend="jwks"
                )
            self._attempted_at = self._clock()
            try:
                keys = self._parse(await self._fetch())
            except Unavailable:
                if self._keys is not None:
                    # Keep checking with the keys we have: an IdP outage must not log everyone out.
                    log.warning("jwks.refresh_failed", source=self.source)
                    return self._keys
                raise
            self._store(keys)
            return keys

    def _store(self, keys: jwt.PyJWKSet) -> None:
        self._keys = keys
        self._fetched_at = self._clock()
        self.fetches += 1

    async def _fetch(self) -> bytes:
        if self._file is not None:
            try:
                return await asyncio.to_thread(self._file.read_bytes)
            except OSError as err:
                log.error("jwks.read_failed", source=self.source, error=str(err))
                raise Unavailable(
                    f"cannot read the JWKS file {self.source}", backend="jwks"
                ) from err
        assert self._url is not None
        try:
            timeout = aiohttp.ClientTimeout(total=self._timeout)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self._url, allow_redirects=False) as response,
            ):
                if response.status != 200:
                    raise Unavailable(
                        f"the JWKS URL answered HTTP {response.status}", backend="jwks"
                    )
                body = await response.content.read(_MAX_JWKS_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as err:
            log.warning("jwks.fetch_failed", source=self.source, error=repr(err))
            raise Unavailable("cannot fetch the JWKS URL", backend="jwks") from err
        if len(body) > _MAX_JWKS_BYTES:
            raise Unavailable("the JWKS document is too large", backend="jwks")
        return body

    def _parse(self, body: bytes) -> jwt.PyJWKSet:
        try:
            document = json.loads(body)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            return jwt.PyJWKSet.from_dict(document)
        except (ValueError, jwt.PyJWTError) as err:
            log.error("jwks.invalid", source=self.source, error=str(err))
            raise Unavailable(
                f"the JWKS from {self.source} is not a usable JWK Set: {err}", backend="jwks"
            ) from err


class JwtVerifier:
    """A `TokenVerifier` for JWTs: anything shaped like one is checked here and either
    authenticates or fails with a reason; any other token is left to the next verifier."""

    def __init__(self, settings: JwtSettings, keys: JwksKeys | None = None) -> None:
        self._settings = settings
        self._algorithms = frozenset(settings.algorithms)
        self._secret = (
            settings.hs256_secret.get_secret_value().encode()
            if settings.hs256_secret is not None
            else None
        )
        if keys is None and (settings.jwks_file is not None or settings.jwks_url is not None):
            keys = JwksKeys(
                file=settings.jwks_file,
                url=settings.jwks_url,
                cache_seconds=settings.jwks_cache_seconds,
                min_refresh_seconds=settings.jwks_min_refresh_seconds,
                timeout_seconds=settings.jwks_timeout_seconds,
            )
        self._keys = keys

    @classmethod
    def from_settings(cls, settings: JwtSettings) -> JwtVerifier:
        verifier = cls(settings)
        if verifier._keys is not None:
            verifier._keys.load_now()
        return verifier

    async def verify(self, token: str) -> Principal | None:
        header = _header(token)
        if header is None:
            return None
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise Unauthenticated(
                f"the JWT algorithm {_show(algorithm)} is not accepted "
                f"(accepted: {', '.join(sorted(self._algorithms))})"
            )
        key = await self._key(str(algorithm), header.get("kid"))
        settings = self._settings
        required = ["exp", "iss", "aud"]
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key,
                # Only the algorithm that matches the key: an RSA public key must never be
                # accepted as an HMAC secret (algorithm confusion).
                algorithms=[str(algorithm)],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway_seconds,
                options={"require": required, "verify_sub": False, "verify_jti": False},
            )
        except jwt.MissingRequiredClaimError as err:
            raise Unauthenticated(f"the JWT lacks the required {err.claim!r} claim") from None
        except jwt.PyJWTError as err:
            raise Unauthenticated(self._reason(err)) from None
        subject = _claim(payload, settings.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated(
                f"the JWT has no {settings.subject_claim!r} claim naming its subject"
            )
        return Principal(
            subject=subject,
            groups=_groups(_claim(payload, settings.groups_claim)),
            method="jwt",
        )

    async def _key(self, algorithm: str, kid: Any) -> Any:
        if algorithm == "HS256":
            return self._secret
        if self._keys is None:
            raise Unauthenticated(f"the JWT algorithm {algorithm} has no keys configured")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("the JWT 'kid' header is not a string")
        key = await self._keys.key(kid)
        if key is None:
            if kid is None:
                raise Unauthenticated("the JWT has no 'kid' header and the key set has several")
            raise Unauthenticated(f"the JWT signing key {_show(kid)} is unknown")
        if key.algorithm_name != algorithm:
            raise Unauthenticated(
                f"the JWT signing key {_show(kid)} is for {key.algorithm_name}, not {algorithm}"
            )
        return key

    @staticmethod
    def _reason(err: jwt.PyJWTError) -> str:
        for kind, reason in _REASONS:
            if isinstance(err, kind):
                return reason
        return "the JWT is not valid"
