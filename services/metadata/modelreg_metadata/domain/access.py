"""API keys, IAM policies and the roles a principal holds: the rules behind AccessService.

Which RPC needs which role is the runtime's permission table; what is checked here is what a
table cannot say: whose key it is, who may create a key for whom, who may ask about whom.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from modelreg_common.access import (
    ALL_USERS,
    REGISTRY,
    Role,
    current_access,
    members_of,
    require,
)
from modelreg_common.context import Principal, current_principal
from modelreg_common.errors import FailedPrecondition, InvalidArgument, NotFound
from modelreg_common.names import parse_model
from modelreg_metadata.domain.common import check_etag
from modelreg_metadata.domain.models import (
    ApiKey,
    ApiKeyDraft,
    Binding,
    Event,
    IamPolicy,
    IdempotencyKey,
    ListQuery,
    Page,
    ResolvedAccess,
)
from modelreg_metadata.domain.ports import AccessChanged, UnitOfWork
from modelreg_metadata.domain.validation import Violations, check_request_id

API_KEY_KIND = "API key"
SECRET_PREFIX = "mrk_"
# Shown in lists to recognise a key: "mrk_" and 8 of its 43 random characters.
SHOWN_PREFIX_CHARS = 12
MAX_SECRET_CHARS = 512
MAX_DISPLAY_NAME_CHARS = 200
MAX_GROUPS = 100
MAX_BINDINGS = 100
MAX_MEMBERS = 1000

# A subject or group: printable, no whitespace; `*` is reserved for `user:*`.
_PRINCIPAL = re.compile(r"^[^\s\x00-\x1f\x7f]{1,256}$")
_API_KEY_NAME = re.compile(r"^apiKeys/([0-9a-f]{32})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _new_id() -> str:
    return uuid.uuid4().hex


def secret_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def check_principal(v: Violations, field: str, value: str) -> None:
    if not _PRINCIPAL.match(value) or value == "*":
        v.add(field, "must be 1-256 printable characters without spaces, and not '*'")


def check_member(v: Violations, field: str, member: str) -> None:
    if member == ALL_USERS:
        return
    kind, sep, who = member.partition(":")
    if not sep or kind not in ("user", "group"):
        v.add(field, f"expected user:{{subject}}, group:{{group}} or user:*, got {member[:100]!r}")
    elif not _PRINCIPAL.match(who) or who == "*":
        v.add(field, f"{kind} name must be 1-256 printable characters without spaces")


def parse_resource(resource: str, field: str = "resource") -> str | None:
    """The model id of `models/{model}`, or None for `registry`."""
    if resource == REGISTRY:
        return None
    if not resource.startswith("models/"):
        raise InvalidArgument(
            field, f"expected registry or models/{{model}}, got {resource[:200]!r}"
        )
    return parse_model(resource, field).model


def parse_api_key(name: str, field: str = "name") -> str:
    match = _API_KEY_NAME.match(name)
    if match is None:
        raise InvalidArgument(field, f"expected apiKeys/{{id}}, got {name[:200]!r}")
    return match[1]


def normalize_bindings(bindings: Sequence[Binding], model: str | None) -> tuple[Binding, ...]:
    """Validated bindings, one per role (weakest first), members sorted and unique; bindings
    without members are dropped."""
    v = Violations()
    if len(bindings) > MAX_BINDINGS:
        v.add("policy.bindings", f"more than {MAX_BINDINGS} bindings")
        v.raise_if_any()
    total = sum(len(b.members) for b in bindings)
    if total > MAX_MEMBERS:
        v.add("policy.bindings", f"more than {MAX_MEMBERS} members in all")
        v.raise_if_any()
    merged: dict[Role, set[str]] = {}
    for i, binding in enumerate(bindings):
        if binding.role is Role.NONE:
            v.add(f"policy.bindings[{i}].role", "must be set to a role other than UNSPECIFIED")
        elif binding.role is Role.ADMIN and model is not None:
            v.add(f"policy.bindings[{i}].role", "admin can be granted only on the registry")
        for j, member in enumerate(binding.members):
            check_member(v, f"policy.bindings[{i}].members[{j}]", member)
        merged.setdefault(binding.role, set()).update(binding.members)
    v.raise_if_any()
    return tuple(
        Binding(role, tuple(sorted(members))) for role, members in sorted(merged.items()) if members
    )


def bindings_data(bindings: Sequence[Binding]) -> list[dict[str, object]]:
    """Bindings as event data: role labels, so consumers need no enum numbers."""
    return [{"role": b.role.label, "members": list(b.members)} for b in bindings]


def is_admin() -> bool:
    return current_access().allows(Role.ADMIN, REGISTRY)


def _acts_as_self(caller: Principal, subject: str, groups: Sequence[str]) -> bool:
    """True when (subject, groups) claims nothing beyond what the caller already is."""
    return subject == caller.subject and set(groups) <= set(caller.groups)


class AccessService:
    def __init__(
        self,
        uow: UnitOfWork,
        on_access_changed: AccessChanged,
        *,
        clock: Callable[[], datetime] = _utcnow,
        new_secret: Callable[[], str] = _new_secret,
        new_id: Callable[[], str] = _new_id,
    ) -> None:
        self._uow = uow
        self._changed = on_access_changed
        self._clock = clock
        self._new_secret = new_secret
        self._new_id = new_id

    # -- API keys ------------------------------------------------------------------------------

    async def create_api_key(
        self, draft: ApiKeyDraft, key: IdempotencyKey | None
    ) -> tuple[ApiKey, str | None]:
        """The key and its secret; on a replay of the same request the secret is None (it
        was shown once)."""
        caller = current_principal()
        v = Violations()
        if len(draft.display_name) > MAX_DISPLAY_NAME_CHARS:
            v.add("api_key.display_name", f"longer than {MAX_DISPLAY_NAME_CHARS} characters")
        elif _CONTROL.search(draft.display_name):
            v.add("api_key.display_name", "contains control characters")
        if draft.principal:
            check_principal(v, "api_key.principal", draft.principal)
        if len(draft.groups) > MAX_GROUPS:
            v.add("api_key.groups", f"more than {MAX_GROUPS} groups")
        else:
            for i, group in enumerate(draft.groups):
                check_principal(v, f"api_key.groups[{i}]", group)
        if draft.expire_time is not None and draft.expire_time <= self._clock():
            v.add("api_key.expire_time", "must be in the future")
        if key is not None:
            check_request_id(v, key.request_id)
        v.raise_if_any()
        principal = draft.principal or caller.subject
        # Groups are part of what a key proves: a key with a group its creator is not in
        # would be a way to grant oneself that group's roles. A key minting keys would
        # outlive its own expiry and revocation, so that too is for admins only.
        if not _acts_as_self(caller, principal, draft.groups) or caller.method == "api_key":
            require(Role.ADMIN, REGISTRY)
        groups = tuple(dict.fromkeys(draft.groups))
        if key is not None:
            # Request ids are per caller: another caller's id must not replay that caller's key.
            scoped = hashlib.sha256(key.digest + b"\0" + caller.subject.encode()).digest()
            key = dataclasses.replace(key, digest=scoped)
        secret = self._new_secret()
        async with self._uow.begin() as tx:
            if key is not None:
                replayed = await tx.replay(key)
                if replayed is not None:
                    existing = await tx.api_keys.get(parse_api_key(replayed))
                    if existing is None:
                        raise NotFound(replayed, kind=API_KEY_KIND)
                    return existing, None
            created = await tx.api_keys.create(
                self._new_id(),
                dataclasses.replace(draft, groups=groups),
                principal,
                secret_digest(secret),
                secret[:SHOWN_PREFIX_CHARS],
                caller.subject,
                key.request_id if key is not None else "",
            )
            # Never the secret, its hash or its prefix: events are readable by many.
            await tx.publish(
                [
                    Event(
                        "api_key.created",
                        created.resource_name,
                        {
                            "principal": created.principal,
                            "groups": list(created.groups),
                            "display_name": created.display_name,
                            "expire_time": (
                                created.expire_time.isoformat() if created.expire_time else ""
                            ),
                        },
                    )
                ]
            )
            if key is not None:
                await tx.remember(key, created.resource_name)
        return created, secret

    def _check_visible(self, name: str, found: ApiKey | None) -> ApiKey:
        # Someone else's key is NOT_FOUND, exactly like a missing one, so ids cannot be probed.
        if found is None or (found.principal != current_principal().subject and not is_admin()):
            raise NotFound(name, kind=API_KEY_KIND)
        return found

    async def get_api_key(self, name: str) -> ApiKey:
        key_id = parse_api_key(name)
        async with self._uow.read() as tx:
            found = await tx.api_keys.get(key_id)
        return self._check_visible(name, found)

    async def list_api_keys(
        self, principal: str, show_revoked: bool, query: ListQuery
    ) -> Page[ApiKey]:
        caller = current_principal()
        if principal:
            v = Violations()
            check_principal(v, "principal", principal)
            v.raise_if_any()
            if principal != caller.subject:
                require(Role.ADMIN, REGISTRY)
        scope: str | None = principal or None
        if scope is None and not is_admin():
            scope = caller.subject
        async with self._uow.read() as tx:
            return await tx.api_keys.search(scope, show_revoked, query)

    async def revoke_api_key(self, name: str) -> ApiKey:
        key_id = parse_api_key(name)
        async with self._uow.begin() as tx:
            current = self._check_visible(name, await tx.api_keys.get(key_id, for_update=True))
            if current.revoke_time is not None:
                raise FailedPrecondition(
                    f"{name} is already revoked", from_state="REVOKED", to_state="REVOKED"
                )
            revoked = await tx.api_keys.revoke(key_id)
            await tx.publish(
                [
                    Event(
                        "api_key.revoked",
                        revoked.resource_name,
                        {"principal": revoked.principal, "display_name": revoked.display_name},
                    )
                ]
            )
        self._changed()
        return revoked

    async def verify_api_key(self, secret: str) -> ApiKey:
        if not secret:
            raise InvalidArgument("secret", "must not be empty")
        if len(secret) > MAX_SECRET_CHARS:
            raise InvalidArgument("secret", f"longer than {MAX_SECRET_CHARS} characters")
        digest = secret_digest(secret)
        async with self._uow.read() as tx:
            found = await tx.api_keys.find_active(digest)
        # The indexed lookup already matched the hash; the constant-time comparison guards
        # against a store that ever matched loosely (collation, truncation).
        if found is None or not hmac.compare_digest(found[1], digest):
            # One answer for unknown, revoked and expired keys: no hint which it was.
            raise NotFound("apiKeys/-", kind=API_KEY_KIND)
        return found[0]

    # -- IAM policies ----------------------------------------------------------------------

    async def get_policy(self, resource: str) -> IamPolicy:
        model = parse_resource(resource)
        async with self._uow.read() as tx:
            if model is not None and await tx.models.get(model) is None:
                raise NotFound(resource, kind="registered model")
            return await tx.policies.get(resource)

    async def set_policy(
        self, resource: str, bindings: Sequence[Binding], etag_value: str
    ) -> IamPolicy:
        model = parse_resource(resource)
        normalized = normalize_bindings(bindings, model)
        async with self._uow.begin() as tx:
            # The model's row lock orders this against a concurrent rename or delete, which
            # move or remove the policy in their own transactions.
            if model is not None and await tx.models.get(model, for_update=True) is None:
                raise NotFound(resource, kind="registered model")
            current = await tx.policies.get(resource, for_update=True)
            check_etag(etag_value, current.revision, resource)
            saved = await tx.policies.replace(resource, normalized, current_principal().subject)
            await tx.publish(
                [
                    Event(
                        "iam_policy.updated",
                        resource,
                        {"bindings": bindings_data(saved.bindings)},
                    )
                ]
            )
        self._changed()
        return saved

    # -- roles ------------------------------------------------------------------------------

    async def resolve(self, subject: str, groups: Sequence[str]) -> ResolvedAccess:
        caller = current_principal()
        if not subject:
            # The caller as authenticated: request groups cannot add to what it proved.
            subject, groups = caller.subject, caller.groups
        else:
            v = Violations()
            check_principal(v, "subject", subject)
            if len(groups) > MAX_GROUPS:
                v.add("groups", f"more than {MAX_GROUPS} groups")
            else:
                for i, group in enumerate(groups):
                    check_principal(v, f"groups[{i}]", group)
            v.raise_if_any()
            if not _acts_as_self(caller, subject, groups):
                require(Role.ADMIN, REGISTRY)
        async with self._uow.read() as tx:
            registry_role, model_roles = await tx.policies.resolve(members_of(subject, groups))
        return ResolvedAccess(registry_role, model_roles, self._clock())
