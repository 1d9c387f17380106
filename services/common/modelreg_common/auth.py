"""Bearer-token authentication: a chain of verifiers turns a token into a Principal.

The governance work adds API-key, JWT and mTLS verifiers on the same `TokenVerifier` hook.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Protocol

from modelreg_common.context import Principal
from modelreg_common.errors import Unauthenticated
from modelreg_common.settings import AuthSettings, TokenEntry


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Principal | None:
        """The caller behind `token`, or None when this verifier does not know it."""


class StaticTokenVerifier:
    """Tokens listed in settings, by SHA-256; the clear token is never stored."""

    def __init__(self, entries: Sequence[TokenEntry]) -> None:
        self._entries = list(entries)

    async def verify(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        found: TokenEntry | None = None
        # Compare with every entry in constant time so timing reveals nothing about near misses.
        for entry in self._entries:
            if hmac.compare_digest(entry.sha256, digest):
                found = entry
        if found is None:
            return None
        return Principal(subject=found.principal, groups=tuple(found.groups), method="token")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    def __init__(self, settings: AuthSettings, verifiers: Sequence[TokenVerifier]) -> None:
        self._local = (
            Principal(subject=settings.local_principal, method="local")
            if settings.mode == "local"
            else None
        )
        self._verifiers = list(verifiers)

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> Authenticator:
        return cls(settings, [StaticTokenVerifier(settings.tokens)])

    def add_verifier(self, verifier: TokenVerifier) -> None:
        self._verifiers.append(verifier)

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            if self._local is not None:
                return self._local
            raise Unauthenticated("missing credentials: send 'authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("malformed authorization metadata: expected 'Bearer <token>'")
        for verifier in self._verifiers:
            principal = await verifier.verify(token.strip())
            if principal is not None:
                return principal
        raise Unauthenticated("the bearer token is not valid")
