"""Filtered, ordered, keyset-paged search, and gapless numbering under 64 concurrent writers."""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import pytest
from grpc import aio

from modelreg.metadata.v1 import model_version_pb2 as mv
from modelreg.metadata.v1 import model_version_service_pb2 as mvs
from modelreg.metadata.v1 import model_version_service_pb2_grpc as mvs_grpc
from modelreg.metadata.v1 import registered_model_pb2 as rm
from modelreg.metadata.v1 import registered_model_service_pb2 as rms
from modelreg.metadata.v1 import signature_pb2 as sig
from service.metadata.kit import Stubs, expect_error

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def populate(md: Stubs, models: int = 4, versions: int = 6) -> None:
    for m in range(models):
        await md.models.CreateRegisteredModel(
            rms.CreateRegisteredModelRequest(
                registered_model_id=f"m-{m}",
                registered_model=rm.RegisteredModel(tags={"team": "a" if m % 2 else "b"}),
            )
        )
        for j in range(1, versions + 1):
            await md.versions.CreateModelVersion(
                mvs.CreateModelVersionRequest(
                    parent=f"models/m-{m}",
                    model_version=mv.ModelVersion(
                        tags={
                            "team": "a" if (m + j) % 2 == 0 else "b",
                            "stage": ["dev", "staging", "prod"][j % 3],
                        },
                        signature=sig.ModelSignature(
                            inputs=[
                                sig.SignatureField(
                                    name="x",
                                    type=sig.DATA_TYPE_FLOAT32 if j % 2 else sig.DATA_TYPE_INT64,
                                )
                            ]
                        ),
                    ),
                )
            )


async def scan(md: Stubs, filter_text: str, order_by: str = "", size: int = 5) -> list[str]:
    names: list[str] = []
    token = ""
    while True:
        page = await md.versions.SearchModelVersions(
            mvs.SearchModelVersionsRequest(
                filter=filter_text, order_by=order_by, page_size=size, page_token=token
            )
        )
        assert len(page.model_versions) <= size
        names += [v.name for v in page.model_versions]
        token = page.next_page_token
        if not token:
            return names


async def test_search_filters_and_pages_without_duplicates(md: Stubs) -> None:
    await populate(md)
    everything = await scan(md, "")
    assert len(everything) == len(set(everything)) == 24
    assert everything[:2] == ["models/m-0/versions/1", "models/m-0/versions/2"]
    team_a = await scan(md, "tags.team = a")
    assert len(team_a) == 12
    exact = await scan(md, 'name = "m-2" AND tags.stage = prod')
    assert exact == ["models/m-2/versions/2", "models/m-2/versions/5"]
    prefix = await scan(md, 'name LIKE "m-1%" AND (version <= 2 OR version = 6)')
    assert prefix == ["models/m-1/versions/1", "models/m-1/versions/2", "models/m-1/versions/6"]
    negated = await scan(md, "NOT tags.stage IN (dev, staging) AND name = m-0")
    assert negated == ["models/m-0/versions/2", "models/m-0/versions/5"]
    by_sig = await scan(md, "signature.inputs.x = INT64 AND name = m-3")
    assert by_sig == [f"models/m-3/versions/{j}" for j in (2, 4, 6)]
    states = await scan(md, "status = PENDING_REGISTRATION AND name = m-0 AND run_id = ''")
    assert len(states) == 6
    assert await scan(md, "tags.nothing IS NOT NULL") == []


async def test_search_order_by_with_tie_breaks(md: Stubs) -> None:
    await populate(md, models=3, versions=3)
    newest_first = await scan(md, "", "version desc", size=2)
    # Ties break by the unique key in the direction of the last term.
    assert newest_first[:3] == [
        "models/m-2/versions/3",
        "models/m-1/versions/3",
        "models/m-0/versions/3",
    ]
    assert len(newest_first) == 9
    by_time = await scan(md, "", "create_time desc", size=4)
    assert by_time[0] == "models/m-2/versions/3"
    assert len(set(by_time)) == 9


async def test_paging_is_stable_under_concurrent_inserts(md: Stubs) -> None:
    await populate(md, models=2, versions=5)
    first = await md.versions.SearchModelVersions(mvs.SearchModelVersionsRequest(page_size=3))
    # A version created before the cursor position does not shift later pages.
    await md.versions.CreateModelVersion(mvs.CreateModelVersionRequest(parent="models/m-0"))
    rest: list[str] = []
    token = first.next_page_token
    while token:
        page = await md.versions.SearchModelVersions(
            mvs.SearchModelVersionsRequest(page_size=3, page_token=token)
        )
        rest += [v.name for v in page.model_versions]
        token = page.next_page_token
    seen = [v.name for v in first.model_versions] + rest
    assert len(seen) == len(set(seen))
    assert "models/m-1/versions/5" in seen


async def test_page_token_bound_to_query_and_tamper_proof(md: Stubs) -> None:
    await populate(md, models=1, versions=4)
    page = await md.versions.SearchModelVersions(
        mvs.SearchModelVersionsRequest(filter="version > 1", page_size=1)
    )
    await expect_error(
        md.versions.SearchModelVersions(
            mvs.SearchModelVersionsRequest(
                filter="version > 2", page_size=1, page_token=page.next_page_token
            )
        ),
        INVALID,
        "INVALID_FIELD",
        "page_token",
    )
    await expect_error(
        md.versions.SearchModelVersions(
            mvs.SearchModelVersionsRequest(page_token=page.next_page_token[:-2] + "xx")
        ),
        INVALID,
        "INVALID_FIELD",
        "page_token",
    )
    await expect_error(
        md.versions.ListModelVersions(
            mvs.ListModelVersionsRequest(parent="models/m-0", page_size=-1)
        ),
        INVALID,
        "INVALID_FIELD",
        "page_size",
    )


@pytest.mark.parametrize(
    ("filter_text", "order_by", "field", "fragment"),
    [
        ("name = ", "", "filter", "at offset 7"),
        ("bogus = 1", "", "filter", "unknown field"),
        ("version = x", "", "filter", "integer"),
        ("create_time > soon", "", "filter", "RFC 3339"),
        ("", "tags.x", "order_by", "cannot sort"),
        ("", "version sideways", "order_by", "expected"),
    ],
)
async def test_bad_filter_or_order_names_position(
    md: Stubs, filter_text: str, order_by: str, field: str, fragment: str
) -> None:
    _, violations = await expect_error(
        md.versions.SearchModelVersions(
            mvs.SearchModelVersionsRequest(filter=filter_text, order_by=order_by)
        ),
        INVALID,
        "INVALID_FIELD",
        field,
    )
    assert fragment in violations[0][1]


async def test_search_registered_models(md: Stubs) -> None:
    await populate(md, models=4, versions=1)
    found = await md.models.SearchRegisteredModels(
        rms.SearchRegisteredModelsRequest(filter="tags.team = a", order_by="name desc")
    )
    assert [m.name for m in found.registered_models] == ["models/m-3", "models/m-1"]
    listed = await md.models.ListRegisteredModels(
        rms.ListRegisteredModelsRequest(page_size=3, filter="latest_version = 1")
    )
    assert len(listed.registered_models) == 3
    assert listed.next_page_token
    await expect_error(
        md.models.SearchRegisteredModels(rms.SearchRegisteredModelsRequest(filter="(")),
        INVALID,
        "INVALID_FIELD",
        "filter",
    )


async def test_64_concurrent_writers_get_gapless_unique_numbers(md: Stubs) -> None:
    await md.models.CreateRegisteredModel(
        rms.CreateRegisteredModelRequest(registered_model_id="hot")
    )
    per_writer = 8
    writers = 64

    async def writer(channel: aio.Channel) -> list[int]:
        stub = mvs_grpc.ModelVersionServiceStub(channel)
        numbers = []
        for i in range(per_writer):
            reply = await stub.CreateModelVersion(
                mvs.CreateModelVersionRequest(
                    parent="models/hot", model_version=mv.ModelVersion(tags={"i": str(i)})
                )
            )
            numbers.append(reply.model_version.version)
        return numbers

    channels = [aio.insecure_channel(md.server.address) for _ in range(8)]
    try:
        async with asyncio.timeout(60):
            results = await asyncio.gather(
                *(writer(channels[w % len(channels)]) for w in range(writers))
            )
    finally:
        for channel in channels:
            await channel.close()
    returned = [n for numbers in results for n in numbers]
    total = writers * per_writer
    assert Counter(returned).most_common(1)[0][1] == 1
    assert sorted(returned) == list(range(1, total + 1))
    stored: list[int] = []
    token = ""
    while True:
        page = await md.versions.ListModelVersions(
            mvs.ListModelVersionsRequest(parent="models/hot", page_size=200, page_token=token)
        )
        stored += [v.version for v in page.model_versions]
        token = page.next_page_token
        if not token:
            break
    assert stored == list(range(1, total + 1))
    model = await md.models.GetRegisteredModel(rms.GetRegisteredModelRequest(name="models/hot"))
    assert model.registered_model.latest_version == total
