"""Lineage over a multi-hop graph: dataset -> run -> version -> derived version -> deployment."""

from __future__ import annotations

import grpc

from modelreg.metadata.v1 import experiment_service_pb2 as es
from modelreg.metadata.v1 import lineage_pb2 as ln
from modelreg.metadata.v1 import lineage_service_pb2 as lns
from modelreg.metadata.v1 import model_version_pb2 as mv
from modelreg.metadata.v1 import model_version_service_pb2 as mvs
from modelreg.metadata.v1 import registered_model_service_pb2 as rms
from modelreg.metadata.v1 import run_pb2 as r
from modelreg.metadata.v1 import run_service_pb2 as rs
from service.metadata.kit import Stubs, expect_error

INVALID = grpc.StatusCode.INVALID_ARGUMENT
V1, V2 = "models/fraud/versions/1", "models/fraud/versions/2"
RUN = "experiments/e/runs/r1"


async def build_graph(md: Stubs) -> None:
    await md.experiments.CreateExperiment(es.CreateExperimentRequest(experiment_id="e"))
    await md.runs.CreateRun(
        rs.CreateRunRequest(
            parent="experiments/e",
            run_id="r1",
            run=r.Run(inputs=[r.DatasetInput(name="train", digest="sha256:aa")]),
        )
    )
    await md.models.CreateRegisteredModel(
        rms.CreateRegisteredModelRequest(registered_model_id="fraud")
    )
    for _ in range(2):
        await md.versions.CreateModelVersion(
            mvs.CreateModelVersionRequest(
                parent="models/fraud", model_version=mv.ModelVersion(run=RUN)
            )
        )
    # What the lifecycle service sends when it records a deployment.
    await md.lineage.CreateLineageEdges(
        lns.CreateLineageEdgesRequest(
            nodes=[
                ln.LineageNode(
                    name="deployments/prod-eu",
                    type=ln.LINEAGE_NODE_TYPE_DEPLOYMENT,
                    properties={"target": "k8s/eu"},
                )
            ],
            edges=[
                ln.LineageEdge(
                    source=V2, target="deployments/prod-eu", type=ln.LINEAGE_EDGE_TYPE_DEPLOYED_AS
                ),
                ln.LineageEdge(source=V1, target=V2, type=ln.LINEAGE_EDGE_TYPE_DERIVED_FROM),
            ],
        )
    )


async def test_lineage_upstream_downstream_hops_and_filter(md: Stubs) -> None:
    await build_graph(md)
    up = await md.lineage.GetLineage(
        lns.GetLineageRequest(
            start="deployments/prod-eu", direction=ln.LINEAGE_DIRECTION_UPSTREAM, max_hops=10
        )
    )
    names = {n.name for n in up.nodes}
    assert {"deployments/prod-eu", V2, V1, RUN} <= names
    assert any(n.startswith("datasets/") for n in names)
    assert not up.truncated
    one_hop = await md.lineage.GetLineage(
        lns.GetLineageRequest(
            start="deployments/prod-eu", direction=ln.LINEAGE_DIRECTION_UPSTREAM, max_hops=1
        )
    )
    assert {n.name for n in one_hop.nodes} == {"deployments/prod-eu", V2}
    assert [(e.source, e.target) for e in one_hop.edges] == [(V2, "deployments/prod-eu")]
    down = await md.lineage.GetLineage(
        lns.GetLineageRequest(start=RUN, direction=ln.LINEAGE_DIRECTION_DOWNSTREAM, max_hops=5)
    )
    assert {n.name for n in down.nodes} == {RUN, V1, V2, "deployments/prod-eu"}
    runs_only = await md.lineage.GetLineage(
        lns.GetLineageRequest(start=V2, max_hops=5, filter="type = MODEL_VERSION")
    )
    assert {n.name for n in runs_only.nodes} == {V1, V2}
    capped = await md.lineage.GetLineage(lns.GetLineageRequest(start=V2, max_hops=5, max_nodes=2))
    assert len(capped.nodes) == 2
    assert capped.truncated


async def test_lineage_errors(md: Stubs) -> None:
    await build_graph(md)
    await expect_error(
        md.lineage.GetLineage(lns.GetLineageRequest(start="models/fraud/versions/9")),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )
    await expect_error(
        md.lineage.GetLineage(lns.GetLineageRequest(start="bogus")),
        INVALID,
        "INVALID_FIELD",
        "start",
    )
    await expect_error(
        md.lineage.GetLineage(lns.GetLineageRequest(start=V1, filter="type = NOPE")),
        INVALID,
        "INVALID_FIELD",
        "filter",
    )
    await expect_error(
        md.lineage.GetLineage(lns.GetLineageRequest(start=V1, max_hops=-1)),
        INVALID,
        "INVALID_FIELD",
        "max_hops",
    )
    await expect_error(
        md.lineage.CreateLineageEdges(
            lns.CreateLineageEdgesRequest(
                edges=[
                    ln.LineageEdge(
                        source=V1, target="deployments/none", type=ln.LINEAGE_EDGE_TYPE_DEPLOYED_AS
                    )
                ]
            )
        ),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )
    await expect_error(
        md.lineage.CreateLineageEdges(
            lns.CreateLineageEdgesRequest(edges=[ln.LineageEdge(source=V1, target=V2)])
        ),
        INVALID,
        "INVALID_FIELD",
        "edges[0].type",
    )
    await expect_error(
        md.lineage.CreateLineageEdges(
            lns.CreateLineageEdgesRequest(
                nodes=[ln.LineageNode(name="deployments/x", type=ln.LINEAGE_NODE_TYPE_DATASET)]
            )
        ),
        INVALID,
        "INVALID_FIELD",
        "nodes[0].type",
    )
    await expect_error(
        md.lineage.CreateLineageEdges(
            lns.CreateLineageEdgesRequest(
                nodes=[ln.LineageNode(name=V1, type=ln.LINEAGE_NODE_TYPE_MODEL_VERSION)]
            )
        ),
        INVALID,
        "INVALID_FIELD",
        "nodes[0].name",
    )
    await expect_error(
        md.lineage.CreateLineageEdges(lns.CreateLineageEdgesRequest()),
        INVALID,
        "INVALID_FIELD",
        "edges",
    )


async def test_deleting_a_version_removes_its_edges(md: Stubs) -> None:
    await build_graph(md)
    await md.versions.DeleteModelVersion(mvs.DeleteModelVersionRequest(name=V2))
    graph = await md.lineage.GetLineage(lns.GetLineageRequest(start=RUN, max_hops=5))
    assert {n.name for n in graph.nodes} >= {RUN, V1}
    assert V2 not in {n.name for n in graph.nodes}
