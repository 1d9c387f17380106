"""Hypothesis over the shared filter grammar: any text either compiles to SQL with only `$n`
parameters, or is INVALID_ARGUMENT on `filter` naming an offset; never another exception."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg_common.errors import InvalidArgument
from modelreg_common.filters import (
    Field,
    Fields,
    FieldType,
    MapField,
    SqlParams,
    filter_sql,
    parse_order_by,
)

FIELDS: Fields = {
    "name": Field("v.name"),
    "version": Field("v.version", FieldType.INTEGER),
    "score": Field("v.score", FieldType.NUMBER),
    "create_time": Field("v.create_time", FieldType.TIMESTAMP),
    "ok": Field("v.ok", FieldType.BOOLEAN),
    "state": Field("v.state", FieldType.ENUM, enum_values={"READY": "READY"}),
    "tags": MapField(
        "EXISTS (SELECT 1 FROM t WHERE t.id = v.id AND t.key = {key} AND {cond})", "t.value"
    ),
}
# The SQL a compiled filter may contain: the whitelist's own SQL, operators, placeholders.
_SAFE = re.compile(r"^[A-Za-z0-9_.$(),:<>=!'\[\]{} ]*$")

TOKENS = st.sampled_from(
    [
        "name",
        "version",
        "score",
        "create_time",
        "ok",
        "state",
        "tags.team",
        "tags.",
        "bogus",
        "=",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "LIKE",
        "ILIKE",
        "IN",
        "NOT",
        "IS",
        "NULL",
        "AND",
        "OR",
        "(",
        ")",
        ",",
        '"x"',
        "'y'",
        "`z`",
        "3",
        "-1",
        "1.5",
        "NaN",
        "true",
        "READY",
        "2025-01-01T00:00:00Z",
        "m-4%",
        '"unterminated',
        "\\",
        ".",
        "*",
        "\x00",
    ]
)
SETTINGS = settings(derandomize=True, deadline=None, max_examples=400, database=None)


def check(text: str) -> None:
    params = SqlParams()
    try:
        sql = filter_sql(text, FIELDS, params)
    except InvalidArgument as exc:
        (violation, *_) = exc.violations
        assert violation.field == "filter"
        return
    assert _SAFE.match(sql), sql


@SETTINGS
@given(st.lists(TOKENS, max_size=14).map(" ".join))
def test_token_soup_compiles_or_is_invalid_argument(text: str) -> None:
    check(text)


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_text_compiles_or_is_invalid_argument(text: str) -> None:
    check(text)


COMPARISON = st.builds(
    lambda f, op, v: f"{f} {op} {v}",
    st.sampled_from(["name", "tags.team", 'tags."a b"']),
    st.sampled_from(["=", "!=", "<", ">=", "LIKE"]),
    st.text(alphabet="abc%_ '\"\\", max_size=8).map(
        lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    ),
)


@SETTINGS
@given(
    st.recursive(
        COMPARISON,
        lambda inner: st.one_of(
            st.builds(lambda a, b: f"({a} AND {b})", inner, inner),
            st.builds(lambda a, b: f"({a} OR {b})", inner, inner),
            st.builds(lambda a: f"NOT {a}", inner),
        ),
        max_leaves=8,
    )
)
def test_well_formed_filters_always_compile(text: str) -> None:
    params = SqlParams()
    sql = filter_sql(text, FIELDS, params)
    assert _SAFE.match(sql), sql
    # Every value went into a parameter, never into the SQL text.
    assert all(isinstance(p, str) for p in params.values)


@SETTINGS
@given(st.text(max_size=60))
def test_order_by_is_parsed_or_invalid(text: str) -> None:
    field = "order_by"
    try:
        parse_order_by(
            text,
            {"name": ("v.name", FieldType.STRING)},
            default="name",
            tie_breakers=[("id", "v.id", FieldType.INTEGER)],
        )
    except InvalidArgument as exc:
        field = exc.violations[0].field
    assert field == "order_by"
