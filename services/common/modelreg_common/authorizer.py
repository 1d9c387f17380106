"""Who may do what: a caller's roles, resolved once and cached, checked against the table.

Grants live with the metadata service (`AccessService/ResolveAccess`); every service asks it
through a per-principal cache. The cache is dropped at once in the process that changed a grant
(`invalidate`), and in every other process when the change's event arrives on the event stream
(`AccessEventsWatcher`); `access_cache_seconds` bounds how stale an answer can get if events
stop flowing.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, Protocol

import grpc
from grpc import aio

from modelreg.events.v1 import event_service_pb2, event_service_pb2_grpc
from modelreg.metadata.v1 import access_service_pb2, access_service_pb2_grpc
from modelreg_common.access import FULL_ACCESS, Access, Role, members_of, model_of
from modelreg_common.context import Principal
from modelreg_common.errors import PermissionDenied, Unavailable
from modelreg_common.logs import get_logger
from modelreg_common.permissions import Rule, Scope
from modelreg_common.settings import AuthSettings

log = get_logger("modelreg.access")

# Events after which someone's roles (or an API key) may differ.
INVALIDATING_EVENTS = (
    "iam_policy.updated",
    "api_key.revoked",
    "registered_model.deleted",
    "registered_model.renamed",
)

_MAX_CACHED_PRINCIPALS = 10_000


class AccessSource(Protocol):
    async def resolve(self, subject: str, groups: tuple[str, ...]) -> Access:
        """The roles stored grants give this principal (configuration not applied)."""


class MetadataAccessSource:
    """Asks the metadata service's AccessService, as this service (the internal principal)."""

    def __init__(self, channel: Callable[[], aio.Channel], timeout: float) -> None:
        self._channel = channel
        self._timeout = timeout

    async def resolve(self, subject: str, groups: tuple[str, ...]) -> Access:
        stub = access_service_pb2_grpc.AccessServiceStub(self._channel())
        try:
            reply = await stub.ResolveAccess(
                access_service_pb2.ResolveAccessRequest(subject=subject, groups=groups),
                timeout=self._timeout,
            )
        except grpc.RpcError as exc:
            raise Unavailable(
                f"cannot resolve the caller's roles: {exc.code().name}", backend="metadata"
            ) from exc
        return Access(
            registry_role=Role(reply.registry_role),
            model_roles=MappingProxyType(
                {model_of(m.model) or m.model: Role(m.role) for m in reply.model_roles}
            ),
        )


_Key = tuple[str, tuple[str, ...]]


def _key(principal: Principal) -> _Key:
    return (principal.subject, tuple(sorted(principal.groups)))


def _put_bounded(entries: OrderedDict[_Key, Any], key: _Key, value: Any) -> None:
    """Insert as the newest entry, dropping the oldest beyond the bound."""
    entries[key] = value
    entries.move_to_end(key)
    if len(entries) > _MAX_CACHED_PRINCIPALS:
        entries.popitem(last=False)


class Authorizer:
    def __init__(
        self,
        settings: AuthSettings,
        source: AccessSource,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._source = source
        self._clock = clock
        self._default = Role.parse(settings.default_role)
        self._admins = frozenset(settings.admins)
        self._ttl = settings.access_cache_seconds
        self._cache: OrderedDict[_Key, tuple[float, Access]] = OrderedDict()
        self._pending: dict[_Key, asyncio.Future[Access]] = {}
        self._generation = 0
        self._listeners: list[Callable[[], None]] = []
        # When each principal was last re-resolved because of a denial (bounded like the cache).
        self._refreshed: OrderedDict[_Key, float] = OrderedDict()

    def on_invalidate(self, listener: Callable[[], None]) -> None:
        """Also run `listener` when grants change (the API-key cache clears itself)."""
        self._listeners.append(listener)

    @property
    def generation(self) -> int:
        """Counts grant changes seen by this process (see `invalidate`)."""
        return self._generation

    @property
    def ttl(self) -> float:
        """How long a resolved answer is trusted without news of a change."""
        return self._ttl

    def now(self) -> float:
        return self._clock()

    def invalidate(self) -> None:
        self._generation += 1
        self._cache.clear()
        for listener in self._listeners:
            listener()

    def _configured_admin(self, principal: Principal) -> bool:
        return principal.method == "local" or not self._admins.isdisjoint(
            members_of(principal.subject, principal.groups)
        )

    async def refreshed(self, principal: Principal) -> Access | None:
        """A fresh answer after a denial, in case a grant arrived after we cached (a model
        created a moment ago in another process); at most once a second per principal, so
        denied callers cannot turn every call into a lookup. None when not due."""
        key = _key(principal)
        now = self._clock()
        last = self._refreshed.get(key)
        if principal.method == "internal" or (last is not None and now - last < 1.0):
            return None
        _put_bounded(self._refreshed, key, now)
        self._cache.pop(key, None)
        return await self.access_for(principal)

    async def access_for(self, principal: Principal) -> Access:
        if principal.method == "internal":
            return FULL_ACCESS
        if self._configured_admin(principal):
            return Access(registry_role=Role.ADMIN)
        key = _key(principal)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock():
            self._cache.move_to_end(key)
            return cached[1]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Access] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        generation = self._generation
        try:
            stored = await self._source.resolve(principal.subject, key[1])
            access = Access(
                registry_role=max(stored.registry_role, self._default),
                model_roles=stored.model_roles,
            )
        except BaseException as exc:
            future.set_exception(exc)
            # Nobody may be waiting; the exception is the caller's to see, not the loop's.
            future.exception()
            raise
        finally:
            del self._pending[key]
        future.set_result(access)
        # A grant that changed while we asked may not be in this answer: use it, don't keep it.
        if generation == self._generation:
            _put_bounded(self._cache, key, (self._clock() + self._ttl, access))
        return access


class FollowedAccess:
    """The access of a call that outlives grant changes (an open Subscribe): resolved again
    whenever grants changed since it was last read, and at least every `access_cache_seconds`
    (as cached answers are), so a revoked viewer stops seeing a model's events on the stream
    it already has open, and a new grant shows up on it."""

    def __init__(
        self, authorizer: Authorizer, principal: Principal, access: Access, permission: str
    ) -> None:
        self._authorizer = authorizer
        self._principal = principal
        self._permission = permission
        self._access = access
        self._generation = authorizer.generation
        self._resolved_at = authorizer.now()

    async def current(self) -> Access:
        authorizer = self._authorizer
        generation = authorizer.generation
        if generation != self._generation or authorizer.now() - self._resolved_at >= authorizer.ttl:
            self._access = await authorizer.access_for(self._principal)
            # The generation read before asking: a change meanwhile is seen next time.
            self._generation = generation
            self._resolved_at = authorizer.now()
        return self._access

    async def readable_models(self) -> frozenset[str] | None:
        """As `Access.readable_models`; PERMISSION_DENIED once nothing is readable any more."""
        access = await self.current()
        if not access.may_read_any():
            raise PermissionDenied(
                "the caller may no longer read any model", permission=self._permission
            )
        return access.readable_models()


def field_value(request: Any, path: str) -> str:
    value: Any = request
    for part in path.split("."):
        value = getattr(value, part)
    return value if isinstance(value, str) else ""


def check(rule: Rule, access: Access, request: Any) -> None:
    """Raise PermissionDenied unless `access` satisfies `rule` for this request."""
    if access.internal:
        return
    if rule.scope is Scope.HANDLER:
        return
    if rule.scope is Scope.INTERNAL:
        if access.registry_role >= Role.ADMIN:
            return
        raise PermissionDenied(
            f"{rule.permission} is for the registry's own services",
            permission=rule.permission,
        )
    resource = field_value(request, rule.field) if rule.field and request is not None else ""
    model = model_of(resource)
    if rule.scope is Scope.LISTING or model == "-":
        # Spans models: allowed when something is readable; the rows are narrowed in the store.
        if access.may_read_any():
            return
        raise PermissionDenied(
            f"{rule.permission} needs role viewer on the registry or on a model",
            permission=rule.permission,
        )
    needed = rule.role
    if model is None and rule.registry_role is not None:
        needed = max(needed, rule.registry_role)
    if access.role_on(model) >= needed:
        return
    target = f"models/{model}" if model is not None else "registry"
    raise PermissionDenied(
        f"{rule.permission} needs role {needed.label} on {target}",
        permission=rule.permission,
        resource=target,
    )


class AccessEventsWatcher:
    """Follows the event stream and drops cached grants when one changes elsewhere."""

    def __init__(
        self,
        authorizer: Authorizer,
        channel: Callable[[], aio.Channel],
        *,
        retry_seconds: float = 1.0,
    ) -> None:
        self._authorizer = authorizer
        self._channel = channel
        self._retry = retry_seconds
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="access-events-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        types = ", ".join(f'"{t}"' for t in INVALIDATING_EVENTS)
        request = event_service_pb2.SubscribeRequest(filter=f"type IN ({types})", from_now=True)
        while True:
            stub = event_service_pb2_grpc.EventServiceStub(self._channel())
            try:
                # Whatever changed while we were not listening is covered by this.
                self._authorizer.invalidate()
                async for _ in stub.Subscribe(request):
                    self._authorizer.invalidate()
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    log.info("access.watch_unavailable", reason="no events service reachable")
                    return
                log.warning("access.watch_failed", code=exc.code().name)
            await asyncio.sleep(self._retry)
