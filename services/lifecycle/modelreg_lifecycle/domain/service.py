"""The lifecycle's use cases. Owns the transactions: each move, its history, the requests it
makes stale and its events commit together.

Peers are called before a transaction starts, never while a connection is held.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from modelreg_common.access import readable_models
from modelreg_common.context import Principal, current_principal
from modelreg_common.errors import (
    DomainError,
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from modelreg_common.logs import get_logger
from modelreg_common.names import parse_model, parse_model_version
from modelreg_lifecycle.domain.history import rollback_target
from modelreg_lifecycle.domain.models import (
    Alias,
    AliasAction,
    AliasHistoryEntry,
    Degradation,
    Deployment,
    DeploymentStatus,
    Event,
    MetricValue,
    RecordedMetric,
    RequestState,
    Review,
    Target,
    TargetKind,
    TransitionRequest,
    VersionInfo,
    VersionStage,
)
from modelreg_lifecycle.domain.names import (
    AliasName,
    check_alias,
    check_environment,
    check_text,
    parse_alias_name,
    parse_policy_name,
    parse_reference,
    parse_request_name,
)
from modelreg_lifecycle.domain.policies import (
    Policy,
    Requirements,
    RuleDraft,
    build_policy,
    check_failure_metadata,
    check_metric_name,
    check_metric_value,
    effective_thresholds,
    failed_checks,
    needs_run_metrics,
    requirements,
)
from modelreg_lifecycle.domain.ports import (
    AliasMove,
    ApproverRoles,
    IdempotencyKey,
    Store,
    Transaction,
    VersionCatalog,
)

log = get_logger("modelreg.lifecycle")

MAX_METRICS_PER_CALL = 100
MAX_ENDPOINT = 2048


@dataclass(frozen=True)
class StageConfig:
    """The registry's stages in order; the first is where versions start."""

    stages: tuple[str, ...]
    archive_stage: str

    @property
    def initial(self) -> str:
        return self.stages[0]


@dataclass(frozen=True)
class RollbackResult:
    alias: Alias | None = None
    request: TransitionRequest | None = None


@dataclass(frozen=True)
class StageMoveResult:
    stage: VersionStage
    archived: tuple[VersionStage, ...] = ()


def _same_model(model: str, version_name: str, field: str) -> int:
    version = parse_model_version(version_name, field)
    if version.model != model:
        raise InvalidArgument(field, f"must be a version of models/{model}, got {version_name!r}")
    return version.version


def _version_name(model: str, version: int | None) -> str:
    return f"models/{model}/versions/{version}" if version is not None else ""


def _is_system(principal: Principal) -> bool:
    return principal.method == "internal"


class LifecycleService:
    def __init__(
        self,
        store: Store,
        catalog: VersionCatalog,
        roles: ApproverRoles,
        stages: StageConfig,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._roles = roles
        self._stages = stages

    @property
    def stages(self) -> StageConfig:
        return self._stages

    # -- shared checks ----------------------------------------------------------------------

    async def _requirements(self, model: str, target: Target) -> Requirements:
        return requirements(await self._store.policies_for(model), target)

    async def _verify(self, info: VersionInfo, reqs: Requirements, target: Target) -> None:
        """The policy's checks against the version as metadata reports it now."""
        metrics: Mapping[str, float] | None = None
        if needs_run_metrics(reqs.checks) and info.run:
            metrics = await self._catalog.get_run_metrics(info.run)
        failures = failed_checks(reqs.checks, info, metrics)
        if failures:
            meta = check_failure_metadata(failures)
            meta["version"] = info.name
            meta["target"] = str(target)
            raise FailedPrecondition(
                f"policy checks failed for {info.name} -> {target}: "
                + "; ".join(f"{t} ({why})" for t, why in failures),
                metadata=meta,
            )

    async def _ready_version(self, name: str) -> VersionInfo:
        info = await self._catalog.get_version(name)
        if not info.ready:
            raise FailedPrecondition(
                f"{name} is {info.state}; only READY versions can be promoted",
                from_state=info.state,
                to_state="READY",
                metadata={"name": name},
            )
        return info

    # -- aliases ----------------------------------------------------------------------------

    async def set_alias(
        self, name: str, version_name: str, expected: int | None, reason: str
    ) -> Alias:
        alias = parse_alias_name(name)
        version = _same_model(alias.model, version_name, "version")
        check_text(reason, "reason")
        if expected is not None and expected < 0:
            raise InvalidArgument("expected_version", "must be 0 (absent) or a version number")
        target = Target(TargetKind.ALIAS, alias.alias)
        reqs = await self._requirements(alias.model, target)
        if reqs.protected:
            raise FailedPrecondition(
                f"alias {alias} is protected by {', '.join(reqs.policies)}: move it through a "
                "transition request",
                metadata={
                    "name": str(alias),
                    "protected": "true",
                    "policy": ",".join(reqs.policies),
                },
            )
        info = await self._ready_version(version_name)
        await self._verify(info, reqs, target)
        async with self._store.begin() as tx:
            moved = await self._move_alias(
                tx, alias, version, info.record, expected, AliasAction.SET, reason
            )
        assert moved is not None
        return moved

    async def _move_alias(
        self,
        tx: Transaction,
        alias: AliasName,
        version: int | None,
        record: bytes | None,
        expected: int | None,
        action: AliasAction,
        reason: str,
        transition_request: str = "",
    ) -> Alias | None:
        current = await tx.lock_alias(alias.model, alias.alias)
        held = current.version if current is not None else None
        if expected is not None and (held or 0) != expected:
            error = EtagMismatch(str(alias))
            error.metadata["current_version"] = str(held or 0)
            error.metadata["expected_version"] = str(expected)
            raise error
        if version is None and current is None:
            raise NotFound(str(alias), kind="alias")
        if version is not None and held == version and action is AliasAction.SET:
            # Already there: no move, no history, no event; only the stored record is
            # refreshed (tags may have changed since the alias moved).
            if record is not None:
                await tx.refresh_record(alias.model, alias.alias, record)
            return current
        moved = await tx.move_alias(
            AliasMove(
                alias.model, alias.alias, held, version, record, action, reason, transition_request
            )
        )
        data = {
            "alias": alias.alias,
            "alias_name": str(alias),
            "from_version": _version_name(alias.model, held),
            "to_version": _version_name(alias.model, version),
            "action": action.value,
            "reason": reason,
        }
        if transition_request:
            data["transition_request"] = transition_request
        events = [
            Event(
                "model_version.alias_deleted" if version is None else "model_version.alias_set",
                _version_name(alias.model, held if version is None else version),
                data,
            )
        ]
        stale = await tx.fail_stale_requests(
            alias.model,
            alias=alias.alias,
            current=str(version or ""),
            exclude=transition_request,
            reason=f"alias {alias.alias} moved to "
            f"{_version_name(alias.model, version) or 'nothing'} after the request was made",
        )
        events += [self._request_event(r, "failed") for r in stale]
        await tx.add_events(events)
        return moved

    async def get_alias(self, name: str) -> Alias:
        alias = parse_alias_name(name)
        found = await self._store.get_alias(alias.model, alias.alias)
        if found is None:
            raise NotFound(str(alias), kind="alias")
        return found

    async def delete_alias(self, name: str, expected: int | None, reason: str) -> None:
        alias = parse_alias_name(name)
        check_text(reason, "reason")
        if expected is not None and expected <= 0:
            raise InvalidArgument("expected_version", "must be a version number")
        reqs = await self._requirements(alias.model, Target(TargetKind.ALIAS, alias.alias))
        if reqs.protected:
            raise FailedPrecondition(
                f"alias {alias} is protected by {', '.join(reqs.policies)}; it cannot be deleted",
                metadata={"name": str(alias), "protected": "true"},
            )
        async with self._store.begin() as tx:
            await self._move_alias(tx, alias, None, None, expected, AliasAction.DELETE, reason)

    async def list_aliases(self, parent: str, after: str, limit: int) -> list[Alias]:
        model = parse_model(parent, "parent")
        return await self._store.list_aliases(model.model, after, limit)

    async def resolve(self, reference: str, at: datetime | None) -> tuple[AliasName, bytes]:
        """One indexed read, no peer call: the record was stored when the alias moved."""
        alias = parse_reference(reference)
        found = (
            await self._store.resolve(alias.model, alias.alias)
            if at is None
            else await self._store.resolve_at(alias.model, alias.alias, at)
        )
        if found is None:
            when = "" if at is None else f" at {at.astimezone(UTC).isoformat()}"
            raise NotFound(f"{alias}{when}", kind="alias")
        return alias, found[1]

    async def alias_history(
        self, name: str, before_id: int | None, limit: int
    ) -> list[AliasHistoryEntry]:
        alias = parse_alias_name(name)
        return await self._store.alias_history(alias.model, alias.alias, before_id, limit)

    async def rollback(self, name: str, reason: str) -> RollbackResult:
        alias = parse_alias_name(name)
        check_text(reason, "reason")
        current = await self._store.get_alias(alias.model, alias.alias)
        if current is None:
            raise NotFound(str(alias), kind="alias")
        history = await self._store.alias_history(
            alias.model, alias.alias, None, 1000, newest_first=False
        )
        previous = rollback_target(history)
        if previous is None:
            raise FailedPrecondition(
                f"{alias} has no previous version to roll back to",
                metadata={"name": str(alias)},
            )
        version_name = _version_name(alias.model, previous)
        target = Target(TargetKind.ALIAS, alias.alias)
        reqs = await self._requirements(alias.model, target)
        if reqs.protected:
            request = await self.create_request(
                f"models/{alias.model}",
                version_name,
                target,
                reason or f"rollback of {alias.alias} from version {current.version}",
                None,
            )
            assert isinstance(request, TransitionRequest)
            return RollbackResult(request=request)
        info = await self._ready_version(version_name)
        await self._verify(info, reqs, target)
        async with self._store.begin() as tx:
            moved = await self._move_alias(
                tx, alias, previous, info.record, current.version, AliasAction.ROLLBACK, reason
            )
        return RollbackResult(alias=moved)

    # -- stages -----------------------------------------------------------------------------

    def _check_stage(self, stage: str, field: str) -> str:
        if stage not in self._stages.stages:
            raise InvalidArgument(
                field,
                f"unknown stage {stage[:100]!r}; "
                f"this registry has: {', '.join(self._stages.stages)}",
            )
        return stage

    def _needs_ready(self, stage: str) -> bool:
        return stage not in (self._stages.initial, self._stages.archive_stage)

    async def transition_stage(
        self, name: str, stage: str, archive_existing: bool, reason: str
    ) -> StageMoveResult:
        version = parse_model_version(name)
        self._check_stage(stage, "stage")
        check_text(reason, "reason")
        if archive_existing and self._stages.archive_stage not in self._stages.stages:
            raise FailedPrecondition(
                "this registry has no archive stage", metadata={"stage": self._stages.archive_stage}
            )
        target = Target(TargetKind.STAGE, stage)
        reqs = await self._requirements(version.model, target)
        if reqs.protected:
            raise FailedPrecondition(
                f"stage {stage} is protected by {', '.join(reqs.policies)}: move the version "
                "through a transition request",
                metadata={"name": name, "protected": "true", "policy": ",".join(reqs.policies)},
            )
        info = (
            await self._ready_version(name)
            if self._needs_ready(stage)
            else await self._catalog.get_version(name)
        )
        await self._verify(info, reqs, target)
        async with self._store.begin() as tx:
            return await self._move_stage(
                tx, version.model, version.version, stage, archive_existing, reason
            )

    async def _move_stage(
        self,
        tx: Transaction,
        model: str,
        version: int,
        stage: str,
        archive_existing: bool,
        reason: str,
        transition_request: str = "",
        base: str | None = None,
    ) -> StageMoveResult:
        await tx.lock_stages(model)
        current = await tx.stage_of(model, version) or self._stages.initial
        if base is not None and current != base:
            raise _Stale(f"the version moved from stage {base} to {current} meanwhile")
        events: list[Event] = []
        archived: list[VersionStage] = []
        if archive_existing and stage != self._stages.archive_stage:
            for other in await tx.versions_in_stage(model, stage):
                if other == version:
                    continue
                archived.append(
                    await tx.move_stage(
                        model, other, stage, self._stages.archive_stage, f"archived: {reason}"
                    )
                )
                events.append(
                    self._stage_event(model, other, stage, self._stages.archive_stage, reason)
                )
        if current == stage:
            moved = VersionStage(model, version, stage)
        else:
            moved = await tx.move_stage(model, version, current, stage, reason, transition_request)
            events.append(
                self._stage_event(model, version, current, stage, reason, transition_request)
            )
            stale = await tx.fail_stale_requests(
                model,
                version=version,
                current=stage,
                exclude=transition_request,
                reason=f"the version moved to stage {stage} after the request was made",
            )
            events += [self._request_event(r, "failed") for r in stale]
        await tx.add_events(events)
        return StageMoveResult(moved, tuple(archived))

    @staticmethod
    def _stage_event(
        model: str, version: int, from_stage: str, to_stage: str, reason: str, request: str = ""
    ) -> Event:
        data: dict[str, object] = {"from_stage": from_stage, "to_stage": to_stage, "reason": reason}
        if request:
            data["transition_request"] = request
        return Event("model_version.stage_changed", _version_name(model, version), data)

    async def get_stage(self, name: str) -> VersionStage:
        version = parse_model_version(name)
        found = await self._store.get_stage(version.model, version.version)
        return found or VersionStage(version.model, version.version, self._stages.initial)

    async def list_stages(self, parent: str) -> list[VersionStage]:
        model = parse_model(parent, "parent")
        return [
            s for s in await self._store.list_stages(model.model) if s.stage != self._stages.initial
        ]

    async def stage_history(self, parent: str, before_id: int | None, limit: int) -> list[object]:
        if "/versions/" in parent:
            version = parse_model_version(parent, "parent")
            model, number = version.model, version.version
        else:
            model, number = parse_model(parent, "parent").model, None
        return list(await self._store.stage_history(model, number, before_id, limit))

    # -- policies ---------------------------------------------------------------------------

    async def set_policy(
        self,
        name: str,
        rules: Sequence[RuleDraft],
        thresholds: Sequence[str],
        etag: int | None,
    ) -> Policy:
        scope = parse_policy_name(name, "policy.name")
        policy = build_policy(scope, rules, thresholds, self._stages.stages)
        async with self._store.begin() as tx:
            current = await tx.lock_policy(scope)
            if etag is not None and (current.revision if current else 0) != etag:
                raise EtagMismatch(name)
            saved = await tx.save_policy(policy)
            await tx.add_events([Event("policy.updated", name, {"revision": saved.revision})])
        return saved

    async def get_policy(self, name: str) -> Policy:
        scope = parse_policy_name(name)
        found = await self._store.get_policy(scope)
        if found is None:
            raise NotFound(name, kind="policy")
        return found

    async def delete_policy(self, name: str) -> None:
        scope = parse_policy_name(name)
        async with self._store.begin() as tx:
            if await tx.lock_policy(scope) is None:
                raise NotFound(name, kind="policy")
            await tx.delete_policy(scope)
            await tx.add_events([Event("policy.deleted", name, {})])

    # -- transition requests ----------------------------------------------------------------

    def _check_target(self, target: Target, field: str) -> Target:
        if target.kind is TargetKind.ALIAS:
            check_alias(target.name, f"{field}.alias")
        else:
            self._check_stage(target.name, f"{field}.stage")
        return target

    async def create_request(
        self,
        parent: str,
        version_name: str,
        target: Target | None,
        comment: str,
        key: IdempotencyKey | None,
        archive_existing: bool = False,
    ) -> TransitionRequest | bytes:
        """The new PENDING request, or the saved response bytes of an earlier identical call."""
        model = parse_model(parent, "parent").model
        version = _same_model(model, version_name, "transition_request.version")
        if target is None:
            raise InvalidArgument("transition_request.alias", "set the target: an alias or a stage")
        self._check_target(target, "transition_request")
        if archive_existing and target.kind is not TargetKind.STAGE:
            raise InvalidArgument(
                "transition_request.archive_existing_versions", "applies to stage targets only"
            )
        check_text(comment, "transition_request.comment")
        if key is not None:
            async with self._store.begin() as tx:
                saved = await tx.idempotent_response(key)
            if saved is not None:
                return saved
        await self._catalog.get_version(version_name)
        reqs = await self._requirements(model, target)
        if target.kind is TargetKind.ALIAS:
            current_alias = await self._store.get_alias(model, target.name)
            base = str(current_alias.version) if current_alias else ""
        else:
            found = await self._store.get_stage(model, version)
            base = found.stage if found else self._stages.initial
        now = datetime.now(UTC)
        request = TransitionRequest(
            id=uuid.uuid4().hex,
            model=model,
            version=version,
            target=target,
            comment=comment,
            state=RequestState.PENDING,
            requester=current_principal().subject,
            base=base,
            required_approvals=reqs.required_approvals,
            create_time=now,
            update_time=now,
            archive_existing=archive_existing,
        )
        async with self._store.begin() as tx:
            if key is not None:
                saved = await tx.idempotent_response(key)
                if saved is not None:
                    return saved
            created = await tx.insert_request(request)
            await tx.add_events([self._request_event(created, "created")])
            if key is not None:
                await tx.save_response(key, key.encode(created))
        return created

    @staticmethod
    def _request_event(request: TransitionRequest, action: str) -> Event:
        data: dict[str, object] = {
            "version": request.version_name,
            "target_kind": request.target.kind.value,
            "target": request.target.name,
            "state": request.state.value,
            "requester": request.requester,
        }
        if request.failure_reason:
            data["failure_reason"] = request.failure_reason
        return Event(f"transition_request.{action}", request.name, data)

    async def get_request(self, name: str) -> TransitionRequest:
        parsed = parse_request_name(name)
        found = await self._store.get_request(parsed.model, parsed.id)
        if found is None:
            raise NotFound(name, kind="transition request")
        return found

    async def list_requests(
        self,
        parent: str,
        state: RequestState | None,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[TransitionRequest]:
        # `models/-`: across models, narrowed to those the caller may read.
        if parent == "models/-":
            return await self._store.list_requests(
                None, state, before, limit, readable=readable_models()
            )
        model = parse_model(parent, "parent").model
        return await self._store.list_requests(model, state, before, limit)

    async def _authorize_review(self, request: TransitionRequest, verb: str) -> Principal:
        principal = current_principal()
        if principal.subject == request.requester:
            raise PermissionDenied(
                f"the requester cannot {verb} their own transition request",
                permission=f"transition_requests.{verb}",
                resource=request.name,
            )
        reqs = await self._requirements(request.model, request.target)
        for role in reqs.approver_roles:
            if not await self._roles.has_role(principal, request.model, role):
                raise PermissionDenied(
                    f"{verb} needs the {role!r} role on models/{request.model}",
                    permission=f"transition_requests.{verb}",
                    resource=request.name,
                )
        return principal

    @staticmethod
    def _require_pending(request: TransitionRequest) -> None:
        if request.state is not RequestState.PENDING:
            raise FailedPrecondition(
                f"{request.name} is {request.state.value}, not PENDING",
                from_state=request.state.value,
                to_state=RequestState.PENDING.value,
                metadata={"name": request.name},
            )

    async def approve(self, name: str, comment: str) -> TransitionRequest:
        check_text(comment, "comment")
        request = await self.get_request(name)
        self._require_pending(request)
        principal = await self._authorize_review(request, "approve")
        reqs = await self._requirements(request.model, request.target)
        try:
            info = await self._catalog.get_version(request.version_name)
        except NotFound:
            return await self._fail(request, f"{request.version_name} was deleted")
        needs_ready = request.target.kind is TargetKind.ALIAS or self._needs_ready(
            request.target.name
        )
        if needs_ready and not info.ready:
            raise FailedPrecondition(
                f"{info.name} is {info.state}; only READY versions can be promoted",
                from_state=info.state,
                to_state="READY",
                metadata={"name": info.name},
            )
        await self._verify(info, reqs, request.target)
        async with self._store.begin() as tx:
            locked = await tx.lock_request(request.model, request.id)
            assert locked is not None
            self._require_pending(locked)
            added = await tx.add_approval(request.model, request.id, principal.subject, comment)
            events: list[Event] = []
            if added:
                # Recorded before the move it may trigger, so the log reads in causal order.
                await tx.add_events(
                    [
                        Event(
                            "transition_request.approved",
                            request.name,
                            {"approver": principal.subject, "comment": comment},
                        )
                    ]
                )
            approvals = len(locked.approvals) + (1 if added else 0)
            if approvals >= reqs.required_approvals:
                try:
                    await self._apply(tx, locked, info)
                except _Stale as stale:
                    failed = await tx.close_request(
                        request.model, request.id, RequestState.FAILED, failure_reason=str(stale)
                    )
                    events.append(self._request_event(failed, "failed"))
                else:
                    applied = await tx.close_request(
                        request.model, request.id, RequestState.APPLIED
                    )
                    events.append(self._request_event(applied, "applied"))
            await tx.add_events(events)
            result = await tx.lock_request(request.model, request.id)
        assert result is not None
        return result

    async def _apply(self, tx: Transaction, request: TransitionRequest, info: VersionInfo) -> None:
        if request.target.kind is TargetKind.ALIAS:
            alias = AliasName(request.model, request.target.name)
            current = await tx.lock_alias(alias.model, alias.alias)
            held = str(current.version) if current else ""
            if held != request.base:
                before = (
                    _version_name(request.model, int(request.base)) if request.base else "nothing"
                )
                now = current.version_name if current else "nothing"
                raise _Stale(f"alias {alias.alias} moved from {before} to {now} meanwhile")
            await self._move_alias(
                tx,
                alias,
                request.version,
                info.record,
                None,
                AliasAction.SET,
                request.comment,
                transition_request=request.name,
            )
        else:
            await self._move_stage(
                tx,
                request.model,
                request.version,
                request.target.name,
                request.archive_existing,
                request.comment,
                transition_request=request.name,
                base=request.base,
            )

    async def _fail(self, request: TransitionRequest, reason: str) -> TransitionRequest:
        async with self._store.begin() as tx:
            locked = await tx.lock_request(request.model, request.id)
            assert locked is not None
            self._require_pending(locked)
            failed = await tx.close_request(
                request.model, request.id, RequestState.FAILED, failure_reason=reason
            )
            await tx.add_events([self._request_event(failed, "failed")])
        return failed

    async def reject(self, name: str, comment: str) -> TransitionRequest:
        return await self._close(name, comment, RequestState.REJECTED, "reject", "rejected")

    async def cancel(self, name: str, comment: str) -> TransitionRequest:
        return await self._close(name, comment, RequestState.CANCELLED, "cancel", "cancelled")

    async def _close(
        self, name: str, comment: str, state: RequestState, verb: str, event: str
    ) -> TransitionRequest:
        check_text(comment, "comment")
        request = await self.get_request(name)
        if state is RequestState.CANCELLED:
            principal = current_principal()
            if principal.subject != request.requester and not _is_system(principal):
                raise PermissionDenied(
                    "only the requester can cancel a transition request",
                    permission="transition_requests.cancel",
                    resource=name,
                )
        else:
            self._require_pending(request)
            principal = await self._authorize_review(request, verb)
        review = Review(principal.subject, comment, datetime.now(UTC))
        async with self._store.begin() as tx:
            locked = await tx.lock_request(request.model, request.id)
            assert locked is not None
            self._require_pending(locked)
            closed = await tx.close_request(request.model, request.id, state, review=review)
            await tx.add_events([self._request_event(closed, event)])
        return closed

    # -- deployments ------------------------------------------------------------------------

    async def record_deployment(
        self,
        parent: str,
        version_name: str,
        environment: str,
        endpoint: str,
        status: DeploymentStatus | None,
        key: IdempotencyKey | None,
    ) -> Deployment | bytes:
        model = parse_model(parent, "parent").model
        version = _same_model(model, version_name, "deployment.version")
        check_environment(environment, "deployment.environment")
        if not endpoint or len(endpoint) > MAX_ENDPOINT:
            raise InvalidArgument("deployment.endpoint", f"1-{MAX_ENDPOINT} characters")
        if status is None:
            raise InvalidArgument("deployment.status", "must be set")
        if key is not None:
            async with self._store.begin() as tx:
                saved = await tx.idempotent_response(key)
            if saved is not None:
                return saved
        await self._catalog.get_version(version_name)
        deployment = Deployment(
            id=uuid.uuid4().hex,
            model=model,
            version=version,
            environment=environment,
            endpoint=endpoint,
            status=status,
            recorder=current_principal().subject,
            create_time=datetime.now(UTC),
        )
        # Lineage first, outside the transaction (never hold a connection over a peer call).
        # It is best effort: the record matters more than its lineage node, and recording the
        # node again is idempotent in metadata.
        try:
            node = await self._catalog.record_deployment(deployment)
        except DomainError as exc:
            log.warning("deployment.lineage_failed", deployment=deployment.name, error=str(exc))
            node = ""
        deployment = replace(deployment, lineage_node=node)
        async with self._store.begin() as tx:
            if key is not None:
                saved = await tx.idempotent_response(key)
                if saved is not None:
                    return saved
            recorded = await tx.insert_deployment(deployment)
            if key is not None:
                await tx.save_response(key, key.encode(recorded))
            await tx.add_events(
                [
                    Event(
                        "deployment.recorded",
                        recorded.name,
                        {
                            "version": recorded.version_name,
                            "environment": environment,
                            "endpoint": endpoint,
                            "status": status.value,
                            "lineage_node": node,
                        },
                    )
                ]
            )
        return recorded

    async def list_deployments(
        self,
        parent: str,
        environment: str,
        current_only: bool,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Deployment]:
        model = parse_model(parent, "parent").model
        if environment:
            check_environment(environment, "environment")
        return await self._store.list_deployments(model, environment, current_only, before, limit)

    # -- production metrics -----------------------------------------------------------------

    async def record_metrics(
        self, version_name: str, environment: str, values: Sequence[MetricValue]
    ) -> tuple[list[RecordedMetric], list[Degradation]]:
        version = parse_model_version(version_name, "version")
        check_environment(environment, "environment")
        if not values:
            raise InvalidArgument("metrics", "send at least one metric")
        if len(values) > MAX_METRICS_PER_CALL:
            raise InvalidArgument("metrics", f"at most {MAX_METRICS_PER_CALL} per call")
        for i, value in enumerate(values):
            check_metric_name(value.metric, f"metrics[{i}].metric")
            check_metric_value(value.value, f"metrics[{i}].value")
            if value.window_seconds < 0:
                raise InvalidArgument(f"metrics[{i}].window", "must not be negative")
        await self._catalog.get_version(version_name)
        thresholds = effective_thresholds(await self._store.policies_for(version.model))
        now = datetime.now(UTC)
        rows = [
            RecordedMetric(
                version.model,
                version.version,
                environment,
                v.metric,
                v.value,
                v.window_seconds,
                now,
            )
            for v in values
        ]
        opened: list[Degradation] = []
        async with self._store.begin() as tx:
            recorded = await tx.insert_metrics(rows)
            events = [
                Event(
                    "production_metrics.recorded",
                    version_name,
                    {
                        "environment": environment,
                        "metrics": {r.metric: r.value for r in recorded},
                    },
                )
            ]
            for row in recorded:
                threshold = thresholds.get(row.metric)
                if threshold is None:
                    continue
                if threshold.holds(row.value):
                    closed = await tx.close_degradation(
                        row.model, row.version, environment, row.metric
                    )
                    if closed is not None:
                        events.append(self._degradation_event("recovered", closed, row.value))
                    continue
                episode = await tx.open_degradation(
                    Degradation(
                        row.model,
                        row.version,
                        environment,
                        row.metric,
                        str(threshold),
                        row.value,
                        now,
                    )
                )
                if episode is not None:
                    opened.append(episode)
                    events.append(self._degradation_event("degraded", episode, row.value))
            await tx.add_events(events)
        return recorded, opened

    @staticmethod
    def _degradation_event(action: str, episode: Degradation, value: float) -> Event:
        return Event(
            f"production_metrics.{action}",
            _version_name(episode.model, episode.version),
            {
                "environment": episode.environment,
                "metric": episode.metric,
                "threshold": episode.threshold,
                "value": value,
            },
        )

    async def list_degradations(
        self, parent: str, open_only: bool, before_id: int | None, limit: int
    ) -> list[Degradation]:
        model = parse_model(parent, "parent").model
        return await self._store.list_degradations(model, open_only, before_id, limit)


class _Stale(Exception):
    """The request's premise no longer holds; it fails with this reason."""
