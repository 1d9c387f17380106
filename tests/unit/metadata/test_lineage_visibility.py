"""A lineage walk from a readable version shows no other model the caller may not read, even
when a shared run or dataset leads there."""

from __future__ import annotations

from modelreg_metadata.domain.lineage import _readable_part
from modelreg_metadata.domain.models import (
    EdgeType,
    LineageEdge,
    LineageGraph,
    LineageNode,
    NodeType,
)

RUN = "experiments/e/runs/r"
MINE = "models/mine/versions/1"
THEIRS = "models/theirs/versions/4"
GRAPH = LineageGraph(
    nodes=(
        LineageNode("datasets/transactions", NodeType.DATASET),
        LineageNode(RUN, NodeType.RUN),
        LineageNode(MINE, NodeType.MODEL_VERSION),
        LineageNode(THEIRS, NodeType.MODEL_VERSION),
    ),
    edges=(
        LineageEdge("datasets/transactions", RUN, EdgeType.INPUT),
        LineageEdge(RUN, MINE, EdgeType.OUTPUT),
        LineageEdge(RUN, THEIRS, EdgeType.OUTPUT),
    ),
    truncated=False,
)


def test_unreadable_models_and_their_edges_are_left_out() -> None:
    seen = _readable_part(GRAPH, frozenset({"mine"}))
    assert [n.name for n in seen.nodes] == ["datasets/transactions", RUN, MINE]
    assert [(e.source, e.target) for e in seen.edges] == [
        ("datasets/transactions", RUN),
        (RUN, MINE),
    ]


def test_a_reader_of_every_model_sees_the_whole_graph() -> None:
    assert _readable_part(GRAPH, None) is GRAPH
    assert _readable_part(GRAPH, frozenset({"mine", "theirs"})) is GRAPH
