"""The event filter: the registry's one filter grammar (`modelreg_common.filters`, AIP-160
subset) over the event fields `type`, `subject`, `actor`, `source`, `request_id`, `time`,
`sequence` and `peer` (the network peer of the change):

    type = "model_version.created" AND subject = "models/fraud/*"
    type IN ("run.created", "run.updated") OR actor = "alice"
    time >= "2026-01-01T00:00:00Z" AND NOT source = "artifact"
    peer LIKE "ipv4:10.0.%"

Two event-specific rules on top of the grammar: a `subject` value ending in `*` (with `=`)
matches by prefix, and `type` values must be known event types, so a typo is an error rather
than a filter that never matches. The store compiles the tree to SQL over its whitelist.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelreg_common import filters as grammar
from modelreg_common.errors import InvalidArgument
from modelreg_events.domain.event_types import is_known


@dataclass(frozen=True)
class EventFilter:
    node: grammar.Node | None = None


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _check(node: grammar.Node, field: str) -> grammar.Node:
    if isinstance(node, grammar.And):
        return grammar.And(tuple(_check(i, field) for i in node.items))
    if isinstance(node, grammar.Or):
        return grammar.Or(tuple(_check(i, field) for i in node.items))
    if isinstance(node, grammar.Not):
        return grammar.Not(_check(node.item, field))
    name = node.field.dotted
    if name == "type" and node.op in ("=", "!=", "IN", "NOT_IN"):
        for lit in node.values:
            if not is_known(lit.text):
                raise InvalidArgument(
                    field, f"offset {lit.pos}: unknown event type {lit.text[:100]!r}"
                )
    if name == "subject" and node.values and any("*" in v.text for v in node.values):
        lit = node.values[0]
        if node.op != "=" or "*" in lit.text[:-1] or not lit.text.endswith("*"):
            raise InvalidArgument(
                field, f'offset {node.pos}: a subject prefix is `subject = "prefix*"`'
            )
        return grammar.Comparison(
            node.field,
            "LIKE",
            (grammar.Literal(_like_prefix(lit.text[:-1]), True, lit.pos),),
            node.pos,
        )
    return node


def parse_filter(text: str, *, field: str = "filter") -> EventFilter:
    node = grammar.parse_filter(text, field_name=field)
    return EventFilter(_check(node, field) if node is not None else None)
