"""Alias names and references. Model and version names come from modelreg_common.names."""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelreg_common.errors import InvalidArgument
from modelreg_common.names import ID_PATTERN, check_id

_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,127}$")
# "latest" and "v<digits>" already mean something in model URIs (models:/m/latest, .../v3):
# an alias with such a name would be ambiguous.
_RESERVED = re.compile(r"^(latest|v[0-9]+)$", re.IGNORECASE)
_ALIAS_NAME = re.compile(rf"^models/({ID_PATTERN})/aliases/([^/]*)$")
_REFERENCE = re.compile(rf"^(?:models/|models:/)({ID_PATTERN})@([^/@]*)$")
_REQUEST_NAME = re.compile(rf"^models/({ID_PATTERN})/transitionRequests/([0-9a-f]{{32}})$")
_POLICY_MODEL = re.compile(rf"^models/({ID_PATTERN})/policy$")
REGISTRY_POLICY = "policies/registry"


def check_alias(alias: str, field: str, *, allow_wildcard: bool = False) -> str:
    if allow_wildcard and alias == "*":
        return alias
    if not _ALIAS.match(alias):
        raise InvalidArgument(
            field,
            "an alias is a letter followed by up to 127 letters, digits, '_' or '-'; "
            f"got {alias[:200]!r}",
        )
    if _RESERVED.match(alias):
        raise InvalidArgument(
            field, f"{alias!r} is reserved ('latest' and 'v<digits>' name versions, not aliases)"
        )
    return alias


@dataclass(frozen=True)
class AliasName:
    model: str
    alias: str

    def __str__(self) -> str:
        return f"models/{self.model}/aliases/{self.alias}"


def parse_alias_name(name: str, field: str = "name") -> AliasName:
    match = _ALIAS_NAME.match(name)
    if match is None:
        raise InvalidArgument(
            field, f"expected models/{{model}}/aliases/{{alias}}, got {name[:200]!r}"
        )
    return AliasName(match[1], check_alias(match[2], field))


def parse_reference(reference: str, field: str = "name") -> AliasName:
    """`models/fraud@champion` or the URI form `models:/fraud@champion`."""
    match = _REFERENCE.match(reference)
    if match is None:
        raise InvalidArgument(
            field,
            "expected models/{model}@{alias} or models:/{model}@{alias}, "
            f"got {reference[:200]!r}",
        )
    return AliasName(match[1], check_alias(match[2], field))


@dataclass(frozen=True)
class RequestName:
    model: str
    id: str

    def __str__(self) -> str:
        return f"models/{self.model}/transitionRequests/{self.id}"


def parse_request_name(name: str, field: str = "name") -> RequestName:
    match = _REQUEST_NAME.match(name)
    if match is None:
        raise InvalidArgument(
            field, f"expected models/{{model}}/transitionRequests/{{id}}, got {name[:200]!r}"
        )
    return RequestName(match[1], match[2])


def parse_policy_name(name: str, field: str = "name") -> str:
    """The policy's scope: a model id, or "" for the registry-wide policy."""
    if name == REGISTRY_POLICY:
        return ""
    match = _POLICY_MODEL.match(name)
    if match is None:
        raise InvalidArgument(
            field, f"expected models/{{model}}/policy or {REGISTRY_POLICY}, got {name[:200]!r}"
        )
    return match[1]


def policy_name(scope: str) -> str:
    return f"models/{scope}/policy" if scope else REGISTRY_POLICY


def check_environment(value: str, field: str) -> str:
    return check_id(value, field)


def check_text(value: str, field: str, limit: int = 10_000) -> str:
    if len(value) > limit:
        raise InvalidArgument(field, f"must be at most {limit} characters")
    return value
