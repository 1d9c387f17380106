"""Random, mostly bad requests to a real metadata server: never INTERNAL (nor UNKNOWN)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from grpc import aio
from hypothesis import strategies as st

from modelreg.metadata.v1 import lineage_pb2 as ln
from modelreg.metadata.v1 import lineage_service_pb2 as lns
from modelreg.metadata.v1 import model_version_pb2 as mv
from modelreg.metadata.v1 import model_version_service_pb2 as mvs
from modelreg.metadata.v1 import registered_model_pb2 as rm
from modelreg.metadata.v1 import registered_model_service_pb2 as rms
from modelreg.metadata.v1 import run_pb2 as r
from modelreg.metadata.v1 import run_service_pb2 as rs
from modelreg.metadata.v1 import signature_pb2 as sig
from modelreg_metadata.app import SPEC
from service.metadata.kit import Stubs, stubs_for
from testkit import examples, make_settings

T = TypeVar("T")
BAD = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


NAMES = st.one_of(
    st.text(max_size=40),
    st.builds(lambda a, b: f"models/{a}/versions/{b}", st.text(max_size=10), st.text(max_size=6)),
    st.sampled_from(
        ["models/m", "models/m/versions/1", "models/m/versions/0", "experiments/e/runs/r"]
    ),
)
TEXT = st.text(max_size=30)
MAPS = st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=3)
FILTERS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "tags.team = a",
            "version > x",
            "name LIKE",
            "create_time < 1",
            "state IN (READY, x)",
            "signature.inputs.x = FLOAT32",
            "(((",
            "NOT NOT NOT version = 1",
        ]
    ),
)


async def never_internal(call: Awaitable[Any]) -> None:
    code, details = grpc.StatusCode.OK, ""
    try:
        await call
    except aio.AioRpcError as exc:
        code, details = exc.code(), exc.details() or ""
    assert code not in BAD, (code, details)


async def run_all(md: Stubs, calls: list[Callable[[], Awaitable[Any]]]) -> None:
    for make in calls:
        await never_internal(make())


async def test_random_requests_never_internal(start_server: Any) -> None:
    server = await start_server([SPEC], settings=make_settings(relay_enabled=False))
    async with aio.insecure_channel(server.address) as channel:
        md = stubs_for(channel, server)
        await md.models.CreateRegisteredModel(
            rms.CreateRegisteredModelRequest(registered_model_id="m")
        )
        await md.versions.CreateModelVersion(mvs.CreateModelVersionRequest(parent="models/m"))
        calls: list[Any] = []
        for name in examples(NAMES, 60):
            calls.append(
                lambda n=name: md.versions.GetModelVersion(mvs.GetModelVersionRequest(name=n))
            )
            calls.append(lambda n=name: md.runs.GetRun(rs.GetRunRequest(name=n)))
            calls.append(lambda n=name: md.lineage.GetLineage(lns.GetLineageRequest(start=n)))
        for f, o, t, size in examples(st.tuples(FILTERS, TEXT, TEXT, st.integers(-5, 5000)), 80):
            calls.append(
                lambda f=f, o=o, t=t, s=size: md.versions.SearchModelVersions(
                    mvs.SearchModelVersionsRequest(filter=f, order_by=o, page_token=t, page_size=s)
                )
            )
            calls.append(
                lambda f=f, o=o, t=t, s=size: md.runs.SearchRuns(
                    rs.SearchRunsRequest(
                        parent="experiments/-", filter=f, order_by=o, page_token=t, page_size=s
                    )
                )
            )
        for model_id, tags, desc, request_id in examples(st.tuples(TEXT, MAPS, TEXT, TEXT), 40):
            calls.append(
                lambda i=model_id, tg=tags, d=desc, q=request_id: md.models.CreateRegisteredModel(
                    rms.CreateRegisteredModelRequest(
                        registered_model_id=i,
                        registered_model=rm.RegisteredModel(description=d, tags=tg),
                        request_id=q,
                    )
                )
            )
        fields = st.builds(
            lambda n, t, shape: sig.SignatureField(name=n, type=t, shape=shape),
            TEXT,
            st.integers(-3, 20),
            st.lists(st.integers(-5, 2**40), max_size=3),
        )
        for run, tags, inputs, paths in examples(
            st.tuples(NAMES, MAPS, st.lists(fields, max_size=3), st.lists(TEXT, max_size=3)), 40
        ):
            version = mv.ModelVersion(
                name="models/m/versions/1",
                run=run,
                tags=tags,
                signature=sig.ModelSignature(inputs=inputs),
            )
            calls.append(
                lambda v=version: md.versions.CreateModelVersion(
                    mvs.CreateModelVersionRequest(parent="models/m", model_version=v)
                )
            )
            calls.append(
                lambda v=version, p=paths: md.versions.UpdateModelVersion(
                    mvs.UpdateModelVersionRequest(model_version=v, update_mask=FieldMask(paths=p))
                )
            )
        for key, value, step, typ in examples(
            st.tuples(
                TEXT,
                st.floats(allow_nan=True),
                st.integers(-(2**63), 2**63 - 1),
                st.integers(-2, 9),
            ),
            30,
        ):
            calls.append(
                lambda k=key, v=value, s=step: md.runs.LogRunData(
                    rs.LogRunDataRequest(
                        name="experiments/e/runs/r", metrics=[r.Metric(key=k, value=v, step=s)]
                    )
                )
            )
            calls.append(
                lambda k=key, t=typ: md.lineage.CreateLineageEdges(
                    lns.CreateLineageEdgesRequest(
                        nodes=[ln.LineageNode(name=f"deployments/{k}", type=t)],
                        edges=[
                            ln.LineageEdge(
                                source="models/m/versions/1", target=f"deployments/{k}", type=t
                            )
                        ],
                    )
                )
            )
        await run_all(md, calls)
