"""Experiments and runs: params immutability, metric history, search, inputs as lineage."""

from __future__ import annotations

import math

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from modelreg.metadata.v1 import experiment_pb2 as ex
from modelreg.metadata.v1 import experiment_service_pb2 as es
from modelreg.metadata.v1 import lineage_pb2 as ln
from modelreg.metadata.v1 import lineage_service_pb2 as lns
from modelreg.metadata.v1 import run_pb2 as r
from modelreg.metadata.v1 import run_service_pb2 as rs
from service.metadata.kit import Stubs, expect_error

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def make_experiment(md: Stubs, name: str = "churn") -> ex.Experiment:
    reply = await md.experiments.CreateExperiment(
        es.CreateExperimentRequest(
            experiment_id=name, experiment=ex.Experiment(description="d", tags={"team": "x"})
        )
    )
    return reply.experiment


async def make_run(md: Stubs, run_id: str = "r1", **kw: object) -> r.Run:
    reply = await md.runs.CreateRun(
        rs.CreateRunRequest(parent="experiments/churn", run_id=run_id, run=r.Run(**kw))  # type: ignore[arg-type]
    )
    return reply.run


async def test_experiment_lifecycle(md: Stubs) -> None:
    created = await make_experiment(md)
    assert created.name == "experiments/churn"
    assert created.state == ex.EXPERIMENT_STATE_ACTIVE
    await expect_error(
        make_experiment(md), grpc.StatusCode.ALREADY_EXISTS, "RESOURCE_ALREADY_EXISTS"
    )
    updated = await md.experiments.UpdateExperiment(
        es.UpdateExperimentRequest(
            experiment=ex.Experiment(name=created.name, description="new", etag=created.etag),
            update_mask=FieldMask(paths=["description"]),
        )
    )
    assert updated.experiment.description == "new"
    await expect_error(
        md.experiments.UpdateExperiment(
            es.UpdateExperimentRequest(
                experiment=ex.Experiment(name=created.name, etag=created.etag),
                update_mask=FieldMask(paths=["description"]),
            )
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    deleted = await md.experiments.DeleteExperiment(es.DeleteExperimentRequest(name=created.name))
    assert deleted.experiment.state == ex.EXPERIMENT_STATE_DELETED
    listed = await md.experiments.ListExperiments(es.ListExperimentsRequest())
    assert list(listed.experiments) == []
    listed = await md.experiments.ListExperiments(es.ListExperimentsRequest(show_deleted=True))
    assert [e.name for e in listed.experiments] == [created.name]
    await expect_error(
        make_run(md), grpc.StatusCode.FAILED_PRECONDITION, "INVALID_STATE_TRANSITION"
    )
    restored = await md.experiments.UndeleteExperiment(
        es.UndeleteExperimentRequest(name=created.name)
    )
    assert restored.experiment.state == ex.EXPERIMENT_STATE_ACTIVE
    found = await md.experiments.ListExperiments(es.ListExperimentsRequest(filter="tags.team = x"))
    assert len(found.experiments) == 1
    await expect_error(
        md.experiments.GetExperiment(es.GetExperimentRequest(name="experiments/none")),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )
    await expect_error(
        md.experiments.CreateExperiment(es.CreateExperimentRequest(experiment_id="bad name")),
        INVALID,
        "INVALID_FIELD",
        "experiment_id",
    )


async def test_run_create_get_update(md: Stubs) -> None:
    await make_experiment(md)
    run = await make_run(
        md,
        display_name="first",
        params={"lr": "0.1"},
        tags={"k": "v"},
        code=r.CodeVersion(repository_url="https://git/x", commit="abc", entry_point="train.py"),
        inputs=[r.DatasetInput(name="train", digest="sha256:1", context="training")],
    )
    assert run.name == "experiments/churn/runs/r1"
    assert run.status == r.RUN_STATUS_RUNNING
    assert run.params == {"lr": "0.1"}
    assert run.inputs[0].lineage_node.startswith("datasets/")
    got = await md.runs.GetRun(rs.GetRunRequest(name=run.name))
    assert got.run == run
    generated = await make_run(md, run_id="")
    assert len(generated.name.rsplit("/", 1)[1]) == 32
    finished = await md.runs.UpdateRun(
        rs.UpdateRunRequest(
            run=r.Run(name=run.name, status=r.RUN_STATUS_FINISHED, etag=run.etag),
            update_mask=FieldMask(paths=["status"]),
        )
    )
    assert finished.run.status == r.RUN_STATUS_FINISHED
    assert finished.run.HasField("end_time")
    await expect_error(make_run(md), grpc.StatusCode.ALREADY_EXISTS, "RESOURCE_ALREADY_EXISTS")
    await expect_error(
        md.runs.UpdateRun(
            rs.UpdateRunRequest(run=r.Run(name=run.name), update_mask=FieldMask(paths=["params"]))
        ),
        INVALID,
        "INVALID_FIELD",
        "update_mask",
    )
    await expect_error(
        md.runs.CreateRun(rs.CreateRunRequest(parent="experiments/none")),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )
    await md.runs.DeleteRun(rs.DeleteRunRequest(name=generated.name))
    await expect_error(
        md.runs.GetRun(rs.GetRunRequest(name=generated.name)),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )


async def test_params_are_immutable(md: Stubs) -> None:
    await make_experiment(md)
    run = await make_run(md, params={"lr": "0.1"})
    same = await md.runs.LogRunData(rs.LogRunDataRequest(name=run.name, params={"lr": "0.1"}))
    assert same.run.params == {"lr": "0.1"}
    await expect_error(
        md.runs.LogRunData(rs.LogRunDataRequest(name=run.name, params={"lr": "0.2"})),
        grpc.StatusCode.FAILED_PRECONDITION,
        "INVALID_STATE_TRANSITION",
    )
    await expect_error(
        md.runs.LogRunData(rs.LogRunDataRequest(name=run.name, params={"big": "x" * 70000})),
        INVALID,
        "INVALID_FIELD",
        "params",
    )


async def test_metrics_batch_history_and_latest(md: Stubs) -> None:
    await make_experiment(md)
    run = await make_run(md)
    points = [r.Metric(key="loss", value=1.0 / (step + 1), step=step) for step in range(2000)]
    points += [r.Metric(key="acc", value=float("nan"), step=0)]
    logged = await md.runs.LogRunData(rs.LogRunDataRequest(name=run.name, metrics=points))
    assert logged.run.latest_metrics["loss"] == pytest.approx(1 / 2000)
    assert math.isnan(logged.run.latest_metrics["acc"])
    # An older step does not replace the latest value.
    await md.runs.LogRunData(
        rs.LogRunDataRequest(name=run.name, metrics=[r.Metric(key="loss", value=9.0, step=5)])
    )
    got = await md.runs.GetRun(rs.GetRunRequest(name=run.name))
    assert got.run.latest_metrics["loss"] == pytest.approx(1 / 2000)
    history: list[r.Metric] = []
    token = ""
    while True:
        page = await md.runs.ListMetricHistory(
            rs.ListMetricHistoryRequest(name=run.name, key="loss", page_size=700, page_token=token)
        )
        history += page.metrics
        token = page.next_page_token
        if not token:
            break
    assert len(history) == 2001
    assert [m.step for m in history[:7]] == [0, 1, 2, 3, 4, 5, 5]
    await expect_error(
        md.runs.LogRunData(
            rs.LogRunDataRequest(name=run.name, metrics=[r.Metric(key="x")] * 10001)
        ),
        INVALID,
        "INVALID_FIELD",
        "metrics",
    )
    await expect_error(
        md.runs.LogRunData(rs.LogRunDataRequest(name=run.name, metrics=[r.Metric(key="")])),
        INVALID,
        "INVALID_FIELD",
        "metrics[0].key",
    )
    await expect_error(
        md.runs.LogRunData(
            rs.LogRunDataRequest(
                name=run.name,
                metrics=[r.Metric(key="t", timestamp=Timestamp(seconds=10**12))],
            )
        ),
        INVALID,
        "INVALID_FIELD",
        "metrics[0].timestamp",
    )


async def test_search_runs_by_params_metrics_tags_status(md: Stubs) -> None:
    await make_experiment(md)
    for i in range(6):
        run = await make_run(
            md, run_id=f"r{i}", params={"lr": f"0.{i}"}, tags={"even": str(i % 2 == 0)}
        )
        await md.runs.LogRunData(
            rs.LogRunDataRequest(name=run.name, metrics=[r.Metric(key="acc", value=i / 10)])
        )
    found = await md.runs.SearchRuns(
        rs.SearchRunsRequest(
            parent="experiments/churn",
            filter='metrics.acc >= 0.3 AND tags.even = "True" AND status = RUNNING',
            order_by="name",
        )
    )
    assert [x.name.rsplit("/", 1)[1] for x in found.runs] == ["r4"]
    everywhere = await md.runs.SearchRuns(
        rs.SearchRunsRequest(parent="experiments/-", filter="params.lr = 0.2")
    )
    assert [x.name.rsplit("/", 1)[1] for x in everywhere.runs] == ["r2"]
    paged = await md.runs.SearchRuns(rs.SearchRunsRequest(parent="experiments/churn", page_size=4))
    assert len(paged.runs) == 4
    assert paged.next_page_token
    await expect_error(
        md.runs.SearchRuns(
            rs.SearchRunsRequest(parent="experiments/churn", filter="metrics.acc > x")
        ),
        INVALID,
        "INVALID_FIELD",
        "filter",
    )
    await expect_error(
        md.runs.SearchRuns(rs.SearchRunsRequest(parent="nope")), INVALID, "INVALID_FIELD", "parent"
    )


async def test_run_inputs_and_code_are_lineage(md: Stubs) -> None:
    await make_experiment(md)
    run = await make_run(
        md,
        code=r.CodeVersion(repository_url="https://git/x", commit="abc"),
        inputs=[r.DatasetInput(name="train", digest="sha256:1", context="training")],
    )
    await md.runs.LogRunData(
        rs.LogRunDataRequest(
            name=run.name, inputs=[r.DatasetInput(name="eval", digest="sha256:2", context="eval")]
        )
    )
    graph = await md.lineage.GetLineage(
        lns.GetLineageRequest(start=run.name, direction=ln.LINEAGE_DIRECTION_UPSTREAM)
    )
    types = sorted(ln.LineageNodeType.Name(n.type) for n in graph.nodes)
    assert types == [
        "LINEAGE_NODE_TYPE_CODE",
        "LINEAGE_NODE_TYPE_DATASET",
        "LINEAGE_NODE_TYPE_DATASET",
        "LINEAGE_NODE_TYPE_RUN",
    ]
    assert all(e.target == run.name and e.type == ln.LINEAGE_EDGE_TYPE_INPUT for e in graph.edges)
    await expect_error(
        md.runs.LogRunData(rs.LogRunDataRequest(name=run.name, inputs=[r.DatasetInput(name="x")])),
        INVALID,
        "INVALID_FIELD",
        "inputs[0].digest",
    )
    tagged = await md.runs.LogRunData(rs.LogRunDataRequest(name=run.name, tags={"a": "1"}))
    assert tagged.run.tags == {"a": "1"}
    untagged = await md.runs.DeleteRunTag(rs.DeleteRunTagRequest(name=run.name, key="a"))
    assert untagged.run.tags == {}
    await expect_error(
        md.runs.DeleteRunTag(rs.DeleteRunTagRequest(name=run.name, key="a")),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )
