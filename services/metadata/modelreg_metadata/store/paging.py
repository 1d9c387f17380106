"""Keyset paging shared by every List/Search of this service: filter + order_by + token ->
one parameterised query, and the next token from the last row."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from modelreg_common.filters import (
    Fields,
    FieldType,
    SortKey,
    SqlParams,
    compile_filter,
    encode_keyset,
    keyset_sql,
    order_by_sql,
    parse_filter,
    parse_order_by,
)
from modelreg_common.page_tokens import PageTokens, fingerprint, page_size
from modelreg_metadata.domain.models import ListQuery


@dataclass(frozen=True)
class Listing:
    """How one resource is listed: its FROM clause, filterable and sortable fields."""

    kind: str
    columns: str  # "v.*"
    source: str  # "model_versions v"
    fields: Fields
    sortable: Mapping[str, tuple[str, FieldType]]
    default_order: str
    tie_breakers: Sequence[tuple[str, str, FieldType]]


async def fetch_page(
    conn: asyncpg.Connection[Any] | asyncpg.Pool[Any],
    tokens: PageTokens,
    listing: Listing,
    query: ListQuery,
    *,
    scope: Sequence[tuple[str, Any]] = (),
    extra_where: Sequence[str] = (),
    readable: tuple[str, Collection[str] | None] | None = None,
) -> tuple[list[asyncpg.Record], str]:
    """Rows of one page and the next page token ("" on the last page). `scope` holds fixed
    conditions (`"v.model_name = {}"`, value) that also bind the token to the parent.

    `readable` is (model id column, the caller's readable model ids or None for all): rows of
    other models are left out inside the query, so page sizes and tokens say nothing about
    them. It is not part of the token's query fingerprint: a token carries only the last row
    the caller was shown, and a grant changing while paging must not void it."""
    size = page_size(query.page_size)
    node = parse_filter(query.filter)
    keys: list[SortKey] = parse_order_by(
        query.order_by,
        listing.sortable,
        default=listing.default_order,
        tie_breakers=listing.tie_breakers,
    )
    query_id = fingerprint(
        listing.kind, [v for _, v in scope], list(extra_where), query.filter, query.order_by
    )
    last = tokens.decode(query.page_token, query_id)
    params = SqlParams()
    where = [template.format(params.add(value)) for template, value in scope]
    where.extend(extra_where)
    if readable is not None and readable[1] is not None:
        where.append(f"{readable[0]} = ANY({params.add(sorted(readable[1]))}::text[])")
    where.append(compile_filter(node, listing.fields, params))
    if last is not None:
        where.append(keyset_sql(keys, last, params))
    key_columns = ", ".join(f"{k.sql} AS _k{i}" for i, k in enumerate(keys))
    limit = params.add(size + 1)
    sql = (
        f"SELECT {listing.columns}, {key_columns} FROM {listing.source} "
        f"WHERE {' AND '.join(where)} "
        f"ORDER BY {order_by_sql(keys)} LIMIT {limit}"
    )
    rows = await conn.fetch(sql, *params.values)
    next_token = ""
    if len(rows) > size:
        rows = rows[:size]
        tail = rows[-1]
        next_token = tokens.encode(
            query_id, encode_keyset([tail[f"_k{i}"] for i in range(len(keys))])
        )
    return list(rows), next_token
