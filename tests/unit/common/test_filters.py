"""The shared filter grammar: parsing, error offsets, and compilation to parameterised SQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modelreg_common.errors import InvalidArgument
from modelreg_common.filters import (
    And,
    Comparison,
    Field,
    Fields,
    FieldType,
    MapField,
    Not,
    Or,
    SqlParams,
    compile_filter,
    encode_keyset,
    filter_sql,
    keyset_sql,
    order_by_sql,
    parse_filter,
    parse_order_by,
)

FIELDS: Fields = {
    "name": Field("i.name"),
    "version": Field("i.version", FieldType.INTEGER),
    "score": Field("i.score", FieldType.NUMBER, nullable=True),
    "create_time": Field("i.create_time", FieldType.TIMESTAMP),
    "archived": Field("i.archived", FieldType.BOOLEAN),
    "state": Field("i.state", FieldType.ENUM, enum_values={"READY": "R", "PENDING": "P"}),
    "tags": MapField(
        "EXISTS (SELECT 1 FROM tags t WHERE t.item = i.id AND t.key = {key} AND {cond})",
        "t.value",
    ),
    "signature.inputs": MapField(
        "EXISTS (SELECT 1 FROM sig s WHERE s.item = i.id AND s.name = {key} AND {cond})",
        "s.type",
    ),
}


def compile_text(text: str) -> tuple[str, list[object]]:
    params = SqlParams()
    return filter_sql(text, FIELDS, params), params.values


def error_of(text: str) -> str:
    with pytest.raises(InvalidArgument) as info:
        compile_text(text)
    violation = info.value.violations[0]
    assert violation.field == "filter"
    return violation.description


def test_empty_filter_is_true() -> None:
    assert parse_filter("   ") is None
    assert compile_text("") == ("TRUE", [])


def test_precedence_not_binds_tighter_than_and_than_or() -> None:
    node = parse_filter("a = 1 OR NOT b = 2 AND c = 3")
    assert isinstance(node, Or)
    left, right = node.items
    assert isinstance(left, Comparison)
    assert isinstance(right, And)
    assert isinstance(right.items[0], Not)


def test_parentheses_group() -> None:
    node = parse_filter("(a = 1 OR b = 2) AND c = 3")
    assert isinstance(node, And)
    assert isinstance(node.items[0], Or)


def test_values_become_parameters_never_sql() -> None:
    sql, values = compile_text('name = "x\'; DROP TABLE t; --"')
    assert "DROP" not in sql
    assert sql == "(i.name = $1)"
    assert values == ["x'; DROP TABLE t; --"]


def test_bare_words_and_keywords_are_case_insensitive() -> None:
    sql, values = compile_text("name = m-42 and tags.stage = prod")
    assert values == ["m-42", "stage", "prod"]
    assert sql.startswith("((i.name = $1) AND (EXISTS")


def test_typed_values() -> None:
    _, values = compile_text(
        "version >= 3 AND score < 0.5 AND archived = true "
        "AND create_time > 2025-01-01T00:00:00Z AND state = ready"
    )
    assert values == [3, 0.5, True, datetime(2025, 1, 1, tzinfo=UTC), "R"]


def test_in_not_in_like_is_null() -> None:
    sql, values = compile_text(
        'version IN (1, 2) AND name NOT IN ("a") AND name LIKE "m-4%" AND score IS NULL'
    )
    assert "i.version = ANY($1::int8[])" in sql
    assert "NOT (i.name = ANY($2::text[]))" in sql
    assert "i.name LIKE $3" in sql
    assert "(i.score IS NULL)" in sql
    assert values == [[1, 2], ["a"], "m-4%"]


def test_map_fields_with_dotted_and_quoted_keys() -> None:
    _, values = compile_text('tags.mlflow.source = x AND tags."my key" != y')
    assert values == ["mlflow.source", "x", "my key", "y"]
    sql, values = compile_text("signature.inputs.age = INT64")
    assert "s.name = $1 AND s.type = $2" in sql
    assert values == ["age", "INT64"]


def test_map_field_is_null_means_absent() -> None:
    sql, _ = compile_text("tags.team IS NULL")
    assert sql.startswith("(NOT EXISTS")


def test_not_treats_unknown_as_false() -> None:
    sql, _ = compile_text("NOT score = 1")
    assert sql == "(NOT COALESCE((i.score = $1), FALSE))"


@pytest.mark.parametrize(
    ("text", "offset", "fragment"),
    [
        ("name = ", 7, "expected a value"),
        ("name == x", 6, "expected a value"),
        ("(name = x", 9, "expected ')'"),
        ("name = x AND", 12, "expected a field name"),
        ("bogus = 1", 0, "unknown field 'bogus'"),
        ("version = abc", 10, "expected an integer"),
        ("create_time > yesterday", 14, "RFC 3339"),
        ("state = gone", 8, "expected one of"),
        ("version LIKE 1", 13, "text fields only"),
        ('name = "open', 7, "unterminated"),
        ("name ~ x", 5, "unexpected character"),
        ("tags = x", 0, "needs a key"),
        ("name NOT x", 9, "expected IN"),
        ("name = x y", 9, "expected AND, OR"),
    ],
)
def test_errors_name_their_offset(text: str, offset: int, fragment: str) -> None:
    description = error_of(text)
    assert description.startswith(f"at offset {offset}:"), description
    assert fragment in description


def test_limits() -> None:
    assert "nested" in error_of("(" * 40 + "name = x" + ")" * 40)
    assert "comparisons" in error_of(" OR ".join(["name = x"] * 101))
    assert "longer" in error_of("name = " + "x" * 9000)


def test_compile_accepts_parameters_after_existing_ones() -> None:
    params = SqlParams(["parent"])
    sql = compile_filter(parse_filter("name = x"), FIELDS, params)
    assert sql == "(i.name = $2)"


def test_order_by_adds_tie_breakers_and_keyset_condition() -> None:
    sortable = {"name": ("i.name", FieldType.STRING), "version": ("i.version", FieldType.INTEGER)}
    keys = parse_order_by(
        "name desc", sortable, default="name", tie_breakers=[("id", "i.id", FieldType.INTEGER)]
    )
    assert order_by_sql(keys) == "i.name DESC, i.id DESC"
    params = SqlParams()
    assert keyset_sql(keys, encode_keyset(["m", 5]), params) == "((i.name, i.id) < ($1, $2))"
    mixed = parse_order_by(
        "name, version desc",
        sortable,
        default="name",
        tie_breakers=[("id", "i.id", FieldType.INTEGER)],
    )
    params = SqlParams()
    sql = keyset_sql(mixed, ["m", 2, 9], params)
    assert sql.count(" OR ") == 2
    assert params.values == ["m", 2, 9]


@pytest.mark.parametrize("text", ["bogus", "name sideways", "name, name", "name;drop"])
def test_bad_order_by(text: str) -> None:
    sortable = {"name": ("i.name", FieldType.STRING)}
    with pytest.raises(InvalidArgument) as info:
        parse_order_by(text, sortable, default="name", tie_breakers=[])
    assert info.value.violations[0].field == "order_by"


def test_tampered_keyset_is_invalid() -> None:
    keys = parse_order_by(
        "", {"version": ("i.version", FieldType.INTEGER)}, default="version", tie_breakers=[]
    )
    with pytest.raises(InvalidArgument):
        keyset_sql(keys, ["x"], SqlParams())
    with pytest.raises(InvalidArgument):
        keyset_sql(keys, [1, 2], SqlParams())
