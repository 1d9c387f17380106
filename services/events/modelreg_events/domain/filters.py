"""The event filter: a small AIP-160 subset, AND-ed comparisons over whitelisted fields.

    type = "model_version.created" AND subject = "models/fraud/*" AND time >= "2026-01-01T00:00:00Z"

`subject` values ending in `*` match by prefix. Values are quoted strings, or bare words and
numbers. The result is a list of conditions the store compiles to parameterised SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from modelreg_common.errors import InvalidArgument
from modelreg_events.domain.event_types import is_known

Op = Literal["=", "!=", "<", "<=", ">", ">=", "prefix"]

_STRING_FIELDS = {"type", "subject", "actor", "source", "request_id"}
_ORDERED_FIELDS = {"time", "sequence"}
MAX_FILTER_LENGTH = 2000

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op><=|>=|!=|=|<|>)
      | (?P<word>[A-Za-z0-9_.:/@*+\-]+)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Condition:
    field: str
    op: Op
    value: str | int | datetime


@dataclass(frozen=True)
class EventFilter:
    conditions: tuple[Condition, ...] = ()

    @property
    def text_key(self) -> str:
        return repr(self.conditions)


def _tokens(text: str, field: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise InvalidArgument(field, f"unexpected character at offset {pos}: {text[pos]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out.append((kind, value))
        pos = match.end()
    return out


def parse_time(value: str, field: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(field, f"{value!r} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise InvalidArgument(field, f"{value!r} needs a time zone (e.g. Z)")
    return parsed


def parse_filter(text: str, *, field: str = "filter") -> EventFilter:
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidArgument(field, f"is longer than {MAX_FILTER_LENGTH} characters")
    tokens = _tokens(text, field)
    if not tokens:
        return EventFilter()
    conditions: list[Condition] = []
    i = 0
    while True:
        if i + 3 > len(tokens):
            raise InvalidArgument(field, "expected `<field> <operator> <value>`")
        (k1, name), (k2, op), (k3, raw) = tokens[i : i + 3]
        if k1 != "word":
            raise InvalidArgument(field, f"expected a field name, got {name!r}")
        if k2 != "op":
            raise InvalidArgument(field, f"expected an operator after {name!r}, got {op!r}")
        if k3 == "op":
            raise InvalidArgument(field, f"expected a value after {name} {op}")
        conditions.append(_condition(name, op, raw, field))
        i += 3
        if i == len(tokens):
            break
        if tokens[i] != ("word", "AND"):
            raise InvalidArgument(
                field, f"expected AND, got {tokens[i][1]!r} (only AND-ed comparisons are supported)"
            )
        i += 1
    return EventFilter(tuple(conditions))


def _condition(name: str, op: str, raw: str, field: str) -> Condition:
    if name in _STRING_FIELDS:
        if op not in ("=", "!="):
            raise InvalidArgument(field, f"{name} supports only = and !=")
        if name == "type" and not is_known(raw):
            raise InvalidArgument(field, f"unknown event type {raw!r}")
        if name == "subject" and raw.endswith("*"):
            if op != "=" or "*" in raw[:-1]:
                raise InvalidArgument(field, 'a subject prefix is `subject = "prefix*"`')
            return Condition(name, "prefix", raw[:-1])
        if "*" in raw:
            raise InvalidArgument(field, f"{name} does not support wildcards")
        return Condition(name, op, raw)  # type: ignore[arg-type]
    if name == "time":
        return Condition(name, op, parse_time(raw, field))  # type: ignore[arg-type]
    if name == "sequence":
        if not raw.isdigit() or len(raw) > 18:
            raise InvalidArgument(field, f"sequence must be a non-negative integer, got {raw!r}")
        return Condition(name, op, int(raw))  # type: ignore[arg-type]
    known = ", ".join(sorted(_STRING_FIELDS | _ORDERED_FIELDS))
    raise InvalidArgument(field, f"unknown field {name!r}; filterable fields: {known}")
