"""API keys (`mrk_...` bearer tokens), checked by the metadata service that issued them.

Every service asks metadata's `AccessService/VerifyApiKey` and keeps the answer for a short,
bounded time, keyed by the secret's SHA-256 so the clear secret is never kept. Revocation
reaches a process through `clear()` (the runtime calls it on `api_key.revoked` events) well
before the cache time runs out.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc import aio

from modelreg.metadata.v1 import access_service_pb2, access_service_pb2_grpc
from modelreg_common.auth import hash_token
from modelreg_common.context import Principal
from modelreg_common.errors import Unauthenticated, Unavailable
from modelreg_common.logs import get_logger
from modelreg_common.settings import AuthSettings

log = get_logger("modelreg.auth.api_keys")

API_KEY_PREFIX = "mrk_"
# No real key is longer; longer input is refused without asking metadata.
_MAX_SECRET_CHARS = 256
_INVALID = "the API key is not valid"


@dataclass(frozen=True)
class _Entry:
    principal: Principal | None  # None: metadata said the key is not valid
    until: float  # monotonic
    expires_at: float | None  # wall clock (the key's expire_time)


class ApiKeyVerifier:
    """A `TokenVerifier` for API keys. Any other token is left to the next verifier."""

    def __init__(
        self,
        channel_factory: Callable[[], aio.Channel],
        timeout: float,
        *,
        cache_seconds: float = 30.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        # The channel is made on first use: in the all-in-one server the peer is this process,
        # whose port is only known once the server has started.
        self._channel_factory = channel_factory
        self._stub: access_service_pb2_grpc.AccessServiceAsyncStub | None = None
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._max_entries = max(1, max_entries)
        self._clock = clock
        self._wall_clock = wall_clock
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[_Entry]] = {}
        # Bumped by clear(): an answer that was in flight while keys were revoked is not cached.
        self._generation = 0
        self.lookups = 0

    @classmethod
    def from_settings(
        cls, settings: AuthSettings, channel_factory: Callable[[], aio.Channel], timeout: float
    ) -> ApiKeyVerifier:
        return cls(
            channel_factory,
            timeout,
            cache_seconds=settings.api_key_cache_seconds,
            max_entries=settings.api_key_cache_size,
        )

    def clear(self) -> None:
        self._cache.clear()
        self._inflight.clear()
        self._generation += 1

    def __len__(self) -> int:
        return len(self._cache)

    async def verify(self, token: str) -> Principal | None:
        if not token.startswith(API_KEY_PREFIX):
            return None
        if len(token) > _MAX_SECRET_CHARS:
            raise Unauthenticated(_INVALID)
        digest = hash_token(token)
        entry = self._cached(digest)
        if entry is None:
            task = self._inflight.get(digest)
            if task is None:
                # One call to metadata however many requests arrive with a new key at once.
                task = asyncio.ensure_future(self._lookup(token, digest, self._generation))
                self._inflight[digest] = task
                task.add_done_callback(lambda done: self._forget(digest, done))
            entry = await asyncio.shield(task)
        if entry.principal is None or self._expired(entry):
            raise Unauthenticated(_INVALID)
        return entry.principal

    def _forget(self, digest: str, task: asyncio.Task[_Entry]) -> None:
        if self._inflight.get(digest) is task:
            del self._inflight[digest]
        if not task.cancelled():
            # Retrieve the outcome so an error nobody awaited is not reported as lost.
            task.exception()

    def _expired(self, entry: _Entry) -> bool:
        return entry.expires_at is not None and entry.expires_at <= self._wall_clock()

    def _cached(self, digest: str) -> _Entry | None:
        entry = self._cache.get(digest)
        if entry is None:
            return None
        if entry.until <= self._clock() or self._expired(entry):
            del self._cache[digest]
            return None
        self._cache.move_to_end(digest)
        return entry

    @property
    def _stubs(self) -> access_service_pb2_grpc.AccessServiceAsyncStub:
        if self._stub is None:
            self._stub = access_service_pb2_grpc.AccessServiceStub(self._channel_factory())
        return self._stub

    async def _lookup(self, secret: str, digest: str, generation: int) -> _Entry:
        self.lookups += 1
        try:
            response = await self._stubs.VerifyApiKey(
                access_service_pb2.VerifyApiKeyRequest(secret=secret), timeout=self._timeout
            )
        except aio.AioRpcError as err:
            code = err.code()
            if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                # Unknown, revoked and expired keys never become valid again: remember that
                # too, so a flood of bad keys does not become a flood of metadata calls.
                entry = _Entry(None, self._clock() + self._cache_seconds, None)
                self._remember(digest, entry, generation)
                return entry
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                # Our own peer credentials were refused: a deployment mistake, not the caller's.
                log.error("api_key.verify_refused", code=code.name, details=err.details())
            raise Unavailable(
                f"cannot verify the API key: the metadata service answered {code.name}",
                backend="metadata",
            ) from None
        api_key = response.api_key
        if api_key.HasField("revoke_time") or not api_key.principal:
            entry = _Entry(None, self._clock() + self._cache_seconds, None)
            self._remember(digest, entry, generation)
            return entry
        expires_at = (
            api_key.expire_time.ToMicroseconds() / 1e6 if api_key.HasField("expire_time") else None
        )
        entry = _Entry(
            Principal(subject=api_key.principal, groups=tuple(api_key.groups), method="api_key"),
            self._clock() + self._cache_seconds,
            expires_at,
        )
        self._remember(digest, entry, generation)
        return entry

    def _remember(self, digest: str, entry: _Entry, generation: int) -> None:
        if generation != self._generation or self._cache_seconds <= 0:
            return
        self._cache[digest] = entry
        self._cache.move_to_end(digest)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
