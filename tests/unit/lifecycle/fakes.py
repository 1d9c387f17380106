"""In-memory fakes of the lifecycle domain's ports: a store whose transactions roll back on
error, a version catalog, and approver roles."""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from modelreg_common.context import Principal, current_principal
from modelreg_common.errors import InvalidArgument, NotFound
from modelreg_lifecycle.domain.models import (
    Alias,
    AliasHistoryEntry,
    Degradation,
    Deployment,
    Event,
    RecordedMetric,
    RequestState,
    Review,
    StageHistoryEntry,
    TargetKind,
    TransitionRequest,
    VersionInfo,
    VersionStage,
)
from modelreg_lifecycle.domain.policies import Policy
from modelreg_lifecycle.domain.ports import AliasMove, IdempotencyKey


class Clock:
    """Strictly increasing times, so history order is time order."""

    def __init__(self) -> None:
        self._now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self._now += timedelta(seconds=1)
        return self._now


@dataclass
class State:
    aliases: dict[tuple[str, str], tuple[Alias, bytes]] = field(default_factory=dict)
    alias_history: list[tuple[AliasHistoryEntry, bytes | None]] = field(default_factory=list)
    stages: dict[tuple[str, int], VersionStage] = field(default_factory=dict)
    stage_history: list[StageHistoryEntry] = field(default_factory=list)
    policies: dict[str, Policy] = field(default_factory=dict)
    requests: dict[str, TransitionRequest] = field(default_factory=dict)
    deployments: list[Deployment] = field(default_factory=list)
    metrics: list[RecordedMetric] = field(default_factory=list)
    degradations: list[Degradation] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    responses: dict[str, bytes] = field(default_factory=dict)


class FakeTransaction:
    def __init__(self, state: State, clock: Clock, ids: itertools.count[int]) -> None:
        self.s = state
        self._clock = clock
        self._ids = ids

    async def add_events(self, events: Sequence[Event]) -> None:
        self.s.events.extend(events)

    async def idempotent_response(self, key: IdempotencyKey) -> bytes | None:
        return self.s.responses.get(key.request_id)

    async def save_response(self, key: IdempotencyKey, response: bytes) -> None:
        self.s.responses[key.request_id] = response

    async def lock_alias(self, model: str, alias: str) -> Alias | None:
        found = self.s.aliases.get((model, alias))
        return found[0] if found else None

    async def move_alias(self, move: AliasMove) -> Alias | None:
        now = self._clock()
        actor = current_principal().subject
        key = (move.model, move.alias)
        moved = None
        if move.to_version is None:
            self.s.aliases.pop(key, None)
        else:
            old = self.s.aliases.get(key)
            moved = Alias(
                move.model,
                move.alias,
                move.to_version,
                (old[0].revision + 1) if old else 1,
                actor,
                now,
            )
            self.s.aliases[key] = (moved, move.record or b"")
        entry = AliasHistoryEntry(
            next(self._ids),
            move.model,
            move.alias,
            move.from_version,
            move.to_version,
            move.action,
            actor,
            move.reason,
            now,
            "",
            move.transition_request,
        )
        self.s.alias_history.append((entry, move.record))
        return moved

    async def refresh_record(self, model: str, alias: str, record: bytes) -> None:
        alias_row, _ = self.s.aliases[(model, alias)]
        self.s.aliases[(model, alias)] = (alias_row, record)

    async def lock_stages(self, model: str) -> None:
        return None

    async def stage_of(self, model: str, version: int) -> str | None:
        found = self.s.stages.get((model, version))
        return found.stage if found else None

    async def versions_in_stage(self, model: str, stage: str) -> list[int]:
        return sorted(v for (m, v), s in self.s.stages.items() if m == model and s.stage == stage)

    async def move_stage(
        self,
        model: str,
        version: int,
        from_stage: str,
        to_stage: str,
        reason: str,
        transition_request: str = "",
    ) -> VersionStage:
        now = self._clock()
        actor = current_principal().subject
        stage = VersionStage(model, version, to_stage, actor, now)
        self.s.stages[(model, version)] = stage
        self.s.stage_history.append(
            StageHistoryEntry(
                next(self._ids),
                model,
                version,
                from_stage,
                to_stage,
                actor,
                reason,
                now,
                "",
                transition_request,
            )
        )
        return stage

    async def lock_policy(self, scope: str) -> Policy | None:
        return self.s.policies.get(scope)

    async def save_policy(self, policy: Policy) -> Policy:
        old = self.s.policies.get(policy.scope)
        saved = replace(
            policy,
            revision=(old.revision + 1) if old else 1,
            updater=current_principal().subject,
            update_time=self._clock(),
        )
        self.s.policies[policy.scope] = saved
        return saved

    async def delete_policy(self, scope: str) -> None:
        self.s.policies.pop(scope, None)

    async def insert_request(self, request: TransitionRequest) -> TransitionRequest:
        self.s.requests[request.id] = request
        return request

    async def lock_request(self, model: str, id: str) -> TransitionRequest | None:
        return self.s.requests.get(id)

    async def add_approval(self, model: str, id: str, reviewer: str, comment: str) -> bool:
        request = self.s.requests[id]
        if any(a.reviewer == reviewer for a in request.approvals):
            return False
        review = Review(reviewer, comment, self._clock())
        self.s.requests[id] = replace(request, approvals=(*request.approvals, review))
        return True

    async def close_request(
        self,
        model: str,
        id: str,
        state: RequestState,
        *,
        review: Review | None = None,
        failure_reason: str = "",
    ) -> TransitionRequest:
        closed = replace(
            self.s.requests[id],
            state=state,
            closing_review=review,
            failure_reason=failure_reason,
            update_time=self._clock(),
        )
        self.s.requests[id] = closed
        return closed

    async def fail_stale_requests(
        self,
        model: str,
        *,
        alias: str = "",
        version: int = 0,
        current: str,
        reason: str,
        exclude: str = "",
    ) -> list[TransitionRequest]:
        failed = []
        for request in list(self.s.requests.values()):
            if request.model != model or request.state is not RequestState.PENDING:
                continue
            if request.name == exclude or request.base == current:
                continue
            on_alias = (
                alias and request.target.kind is TargetKind.ALIAS and (request.target.name == alias)
            )
            on_stage = (
                not alias
                and request.target.kind is TargetKind.STAGE
                and (request.version == version)
            )
            if on_alias or on_stage:
                failed.append(
                    await self.close_request(
                        model, request.id, RequestState.FAILED, failure_reason=reason
                    )
                )
        return failed

    async def insert_deployment(self, deployment: Deployment) -> Deployment:
        self.s.deployments.append(deployment)
        return deployment

    async def insert_metrics(self, metrics: Sequence[RecordedMetric]) -> list[RecordedMetric]:
        self.s.metrics.extend(metrics)
        return list(metrics)

    async def open_degradation(self, degradation: Degradation) -> Degradation | None:
        for d in self.s.degradations:
            if d.end_time is None and (d.model, d.version, d.environment, d.metric) == (
                degradation.model,
                degradation.version,
                degradation.environment,
                degradation.metric,
            ):
                return None
        self.s.degradations.append(degradation)
        return degradation

    async def close_degradation(
        self, model: str, version: int, environment: str, metric: str
    ) -> Degradation | None:
        for i, d in enumerate(self.s.degradations):
            if d.end_time is None and (d.model, d.version, d.environment, d.metric) == (
                model,
                version,
                environment,
                metric,
            ):
                self.s.degradations[i] = replace(d, end_time=self._clock())
                return self.s.degradations[i]
        return None


class FakeStore:
    def __init__(self) -> None:
        self.state = State()
        self.clock = Clock()
        self._ids = itertools.count(1)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[FakeTransaction]:
        saved = copy.deepcopy(self.state)
        try:
            yield FakeTransaction(self.state, self.clock, self._ids)
        except BaseException:
            self.state = saved  # roll back
            raise

    async def get_alias(self, model: str, alias: str) -> Alias | None:
        found = self.state.aliases.get((model, alias))
        return found[0] if found else None

    async def resolve(self, model: str, alias: str) -> tuple[int, bytes] | None:
        found = self.state.aliases.get((model, alias))
        return (found[0].version, found[1]) if found else None

    async def resolve_at(self, model: str, alias: str, at: datetime) -> tuple[int, bytes] | None:
        last = None
        for entry, record in self.state.alias_history:
            if (entry.model, entry.alias) == (model, alias) and entry.time <= at:
                last = (entry, record)
        if last is None or last[0].to_version is None:
            return None
        return last[0].to_version, last[1] or b""

    async def list_aliases(self, model: str, after: str, limit: int) -> list[Alias]:
        found = sorted(
            (a for (m, name), (a, _) in self.state.aliases.items() if m == model and name > after),
            key=lambda a: a.alias,
        )
        return found[:limit]

    async def alias_history(
        self,
        model: str,
        alias: str,
        before_id: int | None,
        limit: int,
        *,
        newest_first: bool = True,
    ) -> list[AliasHistoryEntry]:
        entries = [e for e, _ in self.state.alias_history if (e.model, e.alias) == (model, alias)]
        if newest_first:
            entries = [e for e in reversed(entries) if before_id is None or e.id < before_id]
            return entries[:limit]
        return entries[-limit:]

    async def get_stage(self, model: str, version: int) -> VersionStage | None:
        return self.state.stages.get((model, version))

    async def list_stages(self, model: str) -> list[VersionStage]:
        return [s for (m, _), s in sorted(self.state.stages.items()) if m == model]

    async def stage_history(
        self, model: str, version: int | None, before_id: int | None, limit: int
    ) -> list[StageHistoryEntry]:
        return [
            e
            for e in reversed(self.state.stage_history)
            if e.model == model and (version is None or e.version == version)
        ][:limit]

    async def policies_for(self, model: str) -> list[Policy]:
        return [p for scope, p in self.state.policies.items() if scope in ("", model)]

    async def get_policy(self, scope: str) -> Policy | None:
        return self.state.policies.get(scope)

    async def get_request(self, model: str, id: str) -> TransitionRequest | None:
        found = self.state.requests.get(id)
        return found if found is not None and found.model == model else None

    async def list_requests(
        self,
        model: str | None,
        state: RequestState | None,
        before: Any,
        limit: int,
        *,
        readable: frozenset[str] | None = None,
    ) -> list[TransitionRequest]:
        return [
            r
            for r in reversed(self.state.requests.values())
            if (model is None or r.model == model)
            and (readable is None or r.model in readable)
            and (state is None or r.state is state)
        ][:limit]

    async def list_deployments(
        self, model: str, environment: str, current_only: bool, before: Any, limit: int
    ) -> list[Deployment]:
        return [d for d in reversed(self.state.deployments) if d.model == model][:limit]

    async def list_degradations(
        self, model: str, open_only: bool, before_id: int | None, limit: int
    ) -> list[Degradation]:
        return [
            d
            for d in reversed(self.state.degradations)
            if d.model == model and (not open_only or d.end_time is None)
        ][:limit]


@dataclass
class FakeCatalog:
    versions: dict[str, VersionInfo] = field(default_factory=dict)
    runs: dict[str, dict[str, float]] = field(default_factory=dict)
    deployments: list[Deployment] = field(default_factory=list)

    def add(self, model: str, number: int, **overrides: Any) -> str:
        name = f"models/{model}/versions/{number}"
        values: dict[str, Any] = {
            "name": name,
            "model": model,
            "version": number,
            "state": "READY",
            "run": "",
            "tags": {},
            "has_signature": True,
            "record": name.encode(),
        }
        values.update(overrides)
        self.versions[name] = VersionInfo(**values)
        return name

    async def get_version(self, name: str) -> VersionInfo:
        if name not in self.versions:
            raise NotFound(name, kind="model version")
        return self.versions[name]

    async def get_run_metrics(self, run: str) -> Mapping[str, float]:
        if run not in self.runs:
            raise NotFound(run, kind="run")
        return self.runs[run]

    async def record_deployment(self, deployment: Deployment) -> str:
        self.deployments.append(deployment)
        return f"deployments/{deployment.id}"


class FakeRoles:
    def __init__(self, approvers: set[str] | None = None) -> None:
        self.approvers = approvers

    async def has_role(self, principal: Principal, model: str, role: str) -> bool:
        return self.approvers is None or principal.subject in self.approvers


__all__ = ["Clock", "FakeCatalog", "FakeRoles", "FakeStore", "InvalidArgument"]
