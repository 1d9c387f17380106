"""The lineage graph: explicit nodes, typed edges, and a bounded recursive walk."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from modelreg_common.filters import Field, FieldType, SqlParams, compile_filter, parse_filter
from modelreg_metadata.domain.models import (
    Direction,
    EdgeType,
    LineageEdge,
    LineageGraph,
    LineageNode,
    NodeType,
)

_NODE_TYPE_SQL = (
    "COALESCE(n.type, CASE WHEN r.node LIKE 'models/%/versions/%' THEN 'MODEL_VERSION'"
    " WHEN r.node LIKE 'experiments/%/runs/%' THEN 'RUN' ELSE 'DATASET' END)"
)

FIELDS = {
    "name": Field("g.name"),
    "display_name": Field("g.display_name"),
    "type": Field(
        "g.type",
        FieldType.ENUM,
        enum_values={t.value: t.value for t in NodeType}
        | {f"LINEAGE_NODE_TYPE_{t.value}": t.value for t in NodeType},
    ),
}


def _node(row: asyncpg.Record) -> LineageNode:
    return LineageNode(
        name=row["name"],
        type=NodeType(row["type"]),
        display_name=row["display_name"],
        properties=dict(row["properties"]),
        create_time=row["create_time"],
    )


def _edge(row: asyncpg.Record) -> LineageEdge:
    return LineageEdge(
        source=row["source"],
        target=row["target"],
        type=EdgeType(row["type"]),
        properties=dict(row["properties"]),
        create_time=row["create_time"],
    )


class Lineage:
    def __init__(self, conn: asyncpg.Connection[Any]) -> None:
        self._conn = conn

    async def upsert_nodes(self, nodes: Sequence[LineageNode]) -> None:
        if not nodes:
            return
        await self._conn.executemany(
            """
            INSERT INTO lineage_nodes (name, type, display_name, properties)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (name) DO UPDATE SET display_name = excluded.display_name,
                properties = lineage_nodes.properties || excluded.properties
            """,
            [(n.name, n.type.value, n.display_name, dict(n.properties)) for n in nodes],
        )

    async def node_types(self, names: Sequence[str]) -> dict[str, str]:
        """The type of each name that is a stored node (rows for explicit nodes; runs and
        versions exist as nodes through their own tables)."""
        models, versions, experiments, run_ids = [], [], [], []
        for name in names:
            parts = name.split("/")
            if len(parts) == 4 and parts[0] == "models" and parts[2] == "versions":
                if parts[3].isdigit() and len(parts[3]) <= 18:
                    models.append(parts[1])
                    versions.append(int(parts[3]))
            elif len(parts) == 4 and parts[0] == "experiments" and parts[2] == "runs":
                experiments.append(parts[1])
                run_ids.append(parts[3])
        rows = await self._conn.fetch(
            """
            SELECT name, type FROM lineage_nodes WHERE name = ANY($1::text[])
            UNION ALL
            SELECT 'models/' || v.model_name || '/versions/' || v.version, 'MODEL_VERSION'
            FROM unnest($2::text[], $3::int8[]) x(model, version)
            JOIN model_versions v ON v.model_name = x.model AND v.version = x.version
            UNION ALL
            SELECT 'experiments/' || r.experiment_name || '/runs/' || r.run_id, 'RUN'
            FROM unnest($4::text[], $5::text[]) x(experiment, run_id)
            JOIN runs r ON r.experiment_name = x.experiment AND r.run_id = x.run_id
            """,
            list(names),
            models,
            versions,
            experiments,
            run_ids,
        )
        return {r["name"]: r["type"] for r in rows}

    async def add_edges(self, edges: Sequence[LineageEdge]) -> list[LineageEdge]:
        if not edges:
            return []
        rows = await self._conn.fetch(
            """
            INSERT INTO lineage_edges (source, target, type, properties)
            SELECT x.source, x.target, x.type, x.properties
            FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
                x(source, target, type, properties)
            ON CONFLICT (source, target, type) DO UPDATE
                SET properties = lineage_edges.properties || excluded.properties
            RETURNING *
            """,
            [e.source for e in edges],
            [e.target for e in edges],
            [e.type.value for e in edges],
            [dict(e.properties) for e in edges],
        )
        return [_edge(r) for r in rows]

    async def walk(
        self, start: str, direction: Direction, max_hops: int, max_nodes: int, filter_text: str
    ) -> LineageGraph:
        node_filter = parse_filter(filter_text)
        params = SqlParams(
            [
                start,
                direction in (Direction.UPSTREAM, Direction.BOTH),
                direction in (Direction.DOWNSTREAM, Direction.BOTH),
                max_hops,
                max_nodes + 1,
            ]
        )
        condition = compile_filter(node_filter, FIELDS, params)
        # Up and down are walked separately (BOTH is not a zig-zag through siblings); UNION
        # on (node, depth) keeps the work bounded by nodes x hops even on graphs with cycles.
        rows = await self._conn.fetch(
            f"""
            WITH RECURSIVE up(node, depth) AS (
                SELECT $1::text, 0 WHERE $2
                UNION
                SELECT e.source, u.depth + 1 FROM up u JOIN lineage_edges e ON e.target = u.node
                WHERE u.depth < $4
            ), down(node, depth) AS (
                SELECT $1::text, 0 WHERE $3
                UNION
                SELECT e.target, d.depth + 1 FROM down d JOIN lineage_edges e
                    ON e.source = d.node
                WHERE d.depth < $4
            ), reach AS (
                SELECT node, min(depth) AS depth FROM (
                    SELECT * FROM up UNION ALL SELECT * FROM down UNION ALL SELECT $1::text, 0
                ) x GROUP BY node
            ), g AS (
                SELECT r.node AS name, r.depth, {_NODE_TYPE_SQL} AS type,
                    COALESCE(n.display_name, '') AS display_name,
                    COALESCE(n.properties, '{{}}'::jsonb) AS properties, n.create_time
                FROM reach r LEFT JOIN lineage_nodes n ON n.name = r.node
            )
            SELECT * FROM g WHERE g.name = $1 OR {condition}
            ORDER BY g.depth, g.name LIMIT $5
            """,
            *params.values,
        )
        truncated = len(rows) > max_nodes
        nodes = [_node(r) for r in rows[:max_nodes]]
        names = [n.name for n in nodes]
        edge_rows = await self._conn.fetch(
            "SELECT * FROM lineage_edges"
            " WHERE source = ANY($1::text[]) AND target = ANY($1::text[])"
            " ORDER BY source, target, type",
            names,
        )
        return LineageGraph(tuple(nodes), tuple(_edge(r) for r in edge_rows), truncated)
