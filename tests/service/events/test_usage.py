"""UsageService over a real channel and PostgreSQL: RecordUsage adds counts once per batch id,
ListUsage pages one model's counts newest hour first and filters them; bad input names its
field."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

import grpc
import pytest
from google.protobuf import timestamp_pb2

from modelreg.events.v1 import usage_pb2, usage_service_pb2, usage_service_pb2_grpc
from modelreg_events.app import spec_with
from modelreg_events.settings import EventsSettings
from testkit import error_details, make_settings

SPEC = spec_with(EventsSettings(allow_private_targets=True, poll_interval_seconds=0.5))
DOWNLOAD = usage_pb2.USAGE_KIND_DOWNLOAD
RESOLVE = usage_pb2.USAGE_KIND_ALIAS_RESOLUTION
H0 = datetime(2026, 11, 1, 10, tzinfo=UTC)

Stub: TypeAlias = "usage_service_pb2_grpc.UsageServiceAsyncStub"


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def rec(
    version: str = "models/fraud/versions/1",
    principal: str = "alice",
    kind: usage_pb2.UsageKind.ValueType = DOWNLOAD,
    hour: datetime = H0,
    count: int = 1,
) -> usage_pb2.UsageRecord:
    return usage_pb2.UsageRecord(
        model_version=version, principal=principal, kind=kind, hour_start_time=ts(hour), count=count
    )


async def record(stub: Stub, *records: usage_pb2.UsageRecord, batch_id: str = "") -> bool:
    reply = await stub.RecordUsage(
        usage_service_pb2.RecordUsageRequest(
            batch_id=batch_id or uuid.uuid4().hex, records=list(records)
        )
    )
    return reply.applied


async def listed(
    stub: Stub, parent: str, flt: str = "", page_size: int = 0
) -> list[tuple[str, str, str, datetime, int]]:
    out: list[tuple[str, str, str, datetime, int]] = []
    token = ""
    while True:
        reply = await stub.ListUsage(
            usage_service_pb2.ListUsageRequest(
                parent=parent, filter=flt, page_size=page_size, page_token=token
            )
        )
        out.extend(
            (
                r.model_version,
                r.principal,
                usage_pb2.UsageKind.Name(r.kind),
                r.hour_start_time.ToDatetime(UTC),
                r.count,
            )
            for r in reply.usage_records
        )
        if page_size:
            assert len(reply.usage_records) <= page_size
        token = reply.next_page_token
        if not token:
            return out


@pytest.fixture
async def stub(start_server, open_channel) -> Stub:
    server = await start_server([SPEC], settings=make_settings(relay_enabled=False))
    stub: Stub = usage_service_pb2_grpc.UsageServiceStub(open_channel(server.address))
    return stub


async def test_counts_add_up_per_version_principal_kind_and_hour(stub: Stub) -> None:
    assert await record(
        stub,
        rec(count=2),
        rec(count=3),  # the same key twice in one batch is summed
        rec(principal="bob"),
        rec(kind=RESOLVE, count=4),
        rec(hour=H0 + timedelta(hours=1), count=5),
        rec("models/fraud/versions/2"),
        rec("models/churn/versions/1", count=9),
    )
    assert await record(stub, rec(count=10))
    rows = await listed(stub, "models/fraud")
    # Newest hour first; within an hour, the key's order (version, principal, kind) descending.
    assert rows == [
        ("models/fraud/versions/1", "alice", "USAGE_KIND_DOWNLOAD", H0 + timedelta(hours=1), 5),
        ("models/fraud/versions/2", "alice", "USAGE_KIND_DOWNLOAD", H0, 1),
        ("models/fraud/versions/1", "bob", "USAGE_KIND_DOWNLOAD", H0, 1),
        ("models/fraud/versions/1", "alice", "USAGE_KIND_DOWNLOAD", H0, 15),
        ("models/fraud/versions/1", "alice", "USAGE_KIND_ALIAS_RESOLUTION", H0, 4),
    ]
    only_v2 = await listed(stub, "models/fraud/versions/2")
    assert only_v2 == [("models/fraud/versions/2", "alice", "USAGE_KIND_DOWNLOAD", H0, 1)]
    assert await listed(stub, "models/nobody") == []


async def test_a_batch_id_seen_before_adds_nothing(stub: Stub) -> None:
    batch = uuid.uuid4().hex
    assert await record(stub, rec(count=7), batch_id=batch) is True
    assert await record(stub, rec(count=7), batch_id=batch) is False
    # A different body under the same id is still the same batch: it was applied once.
    assert await record(stub, rec(count=100), batch_id=batch) is False
    assert [r[4] for r in await listed(stub, "models/fraud")] == [7]


async def test_concurrent_twins_of_one_batch_count_once(stub: Stub) -> None:
    batch = uuid.uuid4().hex
    results = await asyncio.gather(*(record(stub, rec(count=3), batch_id=batch) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    assert [r[4] for r in await listed(stub, "models/fraud")] == [3]


async def test_list_pages_with_keyset_tokens(stub: Stub) -> None:
    records = [
        rec(f"models/fraud/versions/{v}", principal=p, hour=H0 + timedelta(hours=h), count=1)
        for v in (1, 2, 3)
        for p in ("alice", "bob")
        for h in range(4)
    ]
    assert await record(stub, *records)
    whole = await listed(stub, "models/fraud")
    assert len(whole) == 24
    for size in (1, 5, 7, 24, 25):
        assert await listed(stub, "models/fraud", page_size=size) == whole
    hours = [r[3] for r in whole]
    assert hours == sorted(hours, reverse=True)


async def test_filter_over_principal_kind_and_hour(stub: Stub) -> None:
    await record(
        stub,
        rec(principal="alice", hour=H0),
        rec(principal="bob", hour=H0),
        rec(principal="alice", kind=RESOLVE, hour=H0 + timedelta(hours=2)),
        rec(principal="carol", hour=H0 + timedelta(hours=3)),
    )

    async def who(flt: str) -> list[tuple[str, str]]:
        return [(r[1], r[2]) for r in await listed(stub, "models/fraud", flt, page_size=1)]

    assert await who('principal = "alice"') == [
        ("alice", "USAGE_KIND_ALIAS_RESOLUTION"),
        ("alice", "USAGE_KIND_DOWNLOAD"),
    ]
    assert await who("kind = ALIAS_RESOLUTION") == [("alice", "USAGE_KIND_ALIAS_RESOLUTION")]
    assert await who('hour_start_time >= "2026-11-01T12:00:00Z" AND NOT principal = carol') == [
        ("alice", "USAGE_KIND_ALIAS_RESOLUTION")
    ]
    assert await who('principal IN ("bob", "carol") OR kind = "alias_resolution"') == [
        ("carol", "USAGE_KIND_DOWNLOAD"),
        ("alice", "USAGE_KIND_ALIAS_RESOLUTION"),
        ("bob", "USAGE_KIND_DOWNLOAD"),
    ]


async def assert_invalid(call: object, field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, _, violations = error_details(err.value)
    assert reason == "INVALID_FIELD"
    assert [v[0] for v in violations] == [field], violations


@pytest.mark.parametrize(
    ("records", "field"),
    [
        ([rec("models/fraud")], "records[0].model_version"),
        ([rec(), rec("models/fraud/versions/0")], "records[1].model_version"),
        ([rec("experiments/x/runs/y")], "records[0].model_version"),
        ([rec(principal="")], "records[0].principal"),
        ([rec(principal="x" * 513)], "records[0].principal"),
        ([rec(kind=usage_pb2.USAGE_KIND_UNSPECIFIED)], "records[0].kind"),
        ([rec(kind=99)], "records[0].kind"),  # type: ignore[arg-type]
        ([rec(count=0)], "records[0].count"),
        ([rec(count=-4)], "records[0].count"),
        ([rec(hour=H0 + timedelta(minutes=30))], "records[0].hour_start_time"),
        ([rec(hour=datetime.now(UTC) + timedelta(days=2))], "records[0].hour_start_time"),
        (
            [
                usage_pb2.UsageRecord(
                    model_version="models/a/versions/1", principal="a", kind=DOWNLOAD, count=1
                )
            ],
            "records[0].hour_start_time",
        ),
        ([rec()] * 10_001, "records"),
    ],
)
async def test_bad_records_name_their_field_and_add_nothing(
    stub: Stub, records: list[usage_pb2.UsageRecord], field: str
) -> None:
    batch = uuid.uuid4().hex
    good = rec("models/fraud/versions/9", count=1)
    await assert_invalid(
        stub.RecordUsage(
            usage_service_pb2.RecordUsageRequest(batch_id=batch, records=[good, *records])
            if field == "records"
            else usage_service_pb2.RecordUsageRequest(batch_id=batch, records=records)
        ),
        field,
    )
    assert await listed(stub, "models/fraud") == []
    # The refused batch id was not used up.
    assert await record(stub, good, batch_id=batch)


async def test_batch_id_is_required_and_bounded(stub: Stub) -> None:
    await assert_invalid(
        stub.RecordUsage(usage_service_pb2.RecordUsageRequest(records=[rec()])), "batch_id"
    )
    await assert_invalid(
        stub.RecordUsage(usage_service_pb2.RecordUsageRequest(batch_id="b" * 129, records=[rec()])),
        "batch_id",
    )


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (usage_service_pb2.ListUsageRequest(parent=""), "parent"),
        (usage_service_pb2.ListUsageRequest(parent="models/"), "parent"),
        (usage_service_pb2.ListUsageRequest(parent="models/a/versions/x"), "parent"),
        (usage_service_pb2.ListUsageRequest(parent="experiments/a"), "parent"),
        (usage_service_pb2.ListUsageRequest(parent="models/a", page_size=-1), "page_size"),
        (usage_service_pb2.ListUsageRequest(parent="models/a", filter="model = a"), "filter"),
        (usage_service_pb2.ListUsageRequest(parent="models/a", filter="kind = UPLOAD"), "filter"),
        (usage_service_pb2.ListUsageRequest(parent="models/a", filter="kind > DOWNLOAD"), "filter"),
        (
            usage_service_pb2.ListUsageRequest(parent="models/a", filter='hour_start_time > "x"'),
            "filter",
        ),
        (usage_service_pb2.ListUsageRequest(parent="models/a", filter="principal ="), "filter"),
        (usage_service_pb2.ListUsageRequest(parent="models/a", page_token="garbage"), "page_token"),
    ],
)
async def test_bad_list_requests_name_their_field(
    stub: Stub, request_: usage_service_pb2.ListUsageRequest, field: str
) -> None:
    await assert_invalid(stub.ListUsage(request_), field)


async def test_a_page_token_is_bound_to_its_query(stub: Stub) -> None:
    await record(stub, rec(principal="a"), rec(principal="b"))
    first = await stub.ListUsage(
        usage_service_pb2.ListUsageRequest(parent="models/fraud", page_size=1)
    )
    assert first.next_page_token
    for changed in (
        usage_service_pb2.ListUsageRequest(
            parent="models/fraud/versions/1", page_size=1, page_token=first.next_page_token
        ),
        usage_service_pb2.ListUsageRequest(
            parent="models/fraud", filter="principal = a", page_token=first.next_page_token
        ),
    ):
        await assert_invalid(stub.ListUsage(changed), "page_token")


async def test_old_batch_ids_are_forgotten_after_the_retention(start_server, open_channel) -> None:
    server = await start_server(
        [spec_with(EventsSettings(usage_batch_retention_hours=1))],
        settings=make_settings(relay_enabled=False),
    )
    stub: Stub = usage_service_pb2_grpc.UsageServiceStub(open_channel(server.address))
    batch = uuid.uuid4().hex
    assert await record(stub, rec(count=2), batch_id=batch)
    (component,) = server.components
    usage = component.usage
    assert await usage.forget_batches(datetime.now(UTC)) == 0
    assert await usage.forget_batches(datetime.now(UTC) + timedelta(hours=2)) == 1
    # Past the retention the id is new again: that is the bound on how long a retry is safe.
    assert await record(stub, rec(count=2), batch_id=batch)
    assert [r[4] for r in await listed(stub, "models/fraud")] == [4]
