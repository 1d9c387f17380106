"""Aliases over a real channel and PostgreSQL: moves, compare-and-set races, resolution
(now and in the past), history, rollback, and bad input."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import timestamp_pb2
from grpc import aio

from modelreg.lifecycle.v1 import alias_pb2, alias_service_pb2
from modelreg.metadata.v1 import model_version_pb2
from testkit import error_details

ALIAS = "models/fraud/aliases/champion"


def v(n: int, model: str = "fraud") -> str:
    return f"models/{model}/versions/{n}"


async def set_alias(client: Any, version: str, *, name: str = ALIAS, **kw: Any) -> Any:
    reply = await client.aliases.SetAlias(
        alias_service_pb2.SetAliasRequest(name=name, version=version, **kw),
        metadata=client.metadata,
    )
    return reply.alias


async def resolve(client: Any, name: str, at: timestamp_pb2.Timestamp | None = None) -> Any:
    request = alias_service_pb2.ResolveAliasRequest(name=name)
    if at is not None:
        request.at_time.CopyFrom(at)
    return await client.aliases.ResolveAlias(request, metadata=client.metadata)


async def outbox(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(
            "SELECT type, subject, actor, request_id, data::text AS data FROM lifecycle.outbox"
            " ORDER BY seq"
        )
    finally:
        await conn.close()


async def test_set_resolve_get_list_delete(lifecycle: Any) -> None:
    for n in (1, 2):
        lifecycle.meta.add_version("fraud", n, tags={"idx": str(n)})
    alice = lifecycle.as_("alice")
    moved = await set_alias(alice, v(1), reason="first")
    assert (moved.name, moved.version, moved.version_number, moved.updater) == (
        ALIAS,
        v(1),
        1,
        "alice",
    )
    for reference in ("models/fraud@champion", "models:/fraud@champion"):
        reply = await resolve(alice, reference)
        assert reply.alias == ALIAS
        assert reply.model_version.name == v(1)
        assert reply.model_version.state == model_version_pb2.MODEL_VERSION_STATE_READY
        assert dict(reply.model_version.tags) == {"idx": "1"}
    await set_alias(alice, v(2))
    assert (await resolve(alice, "models/fraud@champion")).model_version.name == v(2)
    got = await alice.aliases.GetAlias(
        alias_service_pb2.GetAliasRequest(name=ALIAS), metadata=alice.metadata
    )
    assert got.alias.version == v(2)
    assert got.alias.etag == '"2"'
    await set_alias(alice, v(1), name="models/fraud/aliases/challenger")
    listed = await alice.aliases.ListAliases(
        alias_service_pb2.ListAliasesRequest(parent="models/fraud", page_size=1),
        metadata=alice.metadata,
    )
    assert [a.name for a in listed.aliases] == ["models/fraud/aliases/challenger"]
    second = await alice.aliases.ListAliases(
        alias_service_pb2.ListAliasesRequest(
            parent="models/fraud", page_size=1, page_token=listed.next_page_token
        ),
        metadata=alice.metadata,
    )
    assert [a.name for a in second.aliases] == [ALIAS]
    assert second.next_page_token == ""
    await alice.aliases.DeleteAlias(
        alias_service_pb2.DeleteAliasRequest(name=ALIAS, reason="retired"),
        metadata=alice.metadata,
    )
    with pytest.raises(aio.AioRpcError) as err:
        await resolve(alice, "models/fraud@champion")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(err.value)[0] == "RESOURCE_NOT_FOUND"

    events = await outbox(lifecycle.dsn)
    assert [(e["type"], e["subject"]) for e in events] == [
        ("model_version.alias_set", v(1)),
        ("model_version.alias_set", v(2)),
        ("model_version.alias_set", v(1)),
        ("model_version.alias_deleted", v(2)),
    ]
    assert {e["actor"] for e in events} == {"alice"}
    assert all(e["request_id"] for e in events)


async def test_setting_the_same_version_again_is_not_a_move(lifecycle: Any) -> None:
    lifecycle.meta.add_version("fraud", 1)
    alice = lifecycle.as_("alice")
    await set_alias(alice, v(1))
    lifecycle.meta.versions[v(1)].tags["validated"] = "yes"
    stale = await resolve(alice, "models/fraud@champion")
    assert "validated" not in stale.model_version.tags  # the record as of the move
    again = await set_alias(alice, v(1))
    assert again.etag == '"1"'
    assert len(await outbox(lifecycle.dsn)) == 1
    # ... but setting it again refreshed the stored record.
    fresh = await resolve(alice, "models/fraud@champion")
    assert fresh.model_version.tags["validated"] == "yes"


async def test_compare_and_set_mismatch_is_aborted(lifecycle: Any) -> None:
    for n in (1, 2, 3):
        lifecycle.meta.add_version("fraud", n)
    alice = lifecycle.as_("alice")
    with pytest.raises(aio.AioRpcError) as err:
        await set_alias(alice, v(1), expected_version=5)
    assert err.value.code() == grpc.StatusCode.ABORTED
    reason, meta, _ = error_details(err.value)
    assert reason == "ETAG_MISMATCH"
    assert meta["current_version"] == "0"
    await set_alias(alice, v(1), expected_version=0)
    await set_alias(alice, v(2), expected_version=1)
    with pytest.raises(aio.AioRpcError) as err:
        await set_alias(alice, v(3), expected_version=1)
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert error_details(err.value)[1]["current_version"] == "2"
    with pytest.raises(aio.AioRpcError) as err:
        await alice.aliases.DeleteAlias(
            alias_service_pb2.DeleteAliasRequest(name=ALIAS, expected_version=1),
            metadata=alice.metadata,
        )
    assert err.value.code() == grpc.StatusCode.ABORTED


async def test_concurrent_movers_exactly_one_wins_per_expected_value(lifecycle: Any) -> None:
    movers = 12
    for n in range(1, movers + 2):
        lifecycle.meta.add_version("fraud", n)
    alice = lifecycle.as_("alice")
    await set_alias(alice, v(1))
    current = 1
    for _round in range(3):
        targets = [n for n in range(1, movers + 2) if n != current][:movers]
        codes: list[grpc.StatusCode] = []

        async def move(
            target: int, expected: int = current, codes: list[grpc.StatusCode] = codes
        ) -> int | None:
            try:
                await set_alias(alice, v(target), expected_version=expected)
            except aio.AioRpcError as err:
                codes.append(err.code())
                return None
            return target

        results = await asyncio.gather(*(move(t) for t in targets))
        assert codes == [grpc.StatusCode.ABORTED] * (movers - 1)
        winners = [r for r in results if r is not None]
        assert len(winners) == 1, results
        current = winners[0]
        assert (await resolve(alice, "models/fraud@champion")).model_version.name == v(current)
    history = await alice.aliases.ListAliasHistory(
        alias_service_pb2.ListAliasHistoryRequest(name=ALIAS), metadata=alice.metadata
    )
    # One initial set plus one move per round; each entry starts where the previous ended.
    entries = list(reversed(history.entries))
    assert len(entries) == 4
    for before, after in itertools.pairwise(entries):
        assert after.from_version == before.to_version


async def test_unconditional_concurrent_moves_are_linearizable(lifecycle: Any) -> None:
    for n in range(1, 9):
        lifecycle.meta.add_version("fraud", n)
    alice = lifecycle.as_("alice")
    await asyncio.gather(*(set_alias(alice, v(n)) for n in range(1, 9)))
    history = await alice.aliases.ListAliasHistory(
        alias_service_pb2.ListAliasHistoryRequest(name=ALIAS), metadata=alice.metadata
    )
    entries = list(reversed(history.entries))
    assert entries[0].from_version == ""
    for before, after in itertools.pairwise(entries):
        assert after.from_version == before.to_version
    final = await resolve(alice, "models/fraud@champion")
    assert final.model_version.name == entries[-1].to_version


async def test_time_travel_answers_who_held_the_alias(lifecycle: Any) -> None:
    for n in (1, 2, 3):
        lifecycle.meta.add_version("fraud", n)
    alice = lifecycle.as_("alice")
    bob = lifecycle.as_("bob")
    times = []
    for client, n in ((alice, 1), (bob, 2), (alice, 3)):
        await set_alias(client, v(n), reason=f"to {n}")
        history = await alice.aliases.ListAliasHistory(
            alias_service_pb2.ListAliasHistoryRequest(name=ALIAS, page_size=1),
            metadata=alice.metadata,
        )
        times.append(history.entries[0].time)
    await alice.aliases.DeleteAlias(
        alias_service_pb2.DeleteAliasRequest(name=ALIAS), metadata=alice.metadata
    )
    for n, at in zip((1, 2, 3), times, strict=True):
        reply = await resolve(alice, "models/fraud@champion", at)
        assert reply.model_version.name == v(n)
    before = timestamp_pb2.Timestamp(seconds=times[0].seconds - 1)
    for at in (before, None):
        with pytest.raises(aio.AioRpcError) as err:
            await resolve(alice, "models/fraud@champion", at)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    history = await alice.aliases.ListAliasHistory(
        alias_service_pb2.ListAliasHistoryRequest(name=ALIAS, page_size=3),
        metadata=alice.metadata,
    )
    assert [(e.action, e.actor, e.to_version) for e in history.entries] == [
        (alias_pb2.ALIAS_ACTION_DELETE, "alice", ""),
        (alias_pb2.ALIAS_ACTION_SET, "alice", v(3)),
        (alias_pb2.ALIAS_ACTION_SET, "bob", v(2)),
    ]
    assert history.entries[1].reason == "to 3"
    assert all(e.request_id for e in history.entries)
    rest = await alice.aliases.ListAliasHistory(
        alias_service_pb2.ListAliasHistoryRequest(
            name=ALIAS, page_size=3, page_token=history.next_page_token
        ),
        metadata=alice.metadata,
    )
    assert [e.to_version for e in rest.entries] == [v(1)]
    assert rest.next_page_token == ""


async def test_version_must_exist_and_be_ready(lifecycle: Any) -> None:
    lifecycle.meta.add_version(
        "fraud", 1, state=model_version_pb2.MODEL_VERSION_STATE_PENDING_REGISTRATION
    )
    alice = lifecycle.as_("alice")
    with pytest.raises(aio.AioRpcError) as err:
        await set_alias(alice, v(1))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    reason, meta, _ = error_details(err.value)
    assert (reason, meta["from"], meta["to"]) == (
        "INVALID_STATE_TRANSITION",
        "PENDING_REGISTRATION",
        "READY",
    )
    with pytest.raises(aio.AioRpcError) as err:
        await set_alias(alice, v(9))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(err.value)[:2] == ("RESOURCE_NOT_FOUND", {"name": v(9)})


async def test_metadata_unavailable_is_retried_then_reported(lifecycle: Any) -> None:
    lifecycle.meta.add_version("fraud", 1)
    alice = lifecycle.as_("alice")
    lifecycle.meta.unavailable_calls = 2
    assert (await set_alias(alice, v(1))).version == v(1)
    lifecycle.meta.unavailable_calls = 100
    with pytest.raises(aio.AioRpcError) as err:
        await set_alias(alice, v(1), name="models/fraud/aliases/other")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_details(err.value)[:2] == ("BACKEND_UNAVAILABLE", {"backend": "metadata"})


async def test_rollback_restores_previous_holders(lifecycle: Any) -> None:
    for n in (1, 2, 3):
        lifecycle.meta.add_version("fraud", n)
    alice = lifecycle.as_("alice")
    with pytest.raises(aio.AioRpcError) as err:
        await alice.aliases.RollbackAlias(
            alias_service_pb2.RollbackAliasRequest(name=ALIAS), metadata=alice.metadata
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    for n in (1, 2, 3):
        await set_alias(alice, v(n))
    first = await alice.aliases.RollbackAlias(
        alias_service_pb2.RollbackAliasRequest(name=ALIAS, reason="v3 degraded"),
        metadata=alice.metadata,
    )
    assert first.alias.version == v(2)
    assert not first.HasField("transition_request")
    second = await alice.aliases.RollbackAlias(
        alias_service_pb2.RollbackAliasRequest(name=ALIAS), metadata=alice.metadata
    )
    assert second.alias.version == v(1)
    with pytest.raises(aio.AioRpcError) as err:
        await alice.aliases.RollbackAlias(
            alias_service_pb2.RollbackAliasRequest(name=ALIAS), metadata=alice.metadata
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(err.value)[0] == "INVALID_STATE_TRANSITION"
    history = await alice.aliases.ListAliasHistory(
        alias_service_pb2.ListAliasHistoryRequest(name=ALIAS, page_size=2),
        metadata=alice.metadata,
    )
    assert [(e.action, e.reason) for e in history.entries] == [
        (alias_pb2.ALIAS_ACTION_ROLLBACK, ""),
        (alias_pb2.ALIAS_ACTION_ROLLBACK, "v3 degraded"),
    ]


async def test_rollback_to_a_deleted_version_is_not_found(lifecycle: Any) -> None:
    for n in (1, 2):
        lifecycle.meta.add_version("fraud", n)
    alice = lifecycle.as_("alice")
    await set_alias(alice, v(1))
    await set_alias(alice, v(2))
    del lifecycle.meta.versions[v(1)]
    with pytest.raises(aio.AioRpcError) as err:
        await alice.aliases.RollbackAlias(
            alias_service_pb2.RollbackAliasRequest(name=ALIAS), metadata=alice.metadata
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(err.value)[1] == {"name": v(1)}


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"name": "models/fraud/aliases/latest", "version": v(1)}, "name"),
        ({"name": "models/fraud/aliases/v12", "version": v(1)}, "name"),
        ({"name": "models/fraud/aliases/bad alias", "version": v(1)}, "name"),
        ({"name": "models/fraud/champion", "version": v(1)}, "name"),
        ({"name": ALIAS, "version": "models/fraud/versions/0"}, "version"),
        ({"name": ALIAS, "version": v(1, "other")}, "version"),
        ({"name": ALIAS, "version": v(1), "expected_version": -1}, "expected_version"),
        ({"name": ALIAS, "version": v(1), "reason": "x" * 10_001}, "reason"),
    ],
)
async def test_bad_set_alias_input_names_the_field(
    lifecycle: Any, request_fields: dict[str, Any], field: str
) -> None:
    alice = lifecycle.as_("alice")
    with pytest.raises(aio.AioRpcError) as err:
        await alice.aliases.SetAlias(
            alias_service_pb2.SetAliasRequest(**request_fields), metadata=alice.metadata
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, _, violations = error_details(err.value)
    assert reason == "INVALID_FIELD"
    assert violations[0][0] == field


@pytest.mark.parametrize(
    "name", ["fraud@champion", "models/fraud@latest", "models:/fraud@", "models:/@a", ""]
)
async def test_bad_references_are_invalid_argument(lifecycle: Any, name: str) -> None:
    alice = lifecycle.as_("alice")
    with pytest.raises(aio.AioRpcError) as err:
        await resolve(alice, name)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err.value)[0] == "INVALID_FIELD"
    assert error_details(err.value)[2][0][0] == "name"


async def test_bad_paging_is_invalid_argument(lifecycle: Any) -> None:
    alice = lifecycle.as_("alice")
    for request, field in (
        (alias_service_pb2.ListAliasesRequest(parent="models/fraud", page_size=-1), "page_size"),
        (
            alias_service_pb2.ListAliasesRequest(parent="models/fraud", page_token="junk"),
            "page_token",
        ),
        (alias_service_pb2.ListAliasesRequest(parent="fraud"), "parent"),
    ):
        with pytest.raises(aio.AioRpcError) as err:
            await alice.aliases.ListAliases(request, metadata=alice.metadata)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_details(err.value)[2][0][0] == field


async def test_unknown_alias_is_not_found(lifecycle: Any) -> None:
    alice = lifecycle.as_("alice")
    for call in (
        alice.aliases.GetAlias(
            alias_service_pb2.GetAliasRequest(name=ALIAS), metadata=alice.metadata
        ),
        alice.aliases.DeleteAlias(
            alias_service_pb2.DeleteAliasRequest(name=ALIAS), metadata=alice.metadata
        ),
    ):
        with pytest.raises(aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_details(err.value)[:2] == ("RESOURCE_NOT_FOUND", {"name": ALIAS})
