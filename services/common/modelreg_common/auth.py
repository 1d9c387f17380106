"""Authentication: who is calling, from a bearer token or a verified client certificate.

A chain of `TokenVerifier`s turns a bearer token into a Principal: static tokens from settings
(here), API keys (`api_keys.py`), JWTs (`jwt_tokens.py`). Each verifier answers None for tokens
that are not its kind, so the next one may try. Without a token, a client certificate verified
by the mTLS handshake (`client_certs.py`) identifies the caller.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from modelreg_common.addresses import is_loopback
from modelreg_common.client_certs import ClientCertificates
from modelreg_common.context import SYSTEM, Principal
from modelreg_common.errors import Unauthenticated
from modelreg_common.jwt_tokens import JwtVerifier
from modelreg_common.settings import AuthSettings, TlsSettings, TokenEntry


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Principal | None:
        """The caller behind `token`, or None when this verifier does not know it."""


class StaticTokenVerifier:
    """Tokens listed in settings, by SHA-256; the clear token is never stored."""

    def __init__(self, entries: Sequence[TokenEntry]) -> None:
        self._entries = list(entries)

    async def verify(self, token: str) -> Principal | None:
        digest = hash_token(token)
        found: TokenEntry | None = None
        # Compare with every entry in constant time so timing reveals nothing about near misses.
        for entry in self._entries:
            if hmac.compare_digest(entry.sha256, digest):
                found = entry
        if found is None:
            return None
        return Principal(subject=found.principal, groups=tuple(found.groups), method="token")


class InternalTokenVerifier:
    """The process's own random token, for calls it makes to itself: the internal principal."""

    def __init__(self, token: str) -> None:
        self._digest = hash_token(token)

    async def verify(self, token: str) -> Principal | None:
        if hmac.compare_digest(hash_token(token), self._digest):
            return SYSTEM
        return None


def refuse_exposed_local_mode(auth: AuthSettings, host: str, *, refusing: str, fix: str) -> None:
    """Local mode trusts every caller as its principal, so it serves only on loopback:
    RuntimeError for `host` otherwise (`refusing`: what is refused, `fix`: the setting to
    change besides the auth mode)."""
    if auth.mode == "local" and not is_loopback(host):
        raise RuntimeError(
            f"auth mode 'local' lets anyone call as {auth.local_principal!r}; "
            f"refusing to {refusing} {host}. Set MODELREG_AUTH__MODE=token or {fix}."
        )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    def __init__(
        self,
        settings: AuthSettings,
        verifiers: Sequence[TokenVerifier],
        client_certificates: ClientCertificates | None = None,
    ) -> None:
        self._local = (
            Principal(subject=settings.local_principal, method="local")
            if settings.mode == "local"
            else None
        )
        self._verifiers = list(verifiers)
        self._client_certificates = client_certificates

    @classmethod
    def from_settings(cls, settings: AuthSettings, tls: TlsSettings | None = None) -> Authenticator:
        """Static tokens, JWTs when `auth.jwt` is set, and client certificates when the server
        requires them (`tls.client_ca_file`). API keys need a peer channel: the runtime adds
        an `ApiKeyVerifier` with `add_verifier`."""
        verifiers: list[TokenVerifier] = [StaticTokenVerifier(settings.tokens)]
        if settings.jwt is not None:
            verifiers.append(JwtVerifier.from_settings(settings.jwt))
        certificates = None
        if (
            tls is not None
            and tls.cert_file is not None
            and tls.key_file is not None
            and tls.client_ca_file is not None
            and tls.client_principal != "off"
        ):
            certificates = ClientCertificates(tls.client_principal)
        return cls(settings, verifiers, certificates)

    def add_verifier(self, verifier: TokenVerifier) -> None:
        self._verifiers.append(verifier)

    async def authenticate(
        self,
        authorization: str | None,
        auth_context: Mapping[str, Iterable[bytes]] | None = None,
    ) -> Principal:
        """A bearer token wins when present (a service holding a client certificate may still
        call on behalf of a user); else a verified client certificate; else local mode."""
        if authorization:
            return await self._bearer(authorization)
        if self._client_certificates is not None:
            principal = self._client_certificates.principal(auth_context)
            if principal is not None:
                return principal
        if self._local is not None:
            return self._local
        raise Unauthenticated("missing credentials: send 'authorization: Bearer <token>'")

    async def _bearer(self, authorization: str) -> Principal:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("malformed authorization metadata: expected 'Bearer <token>'")
        for verifier in self._verifiers:
            principal = await verifier.verify(token.strip())
            if principal is not None:
                return principal
        raise Unauthenticated("the bearer token is not valid")
