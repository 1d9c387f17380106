"""Roles and what a caller may do: the values every service's authorization works with.

The interceptor resolves the caller's `Access` once per call (cached) and binds it to the call
context; handlers that must check more than the permission table says (an upload session's
owner, a key of another principal) call `require`, and list queries narrow their rows with
`readable_models`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from modelreg_common import context as call_context
from modelreg_common.errors import PermissionDenied


class Role(enum.IntEnum):
    """Weakest first; the numbers are those of `modelreg.metadata.v1.Role`."""

    NONE = 0
    VIEWER = 1
    EDITOR = 2
    APPROVER = 3
    OWNER = 4
    ADMIN = 5

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        return cls[text.strip().upper()]


REGISTRY = "registry"
# The policy member every authenticated caller stands for.
ALL_USERS = "user:*"


def members_of(subject: str, groups: Sequence[str]) -> list[str]:
    """Every policy member that stands for this principal."""
    return [f"user:{subject}", ALL_USERS, *(f"group:{g}" for g in dict.fromkeys(groups))]


def model_of(resource: str) -> str | None:
    """The model id of `models/{model}/...`, or None for anything registry-wide."""
    if not resource.startswith("models/"):
        return None
    model = resource.split("/", 2)[1]
    return model or None


@dataclass(frozen=True)
class Access:
    """Every role one caller holds: on the registry (applies to every model) and per model."""

    registry_role: Role = Role.NONE
    model_roles: Mapping[str, Role] = field(default_factory=lambda: MappingProxyType({}))
    # Internal callers (the services themselves) are not subject to roles.
    internal: bool = False

    def role_on(self, model: str | None) -> Role:
        if self.internal:
            return Role.ADMIN
        if model is None:
            return self.registry_role
        return max(self.registry_role, self.model_roles.get(model, Role.NONE))

    def allows(self, role: Role, resource: str) -> bool:
        return self.role_on(model_of(resource)) >= role

    def readable_models(self) -> frozenset[str] | None:
        """None when every model is readable; else the ids of the readable ones."""
        if self.internal or self.registry_role >= Role.VIEWER:
            return None
        return frozenset(m for m, r in self.model_roles.items() if r >= Role.VIEWER)

    def may_read_any(self) -> bool:
        readable = self.readable_models()
        return readable is None or bool(readable)


FULL_ACCESS = Access(internal=True)


def current_access() -> Access:
    """The access bound to this call; outside an RPC (workers, relays) the system's."""
    call = call_context.current_call()
    if call is None or call.access is None:
        return FULL_ACCESS
    return call.access


def readable_models() -> frozenset[str] | None:
    """Model ids the caller may read, or None for all: list queries filter by this."""
    return current_access().readable_models()


def require(role: Role, resource: str) -> None:
    """Raise PERMISSION_DENIED unless the caller holds `role` on `resource`.

    The same answer whether or not the resource exists, so a denial reveals nothing.
    """
    if not current_access().allows(role, resource):
        raise PermissionDenied(
            f"the caller needs role {role.label} on {resource or REGISTRY}",
            permission=role.label,
            resource=resource or REGISTRY,
        )
