"""The registry's one filter grammar (an AIP-160 subset) and `order_by` (AIP-132), compiled to
parameterised SQL over a whitelist of fields that the caller supplies.

    filter     := or
    or         := and ("OR" and)*
    and        := not ("AND" not)*
    not        := "NOT" not | primary
    primary    := "(" or ")" | comparison
    comparison := field op value
                | field ["NOT"] "IN" "(" value ("," value)* ")"
                | field "IS" ["NOT"] "NULL"
    op         := "=" | "!=" | "<" | "<=" | ">" | ">=" | "LIKE" | "ILIKE"
    field      := word ("." word | "." quoted)*         e.g. tags.team, tags."my key"
    value      := quoted | word                         "a b", 'x', m-42, 3.5, 2025-01-01T00:00:00Z

Keywords are case-insensitive. Values are typed by their field (string, integer, number,
timestamp, boolean, enum); a value that does not fit its field is an error naming its offset.
Nothing from the filter text is ever put into SQL: values become `$n` parameters and fields
are looked up in the whitelist, whose SQL the caller wrote.

Map fields (`tags.<key>`, `signature.inputs.<name>`) compile to an EXISTS sub-query written by
the caller; `tags.k != v` matches items that have `k` with another value, `NOT tags.k = v` also
matches items without `k`, and `tags.k IS NULL` matches items without `k`.

This module knows nothing about any particular service. Errors are `InvalidArgument` on the
request field (`filter` or `order_by`) with a 0-based character offset in the description.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelreg_common.errors import InvalidArgument

MAX_FILTER_LENGTH = 8192
MAX_DEPTH = 32
MAX_TERMS = 100
MAX_IN_VALUES = 1000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class FieldType(enum.Enum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    TIMESTAMP = "timestamp"
    BOOLEAN = "boolean"
    ENUM = "enum"


@dataclass(frozen=True)
class Field:
    """A plain column. `sql` is an SQL expression written by the service (never user text).
    For ENUM fields, `enum_values` maps the accepted literals (matched case-insensitively) to
    the stored value."""

    sql: str
    type: FieldType = FieldType.STRING
    enum_values: Mapping[str, Any] = field(default_factory=dict)
    nullable: bool = False


@dataclass(frozen=True)
class MapField:
    """A keyed family such as `tags.<key>`: `exists` is an SQL template with the placeholders
    `{key}` (the key parameter) and `{cond}` (a condition on `value_sql`), for example
    `EXISTS (SELECT 1 FROM tags t WHERE t.item_id = i.id AND t.key = {key} AND {cond})`."""

    exists: str
    value_sql: str
    type: FieldType = FieldType.STRING
    enum_values: Mapping[str, Any] = field(default_factory=dict)
    max_key_bytes: int = 250


# --- AST ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    text: str
    quoted: bool
    pos: int


@dataclass(frozen=True)
class FieldRef:
    path: tuple[str, ...]
    pos: int

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Comparison:
    field: FieldRef
    op: str  # = != < <= > >= LIKE ILIKE IN NOT_IN IS_NULL IS_NOT_NULL
    values: tuple[Literal, ...]
    pos: int


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Comparison | And | Or | Not


# --- tokenizer ------------------------------------------------------------------------------

_KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE"})
_WORD = re.compile(r"[A-Za-z0-9_\-+*%:/@.]+")
_SYMBOLS = ("!=", "<=", ">=", "=", "<", ">", "(", ")", ",")


@dataclass(frozen=True)
class _Token:
    kind: str  # WORD, STRING, KEYWORD, SYMBOL, END
    text: str
    pos: int


def _error(field_name: str, pos: int, message: str) -> InvalidArgument:
    return InvalidArgument(field_name, f"at offset {pos}: {message}")


def _tokenize(text: str, field_name: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "\"'`":
            start, quote, i = i, ch, i + 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise _error(field_name, start, "unterminated quoted string")
                c = text[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise _error(field_name, i, "dangling backslash")
                    chars.append(text[i + 1])
                    i += 2
                    continue
                if c == quote:
                    i += 1
                    break
                chars.append(c)
                i += 1
            tokens.append(_Token("STRING", "".join(chars), start))
            continue
        symbol = next((s for s in _SYMBOLS if text.startswith(s, i)), None)
        if symbol is not None:
            tokens.append(_Token("SYMBOL", symbol, i))
            i += len(symbol)
            continue
        match = _WORD.match(text, i)
        if match is None:
            raise _error(field_name, i, f"unexpected character {ch!r}")
        word = match.group()
        kind = "KEYWORD" if word.upper() in _KEYWORDS else "WORD"
        tokens.append(_Token(kind, word.upper() if kind == "KEYWORD" else word, i))
        i = match.end()
    tokens.append(_Token("END", "", n))
    return tokens


class _Parser:
    def __init__(self, text: str, field_name: str) -> None:
        self.field_name = field_name
        self.tokens = _tokenize(text, field_name)
        self.i = 0
        self.terms = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def error(self, message: str, token: _Token | None = None) -> InvalidArgument:
        token = token or self.tok
        found = "end of filter" if token.kind == "END" else repr(token.text)
        return _error(self.field_name, token.pos, f"{message}, found {found}")

    def accept(self, kind: str, text: str | None = None) -> _Token | None:
        tok = self.tok
        if tok.kind == kind and (text is None or tok.text == text):
            self.i += 1
            return tok
        return None

    def expect(self, kind: str, text: str, what: str) -> _Token:
        tok = self.accept(kind, text)
        if tok is None:
            raise self.error(f"expected {what}")
        return tok

    def parse(self) -> Node:
        node = self.or_(0)
        if self.tok.kind != "END":
            raise self.error("expected AND, OR or the end of the filter")
        return node

    def or_(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise self.error(f"nested more than {MAX_DEPTH} levels deep")
        items = [self.and_(depth)]
        while self.accept("KEYWORD", "OR"):
            items.append(self.and_(depth))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_(self, depth: int) -> Node:
        items = [self.not_(depth)]
        while self.accept("KEYWORD", "AND"):
            items.append(self.not_(depth))
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_(self, depth: int) -> Node:
        nots = 0
        while self.accept("KEYWORD", "NOT"):
            nots += 1
            if nots > MAX_DEPTH:
                raise self.error(f"more than {MAX_DEPTH} NOTs in a row")
        node = self.primary(depth)
        for _ in range(nots):
            node = Not(node)
        return node

    def primary(self, depth: int) -> Node:
        if self.accept("SYMBOL", "("):
            node = self.or_(depth + 1)
            self.expect("SYMBOL", ")", "')'")
            return node
        return self.comparison()

    def field(self) -> FieldRef:
        tok = self.accept("WORD")
        if tok is None:
            raise self.error("expected a field name")
        text = tok.text
        parts = text.split(".")
        trailing_dot = text.endswith(".")
        if trailing_dot:
            parts = parts[:-1]
            quoted = self.accept("STRING")
            if quoted is None:
                raise self.error("expected a key after '.'")
            parts.append(quoted.text)
        if any(not p for p in parts):
            raise _error(self.field_name, tok.pos, f"malformed field name {text!r}")
        return FieldRef(tuple(parts), tok.pos)

    def value(self) -> Literal:
        tok = self.tok
        if tok.kind in ("WORD", "STRING"):
            self.i += 1
            return Literal(tok.text, tok.kind == "STRING", tok.pos)
        raise self.error("expected a value (quote it if it is a keyword)")

    def comparison(self) -> Node:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise self.error(f"more than {MAX_TERMS} comparisons")
        ref = self.field()
        op_tok = self.tok
        if op_tok.kind == "SYMBOL" and op_tok.text in ("=", "!=", "<", "<=", ">", ">="):
            self.i += 1
            return Comparison(ref, op_tok.text, (self.value(),), op_tok.pos)
        if self.accept("KEYWORD", "LIKE") or self.accept("KEYWORD", "ILIKE"):
            return Comparison(ref, op_tok.text, (self.value(),), op_tok.pos)
        if self.accept("KEYWORD", "IS"):
            negated = self.accept("KEYWORD", "NOT") is not None
            self.expect("KEYWORD", "NULL", "NULL")
            return Comparison(ref, "IS_NOT_NULL" if negated else "IS_NULL", (), op_tok.pos)
        negated = self.accept("KEYWORD", "NOT") is not None
        if self.accept("KEYWORD", "IN"):
            self.expect("SYMBOL", "(", "'(' after IN")
            values = [self.value()]
            while self.accept("SYMBOL", ","):
                values.append(self.value())
                if len(values) > MAX_IN_VALUES:
                    raise self.error(f"more than {MAX_IN_VALUES} values in IN")
            self.expect("SYMBOL", ")", "')' or ','")
            return Comparison(ref, "NOT_IN" if negated else "IN", tuple(values), op_tok.pos)
        if negated:
            raise self.error("expected IN after NOT")
        raise self.error("expected an operator (= != < <= > >= LIKE ILIKE IN IS)")


def parse_filter(text: str, *, field_name: str = "filter") -> Node | None:
    """The AST of `text`, or None for an empty filter."""
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidArgument(field_name, f"longer than {MAX_FILTER_LENGTH} characters")
    if "\x00" in text:
        raise InvalidArgument(field_name, "contains a NUL character")
    if not text.strip():
        return None
    return _Parser(text, field_name).parse()


# --- compilation ----------------------------------------------------------------------------


class SqlParams:
    """Collects query parameters; `add` returns the `$n` placeholder for a value."""

    def __init__(self, initial: Sequence[Any] = ()) -> None:
        self.values: list[Any] = list(initial)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


Fields = Mapping[str, Field | MapField]

_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def parse_timestamp(text: str) -> datetime | None:
    """RFC 3339 (`2025-01-01T00:00:00Z`, with offset or fraction) or a date; naive means UTC."""
    try:
        value = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class _Compiler:
    def __init__(self, fields: Fields, params: SqlParams, field_name: str) -> None:
        self.fields = fields
        self.params = params
        self.field_name = field_name

    def err(self, pos: int, message: str) -> InvalidArgument:
        return _error(self.field_name, pos, message)

    def resolve(self, ref: FieldRef) -> tuple[Field | MapField, str | None]:
        plain = self.fields.get(ref.dotted)
        if isinstance(plain, Field):
            return plain, None
        # The longest map-field prefix wins; the rest of the path (dots included) is the key.
        for cut in range(len(ref.path) - 1, 0, -1):
            candidate = self.fields.get(".".join(ref.path[:cut]))
            if isinstance(candidate, MapField):
                key = ".".join(ref.path[cut:])
                if len(key.encode()) > candidate.max_key_bytes:
                    raise self.err(ref.pos, f"key longer than {candidate.max_key_bytes} bytes")
                return candidate, key
        if isinstance(plain, MapField):
            raise self.err(ref.pos, f"{ref.dotted!r} needs a key: {ref.dotted}.<key>")
        known = ", ".join(
            f"{name}.<key>" if isinstance(f, MapField) else name for name, f in self.fields.items()
        )
        raise self.err(ref.pos, f"unknown field {ref.dotted!r}; fields: {known}")

    def coerce(self, spec: Field | MapField, lit: Literal, op: str) -> Any:
        kind = spec.type
        if op in ("LIKE", "ILIKE"):
            if kind is not FieldType.STRING:
                raise self.err(lit.pos, f"{op} applies to text fields only")
            return lit.text
        if kind is FieldType.STRING:
            return lit.text
        if kind is FieldType.INTEGER:
            try:
                number = int(lit.text)
            except ValueError:
                raise self.err(lit.pos, f"expected an integer, got {lit.text[:50]!r}") from None
            if not _INT64_MIN <= number <= _INT64_MAX:
                raise self.err(lit.pos, "integer out of range")
            return number
        if kind is FieldType.NUMBER:
            try:
                real = float(lit.text)
            except ValueError:
                raise self.err(lit.pos, f"expected a number, got {lit.text[:50]!r}") from None
            if math.isnan(real) and op not in ("=", "!=", "IN", "NOT_IN"):
                raise self.err(lit.pos, "NaN can only be compared with = or !=")
            return real
        if kind is FieldType.TIMESTAMP:
            stamp = parse_timestamp(lit.text)
            if stamp is None:
                raise self.err(lit.pos, f"expected an RFC 3339 timestamp, got {lit.text[:50]!r}")
            return stamp
        if kind is FieldType.BOOLEAN:
            lowered = lit.text.lower()
            if lowered not in ("true", "false"):
                raise self.err(lit.pos, f"expected true or false, got {lit.text[:50]!r}")
            return lowered == "true"
        lookup = {k.upper(): v for k, v in spec.enum_values.items()}
        if lit.text.upper() not in lookup:
            allowed = ", ".join(spec.enum_values)
            raise self.err(lit.pos, f"expected one of {allowed}; got {lit.text[:50]!r}")
        if op not in ("=", "!=", "IN", "NOT_IN"):
            raise self.err(lit.pos, f"{op} does not apply to an enum")
        return lookup[lit.text.upper()]

    def condition(self, spec: Field | MapField, column: str, cmp: Comparison) -> str:
        op = cmp.op
        if op in ("IN", "NOT_IN"):
            values = [self.coerce(spec, v, op) for v in cmp.values]
            placeholder = self.params.add(values)
            array = f"{placeholder}::{_array_type(spec.type)}"
            if op == "IN":
                return f"{column} = ANY({array})"
            return f"NOT ({column} = ANY({array}))"
        (lit,) = cmp.values
        value = self.coerce(spec, lit, op)
        if op in ("LIKE", "ILIKE"):
            return f"{column} {op} {self.params.add(value)}"
        if spec.type is FieldType.NUMBER and isinstance(value, float) and math.isnan(value):
            # PostgreSQL orders NaN above every number and NaN = NaN is true: keep it explicit.
            return f"{column} {_SQL_OPS[op]} 'NaN'::float8"
        return f"{column} {_SQL_OPS[op]} {self.params.add(value)}"

    def compile(self, node: Node) -> str:
        if isinstance(node, And):
            return "(" + " AND ".join(self.compile(i) for i in node.items) + ")"
        if isinstance(node, Or):
            return "(" + " OR ".join(self.compile(i) for i in node.items) + ")"
        if isinstance(node, Not):
            return f"(NOT COALESCE({self.compile(node.item)}, FALSE))"
        spec, key = self.resolve(node.field)
        if isinstance(spec, MapField):
            assert key is not None
            key_param = self.params.add(key)
            if node.op == "IS_NULL":
                return "(NOT " + spec.exists.format(key=key_param, cond="TRUE") + ")"
            if node.op == "IS_NOT_NULL":
                return "(" + spec.exists.format(key=key_param, cond="TRUE") + ")"
            cond = self.condition(spec, spec.value_sql, node)
            return "(" + spec.exists.format(key=key_param, cond=cond) + ")"
        if node.op in ("IS_NULL", "IS_NOT_NULL"):
            if not spec.nullable:
                # The column is never NULL: IS NULL is simply false, IS NOT NULL true.
                return "FALSE" if node.op == "IS_NULL" else "TRUE"
            return f"({spec.sql} IS {'NOT ' if node.op == 'IS_NOT_NULL' else ''}NULL)"
        return "(" + self.condition(spec, spec.sql, node) + ")"


def _array_type(kind: FieldType) -> str:
    return {
        FieldType.INTEGER: "int8[]",
        FieldType.NUMBER: "float8[]",
        FieldType.TIMESTAMP: "timestamptz[]",
        FieldType.BOOLEAN: "bool[]",
    }.get(kind, "text[]")


def compile_filter(
    node: Node | None, fields: Fields, params: SqlParams, *, field_name: str = "filter"
) -> str:
    """An SQL boolean expression for `node` ("TRUE" for no filter); values go to `params`.
    Enum fields' stored values are passed as given in `enum_values` (text arrays for IN)."""
    if node is None:
        return "TRUE"
    return _Compiler(fields, params, field_name).compile(node)


def filter_sql(text: str, fields: Fields, params: SqlParams, *, field_name: str = "filter") -> str:
    """Parse and compile in one step."""
    return compile_filter(
        parse_filter(text, field_name=field_name), fields, params, field_name=field_name
    )


# --- order_by and keyset pagination ---------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    """One ORDER BY term: `sql` is a NOT NULL expression written by the service."""

    name: str
    sql: str
    descending: bool = False
    type: FieldType = FieldType.STRING


_ORDER_TERM = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)(?:\s+(asc|desc))?\s*$", re.IGNORECASE)


def parse_order_by(
    text: str,
    sortable: Mapping[str, tuple[str, FieldType]],
    *,
    default: str,
    tie_breakers: Sequence[tuple[str, str, FieldType]],
    field_name: str = "order_by",
) -> list[SortKey]:
    """`"create_time desc, name"` -> sort keys, followed by `tie_breakers` (name, sql, type:
    a unique key such as the id) in the direction of the last term, so the order is total
    and keyset paging is stable."""
    if len(text) > 1024:
        raise InvalidArgument(field_name, "longer than 1024 characters")
    keys: list[SortKey] = []
    source = text if text.strip() else default
    offset = 0
    for term in source.split(","):
        match = _ORDER_TERM.match(term)
        if match is None:
            raise _error(field_name, offset, f"expected 'field [asc|desc]', got {term.strip()!r}")
        name = match[1]
        if name not in sortable:
            allowed = ", ".join(sortable)
            raise _error(field_name, offset, f"cannot sort by {name!r}; sortable: {allowed}")
        if any(k.name == name for k in keys):
            raise _error(field_name, offset, f"{name!r} appears twice")
        sql, kind = sortable[name]
        keys.append(SortKey(name, sql, (match[2] or "asc").lower() == "desc", kind))
        offset += len(term) + 1
    last_desc = keys[-1].descending
    for name, sql, kind in tie_breakers:
        if all(k.sql != sql for k in keys):
            keys.append(SortKey(name, sql, last_desc, kind))
    return keys


def order_by_sql(keys: Sequence[SortKey]) -> str:
    return ", ".join(f"{k.sql} {'DESC' if k.descending else 'ASC'}" for k in keys)


def _encode_key(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _decode_key(kind: FieldType, value: Any) -> Any:
    if kind is FieldType.TIMESTAMP:
        stamp = parse_timestamp(value) if isinstance(value, str) else None
        if stamp is None:
            raise ValueError("bad timestamp")
        return stamp
    if kind is FieldType.INTEGER:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError("bad integer")
        return value
    if kind is FieldType.NUMBER:
        return float(value)
    if kind is FieldType.BOOLEAN:
        if not isinstance(value, bool):
            raise ValueError("bad boolean")
        return value
    if not isinstance(value, str):
        raise ValueError("bad string")
    return value


def encode_keyset(values: Sequence[Any]) -> list[Any]:
    """JSON-able form of the last row's sort values, for a page token."""
    return [_encode_key(v) for v in values]


def keyset_sql(
    keys: Sequence[SortKey],
    last: Sequence[Any],
    params: SqlParams,
    *,
    field_name: str = "page_token",
) -> str:
    """The condition "after `last`" in the order `keys` (decoded from a page token)."""
    if len(last) != len(keys):
        raise InvalidArgument(field_name, "is not a token this server issued")
    try:
        values = [_decode_key(k.type, v) for k, v in zip(keys, last, strict=True)]
    except (ValueError, TypeError):
        raise InvalidArgument(field_name, "is not a token this server issued") from None
    if all(k.descending == keys[0].descending for k in keys):
        # One row comparison: PostgreSQL can walk a composite index from the position.
        cols = ", ".join(k.sql for k in keys)
        placeholders = ", ".join(params.add(v) for v in values)
        op = "<" if keys[0].descending else ">"
        return f"(({cols}) {op} ({placeholders}))"
    marks = [params.add(v) for v in values]
    clauses = []
    for i, key in enumerate(keys):
        equal = [f"{keys[j].sql} = {marks[j]}" for j in range(i)]
        op = "<" if key.descending else ">"
        clauses.append("(" + " AND ".join([*equal, f"{key.sql} {op} {marks[i]}"]) + ")")
    return "(" + " OR ".join(clauses) + ")"
