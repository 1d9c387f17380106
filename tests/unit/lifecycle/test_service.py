"""The domain service on in-memory fakes of its ports: rules without I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from modelreg_common.context import CallInfo, Principal, bind_call, unbind_call
from modelreg_common.errors import (
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from modelreg_lifecycle.domain.models import RequestState, Target, TargetKind
from modelreg_lifecycle.domain.policies import RuleDraft
from modelreg_lifecycle.domain.service import LifecycleService, StageConfig
from unit.lifecycle.fakes import FakeCatalog, FakeRoles, FakeStore

ALIAS = "models/fraud/aliases/champion"
CHAMPION = Target(TargetKind.ALIAS, "champion")
Parts = tuple[LifecycleService, FakeStore, FakeCatalog, FakeRoles]
STAGES = StageConfig(("None", "Staging", "Production", "Archived"), "Archived")


@contextmanager
def as_(user: str) -> Iterator[None]:
    token = bind_call(CallInfo(method="/test", request_id=f"r-{user}", principal=Principal(user)))
    try:
        yield
    finally:
        unbind_call(token)


@pytest.fixture
def parts() -> Parts:
    store, catalog, roles = FakeStore(), FakeCatalog(), FakeRoles()
    return LifecycleService(store, catalog, roles, STAGES), store, catalog, roles


async def test_moves_record_history_and_events(parts: Parts) -> None:
    service, store, catalog, _ = parts
    v1, v2 = catalog.add("fraud", 1), catalog.add("fraud", 2)
    with as_("alice"):
        await service.set_alias(ALIAS, v1, None, "first")
        await service.set_alias(ALIAS, v2, 1, "second")
    _, record = await service.resolve("models:/fraud@champion", None)
    assert record == v2.encode()
    history = await service.alias_history(ALIAS, None, 10)
    assert [(e.from_version, e.to_version, e.actor, e.reason) for e in history] == [
        (1, 2, "alice", "second"),
        (None, 1, "alice", "first"),
    ]
    assert [e.type for e in store.state.events] == ["model_version.alias_set"] * 2
    _, then = await service.resolve("models/fraud@champion", history[1].time)
    assert then == v1.encode()


async def test_cas_mismatch_changes_nothing(parts: Parts) -> None:
    service, store, catalog, _ = parts
    v1, v2 = catalog.add("fraud", 1), catalog.add("fraud", 2)
    with as_("alice"):
        await service.set_alias(ALIAS, v1, 0, "")
        with pytest.raises(EtagMismatch) as err:
            await service.set_alias(ALIAS, v2, 0, "")
    assert err.value.metadata["current_version"] == "1"
    assert len(store.state.alias_history) == 1
    assert len(store.state.events) == 1


async def test_concurrent_cas_exactly_one_wins(parts: Parts) -> None:
    service, _, catalog, _ = parts
    names = [catalog.add("fraud", n) for n in range(1, 10)]
    with as_("alice"):
        await service.set_alias(ALIAS, names[0], None, "")
        outcomes = await asyncio.gather(
            *(service.set_alias(ALIAS, n, 1, "") for n in names[1:]), return_exceptions=True
        )
    assert sum(not isinstance(o, Exception) for o in outcomes) == 1
    assert all(isinstance(o, EtagMismatch) for o in outcomes if isinstance(o, Exception))


async def test_self_approval_denied_and_other_approver_applies(parts: Parts) -> None:
    service, store, catalog, _ = parts
    v1 = catalog.add("fraud", 1)
    with as_("alice"):
        await service.set_policy(
            "models/fraud/policy", [RuleDraft(aliases=["champion"], protected=True)], [], None
        )
        with pytest.raises(FailedPrecondition):
            await service.set_alias(ALIAS, v1, None, "")
        request = await service.create_request("models/fraud", v1, CHAMPION, "go", None)
        assert not isinstance(request, bytes)
        with pytest.raises(PermissionDenied):
            await service.approve(request.name, "")
    with as_("bob"):
        done = await service.approve(request.name, "ok")
    assert done.state is RequestState.APPLIED
    assert (await service.get_alias(ALIAS)).version == 1
    assert [e.type for e in store.state.events][-3:] == [
        "transition_request.approved",
        "model_version.alias_set",
        "transition_request.applied",
    ]


async def test_approver_without_the_role_is_denied(parts: Parts) -> None:
    service, _, catalog, roles = parts
    roles.approvers = {"carol"}
    v1 = catalog.add("fraud", 1)
    with as_("alice"):
        request = await service.create_request("models/fraud", v1, CHAMPION, "", None)
    assert not isinstance(request, bytes)
    with as_("bob"), pytest.raises(PermissionDenied, match="approver"):
        await service.approve(request.name, "")
    with as_("carol"):
        assert (await service.approve(request.name, "")).state is RequestState.APPLIED


async def test_failing_checks_record_no_approval(parts: Parts) -> None:
    service, store, catalog, _ = parts
    catalog.runs["experiments/e/runs/r"] = {"auc": 0.5}
    v1 = catalog.add("fraud", 1, run="experiments/e/runs/r")
    with as_("alice"):
        await service.set_policy(
            "policies/registry",
            [RuleDraft(aliases=["*"], required_approvals=1, checks=["metrics.auc >= 0.9"])],
            [],
            None,
        )
        request = await service.create_request("models/fraud", v1, CHAMPION, "", None)
    assert not isinstance(request, bytes)
    with as_("bob"), pytest.raises(FailedPrecondition) as err:
        await service.approve(request.name, "")
    assert err.value.metadata["check.0"] == "metrics.auc >= 0.9: auc is 0.5"
    assert store.state.requests[request.id].approvals == ()


async def test_alias_move_fails_pending_requests(parts: Parts) -> None:
    service, store, catalog, _ = parts
    v1, v2 = catalog.add("fraud", 1), catalog.add("fraud", 2)
    with as_("alice"):
        request = await service.create_request("models/fraud", v1, CHAMPION, "", None)
        await service.set_alias(ALIAS, v2, None, "")
    assert not isinstance(request, bytes)
    failed = store.state.requests[request.id]
    assert failed.state is RequestState.FAILED
    assert "moved" in failed.failure_reason


async def test_degradation_once_per_episode(parts: Parts) -> None:
    from modelreg_lifecycle.domain.models import MetricValue

    service, store, catalog, _ = parts
    v1 = catalog.add("fraud", 1)
    with as_("alice"):
        await service.set_policy("models/fraud/policy", [], ["accuracy >= 0.8"], None)
        opened = [
            len((await service.record_metrics(v1, "prod", [MetricValue("accuracy", x, 60)]))[1])
            for x in (0.9, 0.5, 0.4, 0.85, 0.1)
        ]
    assert opened == [0, 1, 0, 0, 1]
    types = [e.type for e in store.state.events]
    assert types.count("production_metrics.degraded") == 2
    assert types.count("production_metrics.recovered") == 1


async def test_stage_archive_existing(parts: Parts) -> None:
    service, _, catalog, _ = parts
    v1, v2 = catalog.add("fraud", 1), catalog.add("fraud", 2)
    with as_("alice"):
        await service.transition_stage(v1, "Production", False, "")
        moved = await service.transition_stage(v2, "Production", True, "")
    assert [(s.version, s.stage) for s in moved.archived] == [(1, "Archived")]
    assert (await service.get_stage(v1)).stage == "Archived"


async def test_bad_input_and_unknowns(parts: Parts) -> None:
    service, _, catalog, _ = parts
    catalog.add("fraud", 1, state="PENDING_REGISTRATION")
    with as_("alice"):
        with pytest.raises(InvalidArgument):
            await service.set_alias(
                "models/fraud/aliases/latest", "models/fraud/versions/1", None, ""
            )
        with pytest.raises(FailedPrecondition):
            await service.set_alias(ALIAS, "models/fraud/versions/1", None, "")
        with pytest.raises(NotFound):
            await service.set_alias(ALIAS, "models/fraud/versions/2", None, "")
        with pytest.raises(NotFound):
            await service.resolve("models/fraud@champion", None)
        with pytest.raises(InvalidArgument):
            await service.transition_stage("models/fraud/versions/1", "Prod", False, "")
