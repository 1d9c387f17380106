"""The lineage graph: walks and explicit records (deployments, extra edges)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from modelreg_common.access import model_of, readable_models
from modelreg_common.errors import InvalidArgument, NotFound
from modelreg_common.names import ID_PATTERN, parse_model_version, parse_run
from modelreg_metadata.domain.models import (
    Direction,
    Event,
    LineageEdge,
    LineageGraph,
    LineageNode,
    NodeType,
)
from modelreg_metadata.domain.ports import UnitOfWork
from modelreg_metadata.domain.validation import Violations, check_tags, check_text

DEFAULT_HOPS, MAX_HOPS = 3, 20
DEFAULT_NODES, MAX_NODES = 500, 5000
MAX_RECORDS = 1000
# Explicit nodes: the name's collection must match the node type.
_EXPLICIT = {
    NodeType.DATASET: "datasets",
    NodeType.CODE: "code",
    NodeType.DEPLOYMENT: "deployments",
}
_EXPLICIT_NAME = re.compile(rf"^(datasets|code|deployments)/({ID_PATTERN})$")


def node_type_of(name: str, field: str) -> NodeType:
    """The type a node name implies; malformed names are INVALID_ARGUMENT on `field`."""
    if name.startswith("models/"):
        parse_model_version(name, field)
        return NodeType.MODEL_VERSION
    if name.startswith("experiments/"):
        parse_run(name, field)
        return NodeType.RUN
    match = _EXPLICIT_NAME.match(name)
    if match is None:
        raise InvalidArgument(
            field,
            "expected models/{m}/versions/{n}, experiments/{e}/runs/{r}, datasets/{id}, "
            f"code/{{id}} or deployments/{{id}}; got {name[:200]!r}",
        )
    return {v: k for k, v in _EXPLICIT.items()}[match[1]]


class LineageService:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def get(
        self,
        start: str,
        direction: Direction,
        max_hops: int,
        filter_text: str,
        max_nodes: int,
    ) -> LineageGraph:
        node_type_of(start, "start")
        if max_hops < 0:
            raise InvalidArgument("max_hops", "must not be negative")
        if max_nodes < 0:
            raise InvalidArgument("max_nodes", "must not be negative")
        hops = min(max_hops or DEFAULT_HOPS, MAX_HOPS)
        cap = min(max_nodes or DEFAULT_NODES, MAX_NODES)
        async with self._uow.read() as tx:
            if not await tx.lineage.node_types([start]):
                raise NotFound(start, kind="lineage node")
            graph = await tx.lineage.walk(start, direction, hops, cap, filter_text)
        return _readable_part(graph, readable_models())

    async def record(
        self, nodes: Sequence[LineageNode], edges: Sequence[LineageEdge]
    ) -> tuple[list[LineageNode], list[LineageEdge]]:
        v = Violations()
        if len(nodes) > MAX_RECORDS:
            v.add("nodes", f"more than {MAX_RECORDS} nodes")
        if len(edges) > MAX_RECORDS:
            v.add("edges", f"more than {MAX_RECORDS} edges")
        if not nodes and not edges:
            v.add("edges", "give at least one node or edge")
        v.raise_if_any()
        for i, node in enumerate(nodes):
            implied = node_type_of(node.name, f"nodes[{i}].name")
            if implied not in _EXPLICIT:
                v.add(
                    f"nodes[{i}].name",
                    "runs and model versions are nodes already; record only datasets, code "
                    "and deployments",
                )
            elif node.type is not implied:
                v.add(f"nodes[{i}].type", f"must be {implied.value} for {node.name[:100]!r}")
            check_text(v, f"nodes[{i}].display_name", node.display_name, 250)
            check_tags(v, f"nodes[{i}].properties", node.properties)
        for i, edge in enumerate(edges):
            node_type_of(edge.source, f"edges[{i}].source")
            node_type_of(edge.target, f"edges[{i}].target")
            if edge.source == edge.target:
                v.add(f"edges[{i}].target", "an edge cannot point at its own source")
            check_tags(v, f"edges[{i}].properties", edge.properties)
        v.raise_if_any()
        given = {n.name for n in nodes}
        async with self._uow.begin() as tx:
            await tx.lineage.upsert_nodes(nodes)
            endpoints = sorted({e.source for e in edges} | {e.target for e in edges})
            known = await tx.lineage.node_types([n for n in endpoints if n not in given])
            for i, edge in enumerate(edges):
                for end, field in ((edge.source, "source"), (edge.target, "target")):
                    if end not in given and end not in known:
                        raise NotFound(end, kind=f"lineage node (edges[{i}].{field})")
            saved = await tx.lineage.add_edges(edges)
            events = [
                Event(
                    "lineage_node.recorded",
                    n.name,
                    {"type": n.type.value, "properties": dict(n.properties)},
                )
                for n in nodes
            ]
            events += [
                Event(
                    "lineage_edge.created",
                    e.target,
                    {"source": e.source, "target": e.target, "type": e.type.value},
                )
                for e in saved
            ]
            await tx.publish(events)
            return list(nodes), saved


def _readable_part(graph: LineageGraph, readable: frozenset[str] | None) -> LineageGraph:
    """The graph without other models' versions and deployments the caller may not read (a
    walk from a readable version can reach them through a shared run or dataset)."""
    if readable is None:
        return graph
    hidden = {
        node.name
        for node in graph.nodes
        if (model := model_of(node.name)) is not None and model not in readable
    }
    if not hidden:
        return graph
    return replace(
        graph,
        nodes=tuple(n for n in graph.nodes if n.name not in hidden),
        edges=tuple(e for e in graph.edges if e.source not in hidden and e.target not in hidden),
    )
