"""Stages, policies and the approval workflow."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import grpc
import pytest
from grpc import aio

from modelreg.lifecycle.v1 import (
    alias_service_pb2,
    policy_pb2,
    policy_service_pb2,
    stage_service_pb2,
    transition_request_pb2,
    transition_request_service_pb2,
)
from modelreg.metadata.v1 import access_pb2, model_version_pb2
from testkit import error_details

ALIAS = "models/fraud/aliases/champion"
PENDING = transition_request_pb2.TRANSITION_REQUEST_STATE_PENDING
APPLIED = transition_request_pb2.TRANSITION_REQUEST_STATE_APPLIED
FAILED = transition_request_pb2.TRANSITION_REQUEST_STATE_FAILED
REJECTED = transition_request_pb2.TRANSITION_REQUEST_STATE_REJECTED
CANCELLED = transition_request_pb2.TRANSITION_REQUEST_STATE_CANCELLED


def v(n: int) -> str:
    return f"models/fraud/versions/{n}"


async def set_policy(client: Any, name: str = "models/fraud/policy", **fields: Any) -> Any:
    reply = await client.policies.SetPolicy(
        policy_service_pb2.SetPolicyRequest(policy=policy_pb2.Policy(name=name, **fields)),
        metadata=client.metadata,
    )
    return reply.policy


def protect_champion(approvals: int = 1, checks: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "rules": [
            policy_pb2.PolicyRule(
                aliases=["champion"],
                protected=True,
                required_approvals=approvals,
                checks=list(checks),
            )
        ]
    }


async def create_request(
    client: Any, version: str, *, alias: str = "", stage: str = "", **kw: Any
) -> Any:
    draft = transition_request_pb2.TransitionRequest(version=version, comment="please")
    if alias:
        draft.alias = alias
    if stage:
        draft.stage = stage
    reply = await client.requests.CreateTransitionRequest(
        transition_request_service_pb2.CreateTransitionRequestRequest(
            parent="models/fraud", transition_request=draft, **kw
        ),
        metadata=client.metadata,
    )
    return reply.transition_request


async def approve(client: Any, name: str, comment: str = "lgtm") -> Any:
    reply = await client.requests.ApproveTransitionRequest(
        transition_request_service_pb2.ApproveTransitionRequestRequest(name=name, comment=comment),
        metadata=client.metadata,
    )
    return reply.transition_request


async def resolve_version(client: Any) -> str:
    reply = await client.aliases.ResolveAlias(
        alias_service_pb2.ResolveAliasRequest(name="models/fraud@champion"),
        metadata=client.metadata,
    )
    return str(reply.model_version.name)


async def event_types(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r[0] for r in await conn.fetch("SELECT type FROM lifecycle.outbox ORDER BY seq")]
    finally:
        await conn.close()


# -- stages ----------------------------------------------------------------------------------


async def test_transition_stage_with_archive_existing(lifecycle: Any) -> None:
    for n in (1, 2):
        lifecycle.meta.add_version("fraud", n)
    alice = lifecycle.as_("alice")
    stages = alice.stages
    start = await stages.GetVersionStage(
        stage_service_pb2.GetVersionStageRequest(name=v(1)), metadata=alice.metadata
    )
    assert start.version_stage.stage == "None"
    await stages.TransitionStage(
        stage_service_pb2.TransitionStageRequest(name=v(1), stage="Production"),
        metadata=alice.metadata,
    )
    moved = await stages.TransitionStage(
        stage_service_pb2.TransitionStageRequest(
            name=v(2), stage="Production", archive_existing_versions=True, reason="better"
        ),
        metadata=alice.metadata,
    )
    assert moved.version_stage.stage == "Production"
    assert [(s.version, s.stage) for s in moved.archived] == [(v(1), "Archived")]
    listed = await stages.ListVersionStages(
        stage_service_pb2.ListVersionStagesRequest(parent="models/fraud"), metadata=alice.metadata
    )
    assert list(listed.stages) == ["None", "Staging", "Production", "Archived"]
    assert [(s.version, s.stage) for s in listed.version_stages] == [
        (v(1), "Archived"),
        (v(2), "Production"),
    ]
    history = await stages.ListStageHistory(
        stage_service_pb2.ListStageHistoryRequest(parent="models/fraud"), metadata=alice.metadata
    )
    assert [(e.version, e.from_stage, e.to_stage) for e in history.entries] == [
        (v(2), "None", "Production"),
        (v(1), "Production", "Archived"),
        (v(1), "None", "Production"),
    ]
    assert history.entries[0].actor == "alice"
    assert history.entries[0].reason == "better"
    assert (await event_types(lifecycle.dsn)).count("model_version.stage_changed") == 3


async def test_stage_bad_input(lifecycle: Any) -> None:
    lifecycle.meta.add_version(
        "fraud", 1, state=model_version_pb2.MODEL_VERSION_STATE_PENDING_REGISTRATION
    )
    alice = lifecycle.as_("alice")
    with pytest.raises(aio.AioRpcError) as err:
        await alice.stages.TransitionStage(
            stage_service_pb2.TransitionStageRequest(name=v(1), stage="production"),
            metadata=alice.metadata,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err.value)[2][0][0] == "stage"
    with pytest.raises(aio.AioRpcError) as err:
        await alice.stages.TransitionStage(
            stage_service_pb2.TransitionStageRequest(name=v(1), stage="Production"),
            metadata=alice.metadata,
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Archiving needs no READY version.
    await alice.stages.TransitionStage(
        stage_service_pb2.TransitionStageRequest(name=v(1), stage="Archived"),
        metadata=alice.metadata,
    )
    with pytest.raises(aio.AioRpcError) as err:
        await alice.stages.TransitionStage(
            stage_service_pb2.TransitionStageRequest(name=v(7), stage="Staging"),
            metadata=alice.metadata,
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_stages_are_configurable(start_lifecycle: Any) -> None:
    lifecycle = await start_lifecycle(
        stages='["Dev", "Canary", "Live", "Retired"]', archive_stage="Retired"
    )
    lifecycle.meta.add_version("fraud", 1)
    alice = lifecycle.as_("alice")
    listed = await alice.stages.ListVersionStages(
        stage_service_pb2.ListVersionStagesRequest(parent="models/fraud"),
        metadata=alice.metadata,
    )
    assert list(listed.stages) == ["Dev", "Canary", "Live", "Retired"]
    got = await alice.stages.GetVersionStage(
        stage_service_pb2.GetVersionStageRequest(name=v(1)), metadata=alice.metadata
    )
    assert got.version_stage.stage == "Dev"
    moved = await alice.stages.TransitionStage(
        stage_service_pb2.TransitionStageRequest(name=v(1), stage="Live"),
        metadata=alice.metadata,
    )
    assert moved.version_stage.stage == "Live"
    with pytest.raises(aio.AioRpcError) as err:
        await alice.stages.TransitionStage(
            stage_service_pb2.TransitionStageRequest(name=v(1), stage="Production"),
            metadata=alice.metadata,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- policies --------------------------------------------------------------------------------


async def test_policy_round_trip_and_etag(lifecycle: Any) -> None:
    alice = lifecycle.as_("alice")
    saved = await set_policy(
        alice,
        **protect_champion(2, ("metrics.auc >= 0.90", "tags.validated")),
        production_thresholds=["accuracy >= 0.8"],
    )
    assert saved.etag == '"1"'
    assert saved.rules[0].approver_role == "approver"
    assert list(saved.rules[0].checks) == ["metrics.auc >= 0.90", "tags.validated"]
    got = await alice.policies.GetPolicy(
        policy_service_pb2.GetPolicyRequest(name="models/fraud/policy"), metadata=alice.metadata
    )
    assert got.policy == saved
    with pytest.raises(aio.AioRpcError) as err:
        await set_policy(alice, etag='"7"', **protect_champion())
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert error_details(err.value)[0] == "ETAG_MISMATCH"
    assert (await set_policy(alice, etag='"1"', **protect_champion())).etag == '"2"'
    await alice.policies.DeletePolicy(
        policy_service_pb2.DeletePolicyRequest(name="models/fraud/policy"), metadata=alice.metadata
    )
    with pytest.raises(aio.AioRpcError) as err:
        await alice.policies.GetPolicy(
            policy_service_pb2.GetPolicyRequest(name="models/fraud/policy"),
            metadata=alice.metadata,
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_bad_policies_name_their_fields(lifecycle: Any) -> None:
    alice = lifecycle.as_("alice")
    with pytest.raises(aio.AioRpcError) as err:
        await set_policy(
            alice,
            rules=[
                policy_pb2.PolicyRule(aliases=["latest"], checks=["metrics.auc > x"]),
                policy_pb2.PolicyRule(stages=["Prod"]),
            ],
            production_thresholds=["accuracy"],
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = [f for f, _ in error_details(err.value)[2]]
    assert fields == [
        "policy.rules[0].aliases[0]",
        "policy.rules[0].checks[0]",
        "policy.rules[1].stages[0]",
        "policy.production_thresholds[0]",
    ]
    with pytest.raises(aio.AioRpcError) as err:
        await set_policy(alice, name="models/fraud", **protect_champion())
    assert error_details(err.value)[2][0][0] == "policy.name"


async def test_protected_alias_cannot_be_moved_directly(lifecycle: Any) -> None:
    lifecycle.meta.add_version("fraud", 1)
    alice = lifecycle.as_("alice")
    await set_policy(alice, "policies/registry", **protect_champion())
    with pytest.raises(aio.AioRpcError) as err:
        await alice.aliases.SetAlias(
            alias_service_pb2.SetAliasRequest(name=ALIAS, version=v(1)), metadata=alice.metadata
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    reason, meta, _ = error_details(err.value)
    assert (reason, meta["protected"], meta["policy"]) == (
        "INVALID_STATE_TRANSITION",
        "true",
        "policies/registry",
    )
    # Other aliases stay free.
    await alice.aliases.SetAlias(
        alias_service_pb2.SetAliasRequest(name="models/fraud/aliases/shadow", version=v(1)),
        metadata=alice.metadata,
    )


async def test_checks_apply_to_direct_moves_of_unprotected_targets(lifecycle: Any) -> None:
    lifecycle.meta.add_version("fraud", 1, signature=False)
    alice = lifecycle.as_("alice")
    await set_policy(
        alice, rules=[policy_pb2.PolicyRule(stages=["Staging"], checks=["signature.present"])]
    )
    with pytest.raises(aio.AioRpcError) as err:
        await alice.stages.TransitionStage(
            stage_service_pb2.TransitionStageRequest(name=v(1), stage="Staging"),
            metadata=alice.metadata,
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    meta = error_details(err.value)[1]
    assert meta["failed_checks"] == "signature.present"
    assert meta["check.0"] == "signature.present: the version has no signature"


# -- the approval workflow -------------------------------------------------------------------


async def test_request_applied_after_required_approvals(lifecycle: Any) -> None:
    lifecycle.meta.add_version("fraud", 1)
    alice, bob, carol = (lifecycle.as_(u) for u in ("alice", "bob", "carol"))
    await set_policy(alice, **protect_champion(approvals=2))
    request = await create_request(alice, v(1), alias="champion")
    assert (request.state, request.requester, request.required_approvals, request.base) == (
        PENDING,
        "alice",
        2,
        "",
    )
    after_bob = await approve(bob, request.name)
    assert after_bob.state == PENDING
    assert [a.reviewer for a in after_bob.approvals] == ["bob"]
    # A second approval by the same reviewer does not count twice.
    assert (await approve(bob, request.name)).state == PENDING
    done = await approve(carol, request.name, "ship it")
    assert done.state == APPLIED
    assert [a.reviewer for a in done.approvals] == ["bob", "carol"]
    assert await resolve_version(alice) == v(1)
    history = await alice.aliases.ListAliasHistory(
        alias_service_pb2.ListAliasHistoryRequest(name=ALIAS), metadata=alice.metadata
    )
    assert history.entries[0].transition_request == request.name
    assert history.entries[0].actor == "carol"
    types = await event_types(lifecycle.dsn)
    assert types[-5:] == [
        "transition_request.created",
        "transition_request.approved",
        "transition_request.approved",
        "model_version.alias_set",
        "transition_request.applied",
    ]
    with pytest.raises(aio.AioRpcError) as err:
        await approve(bob, request.name)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(err.value)[1]["from"] == "APPLIED"


async def test_self_approval_is_always_denied(lifecycle: Any) -> None:
    lifecycle.meta.add_version("fraud", 1)
    alice = lifecycle.as_("alice")
    request = await create_request(alice, v(1), alias="champion")
    with pytest.raises(aio.AioRpcError) as err:
        await approve(alice, request.name)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    reason, meta, _ = error_details(err.value)
    assert reason == "MISSING_ROLE"
    assert meta["resource"] == request.name
    with pytest.raises(aio.AioRpcError) as err:
        await alice.requests.RejectTransitionRequest(
            transition_request_service_pb2.RejectTransitionRequestRequest(name=request.name),
            metadata=alice.metadata,
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_metric_threshold_and_tag_checks_block_approval(lifecycle: Any) -> None:
    run = "experiments/churn/runs/r1"
    lifecycle.meta.runs[run] = {"auc": 0.85}
    lifecycle.meta.add_version("fraud", 1, run=run)
    alice, bob = lifecycle.as_("alice"), lifecycle.as_("bob")
    await set_policy(alice, **protect_champion(1, ("metrics.auc >= 0.90", "tags.validated")))
    request = await create_request(alice, v(1), alias="champion")
    with pytest.raises(aio.AioRpcError) as err:
        await approve(bob, request.name)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    reason, meta, _ = error_details(err.value)
    assert reason == "INVALID_STATE_TRANSITION"
    assert meta["failed_checks"] == "metrics.auc >= 0.90; tags.validated"
    assert meta["check.0"] == "metrics.auc >= 0.90: auc is 0.85"
    assert meta["check.1"] == "tags.validated: tag 'validated' is not set"
    # Nothing was recorded; once the run and tags qualify, the same request goes through.
    lifecycle.meta.runs[run] = {"auc": 0.93}
    lifecycle.meta.versions[v(1)].tags["validated"] = "yes"
    done = await approve(bob, request.name)
    assert done.state == APPLIED
    assert [a.reviewer for a in done.approvals] == ["bob"]


async def test_stale_request_fails_when_alias_moves(lifecycle: Any) -> None:
    for n in (1, 2, 3):
        lifecycle.meta.add_version("fraud", n)
    alice, bob = lifecycle.as_("alice"), lifecycle.as_("bob")
    await alice.aliases.SetAlias(
        alias_service_pb2.SetAliasRequest(name=ALIAS, version=v(1)), metadata=alice.metadata
    )
    request = await create_request(alice, v(2), alias="champion")
    assert request.base == "1"
    await alice.aliases.SetAlias(
        alias_service_pb2.SetAliasRequest(name=ALIAS, version=v(3)), metadata=alice.metadata
    )
    got = await alice.requests.GetTransitionRequest(
        transition_request_service_pb2.GetTransitionRequestRequest(name=request.name),
        metadata=alice.metadata,
    )
    assert got.transition_request.state == FAILED
    assert "moved" in got.transition_request.failure_reason
    with pytest.raises(aio.AioRpcError) as err:
        await approve(bob, request.name)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "transition_request.failed" in await event_types(lifecycle.dsn)
    assert await resolve_version(alice) == v(3)


async def test_stale_request_fails_when_version_was_deleted(lifecycle: Any) -> None:
    lifecycle.meta.add_version("fraud", 1)
    alice, bob = lifecycle.as_("alice"), lifecycle.as_("bob")
    request = await create_request(alice, v(1), stage="Production")
    del lifecycle.meta.versions[v(1)]
    failed = await approve(bob, request.name)
    assert failed.state == FAILED
    assert failed.failure_reason == f"{v(1)} was deleted"


async def test_stage_request_applies_and_stale_stage_request_fails(lifecycle: Any) -> None:
    lifecycle.meta.add_version("fraud", 1)
    alice, bob = lifecycle.as_("alice"), lifecycle.as_("bob")
    await set_policy(alice, rules=[policy_pb2.PolicyRule(stages=["Production"], protected=True)])
    with pytest.raises(aio.AioRpcError) as err:
        await alice.stages.TransitionStage(
            stage_service_pb2.TransitionStageRequest(name=v(1), stage="Production"),
            metadata=alice.metadata,
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    to_prod = await create_request(alice, v(1), stage="Production")
    to_staging = await create_request(alice, v(1), stage="Staging")
    assert (await approve(bob, to_prod.name)).state == APPLIED
    got = await alice.stages.GetVersionStage(
        stage_service_pb2.GetVersionStageRequest(name=v(1)), metadata=alice.metadata
    )
    assert got.version_stage.stage == "Production"
    # The Staging request was made while the version was in None: it is stale now.
    stale = await alice.requests.GetTransitionRequest(
        transition_request_service_pb2.GetTransitionRequestRequest(name=to_staging.name),
        metadata=alice.metadata,
    )
    assert stale.transition_request.state == FAILED


async def test_reject_and_cancel(lifecycle: Any) -> None:
    lifecycle.meta.add_version("fraud", 1)
    alice, bob = lifecycle.as_("alice"), lifecycle.as_("bob")
    first = await create_request(alice, v(1), alias="champion")
    rejected = await bob.requests.RejectTransitionRequest(
        transition_request_service_pb2.RejectTransitionRequestRequest(
            name=first.name, comment="not yet"
        ),
        metadata=bob.metadata,
    )
    assert rejected.transition_request.state == REJECTED
    assert rejected.transition_request.closing_review.reviewer == "bob"
    assert rejected.transition_request.closing_review.comment == "not yet"
    second = await create_request(alice, v(1), alias="champion")
    with pytest.raises(aio.AioRpcError) as err:
        await bob.requests.CancelTransitionRequest(
            transition_request_service_pb2.CancelTransitionRequestRequest(name=second.name),
            metadata=bob.metadata,
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    cancelled = await alice.requests.CancelTransitionRequest(
        transition_request_service_pb2.CancelTransitionRequestRequest(name=second.name),
        metadata=alice.metadata,
    )
    assert cancelled.transition_request.state == CANCELLED
    listed = await alice.requests.ListTransitionRequests(
        transition_request_service_pb2.ListTransitionRequestsRequest(
            parent="models/fraud", page_size=1
        ),
        metadata=alice.metadata,
    )
    assert [r.name for r in listed.transition_requests] == [second.name]
    rest = await alice.requests.ListTransitionRequests(
        transition_request_service_pb2.ListTransitionRequestsRequest(
            parent="models/fraud", page_size=1, page_token=listed.next_page_token
        ),
        metadata=alice.metadata,
    )
    assert [r.name for r in rest.transition_requests] == [first.name]
    only_rejected = await alice.requests.ListTransitionRequests(
        transition_request_service_pb2.ListTransitionRequestsRequest(
            parent="models/fraud", state=REJECTED
        ),
        metadata=alice.metadata,
    )
    assert [r.name for r in only_rejected.transition_requests] == [first.name]
    types = await event_types(lifecycle.dsn)
    assert "transition_request.rejected" in types
    assert "transition_request.cancelled" in types


async def test_create_request_is_idempotent_on_request_id(lifecycle: Any) -> None:
    lifecycle.meta.add_version("fraud", 1)
    lifecycle.meta.add_version("fraud", 2)
    alice = lifecycle.as_("alice")
    request_id = str(uuid.uuid4())
    first = await create_request(alice, v(1), alias="champion", request_id=request_id)
    again = await create_request(alice, v(1), alias="champion", request_id=request_id)
    assert again == first
    with pytest.raises(aio.AioRpcError) as err:
        await create_request(alice, v(2), alias="champion", request_id=request_id)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err.value)[2][0][0] == "request_id"


@pytest.mark.parametrize(
    ("version", "target", "field"),
    [
        (v(1), {}, "transition_request.alias"),
        (v(1), {"alias": "latest"}, "transition_request.alias"),
        (v(1), {"stage": "Prod"}, "transition_request.stage"),
        ("models/other/versions/1", {"alias": "champion"}, "transition_request.version"),
        ("models/fraud", {"alias": "champion"}, "transition_request.version"),
    ],
)
async def test_bad_requests_name_their_field(
    lifecycle: Any, version: str, target: dict[str, str], field: str
) -> None:
    alice = lifecycle.as_("alice")
    with pytest.raises(aio.AioRpcError) as err:
        await create_request(alice, version, **target)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err.value)[2][0][0] == field


async def test_unknown_request_is_not_found(lifecycle: Any) -> None:
    bob = lifecycle.as_("bob")
    name = f"models/fraud/transitionRequests/{uuid.uuid4().hex}"
    with pytest.raises(aio.AioRpcError) as err:
        await approve(bob, name)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(aio.AioRpcError) as err:
        await approve(bob, "models/fraud/transitionRequests/nope")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_rollback_of_protected_alias_opens_a_request(lifecycle: Any) -> None:
    for n in (1, 2):
        lifecycle.meta.add_version("fraud", n)
    alice, bob = lifecycle.as_("alice"), lifecycle.as_("bob")
    for n in (1, 2):
        await alice.aliases.SetAlias(
            alias_service_pb2.SetAliasRequest(name=ALIAS, version=v(n)), metadata=alice.metadata
        )
    await set_policy(alice, **protect_champion())
    rollback = await alice.aliases.RollbackAlias(
        alias_service_pb2.RollbackAliasRequest(name=ALIAS, reason="v2 degraded"),
        metadata=alice.metadata,
    )
    assert not rollback.HasField("alias")
    request = rollback.transition_request
    assert (request.version, request.alias, request.state, request.base) == (
        v(1),
        "champion",
        PENDING,
        "2",
    )
    assert (await approve(bob, request.name)).state == APPLIED
    assert await resolve_version(alice) == v(1)


async def test_stage_request_can_archive_displaced_versions(lifecycle: Any) -> None:
    for n in (1, 2):
        lifecycle.meta.add_version("fraud", n)
    alice, bob = lifecycle.as_("alice"), lifecycle.as_("bob")
    await alice.stages.TransitionStage(
        stage_service_pb2.TransitionStageRequest(name=v(1), stage="Production"),
        metadata=alice.metadata,
    )
    draft = transition_request_pb2.TransitionRequest(
        version=v(2), stage="Production", archive_existing_versions=True
    )
    created = await alice.requests.CreateTransitionRequest(
        transition_request_service_pb2.CreateTransitionRequestRequest(
            parent="models/fraud", transition_request=draft
        ),
        metadata=alice.metadata,
    )
    assert created.transition_request.archive_existing_versions
    assert (await approve(bob, created.transition_request.name)).state == APPLIED
    listed = await alice.stages.ListVersionStages(
        stage_service_pb2.ListVersionStagesRequest(parent="models/fraud"), metadata=alice.metadata
    )
    assert [(s.version, s.stage) for s in listed.version_stages] == [
        (v(1), "Archived"),
        (v(2), "Production"),
    ]
    draft = transition_request_pb2.TransitionRequest(
        version=v(2), alias="champion", archive_existing_versions=True
    )
    with pytest.raises(aio.AioRpcError) as err:
        await alice.requests.CreateTransitionRequest(
            transition_request_service_pb2.CreateTransitionRequestRequest(
                parent="models/fraud", transition_request=draft
            ),
            metadata=alice.metadata,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err.value)[2][0][0] == "transition_request.archive_existing_versions"


# -- the approvals queue across models -----------------------------------------------------------


async def test_requests_across_models_show_only_readable_ones(start_lifecycle: Any) -> None:
    life = await start_lifecycle(default_role="none")
    owner = access_pb2.ROLE_OWNER
    # alice owns fraud and churn, carol only reads fraud, dave reads nothing.
    life.meta.model_roles = {
        "alice": {"fraud": owner, "churn": owner},
        "carol": {"fraud": access_pb2.ROLE_VIEWER},
    }
    for model in ("fraud", "churn"):
        for n in (1, 2):
            life.meta.add_version(model, n)
    alice = life.as_("alice")
    for model in ("fraud", "churn"):
        await alice.requests.CreateTransitionRequest(
            transition_request_service_pb2.CreateTransitionRequestRequest(
                parent=f"models/{model}",
                transition_request=transition_request_pb2.TransitionRequest(
                    version=f"models/{model}/versions/2", alias="champion"
                ),
            ),
            metadata=alice.metadata,
        )

    async def queue(client: Any, page_size: int = 10) -> list[str]:
        reply = await client.requests.ListTransitionRequests(
            transition_request_service_pb2.ListTransitionRequestsRequest(
                parent="models/-", state=PENDING, page_size=page_size
            ),
            metadata=client.metadata,
        )
        return [r.name.split("/")[1] for r in reply.transition_requests]

    assert sorted(await queue(alice)) == ["churn", "fraud"]
    assert await queue(life.as_("carol"), page_size=1) == ["fraud"]
    with pytest.raises(aio.AioRpcError) as denied:
        await queue(life.as_("dave"))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
