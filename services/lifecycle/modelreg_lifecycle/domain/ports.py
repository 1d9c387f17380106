"""What the domain needs from the outside world, as protocols that store/ implements."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from modelreg_common.context import Principal
from modelreg_lifecycle.domain.models import (
    Alias,
    AliasAction,
    AliasHistoryEntry,
    Degradation,
    Deployment,
    Event,
    RecordedMetric,
    RequestState,
    Review,
    StageHistoryEntry,
    TransitionRequest,
    VersionInfo,
    VersionStage,
)
from modelreg_lifecycle.domain.policies import Policy


class VersionCatalog(Protocol):
    """The metadata service. Raises NotFound for an unknown version, Unavailable when down."""

    async def get_version(self, name: str) -> VersionInfo: ...

    async def get_run_metrics(self, run: str) -> Mapping[str, float]: ...

    async def record_deployment(self, deployment: Deployment) -> str:
        """Record the deployment as a lineage node (and its edge from the version); returns
        the node's name."""


class ApproverRoles(Protocol):
    async def has_role(self, principal: Principal, model: str, role: str) -> bool: ...


@dataclass(frozen=True)
class IdempotencyKey:
    """A create's request id; `encode` turns the created resource into the response bytes a
    replay gets back, saved in the create's own transaction."""

    request_id: str
    method: str
    digest: bytes
    encode: Callable[[Any], bytes]


@dataclass(frozen=True)
class AliasMove:
    model: str
    alias: str
    from_version: int | None
    to_version: int | None
    record: bytes | None
    action: AliasAction
    reason: str
    transition_request: str = ""


class Transaction(Protocol):
    """One database transaction; every write and its events commit together."""

    async def add_events(self, events: Sequence[Event]) -> None: ...

    async def idempotent_response(self, key: IdempotencyKey) -> bytes | None: ...

    async def save_response(self, key: IdempotencyKey, response: bytes) -> None: ...

    # Aliases: lock_alias serializes every move of one alias, even while it does not exist.
    async def lock_alias(self, model: str, alias: str) -> Alias | None: ...

    async def move_alias(self, move: AliasMove) -> Alias | None: ...

    async def refresh_record(self, model: str, alias: str, record: bytes) -> None: ...

    # Stages: lock_stages serializes the stage moves of one model.
    async def lock_stages(self, model: str) -> None: ...

    async def stage_of(self, model: str, version: int) -> str | None: ...

    async def versions_in_stage(self, model: str, stage: str) -> list[int]: ...

    async def move_stage(
        self,
        model: str,
        version: int,
        from_stage: str,
        to_stage: str,
        reason: str,
        transition_request: str = "",
    ) -> VersionStage: ...

    # Policies
    async def lock_policy(self, scope: str) -> Policy | None: ...

    async def save_policy(self, policy: Policy) -> Policy: ...

    async def delete_policy(self, scope: str) -> None: ...

    # Transition requests
    async def insert_request(self, request: TransitionRequest) -> TransitionRequest: ...

    async def lock_request(self, model: str, id: str) -> TransitionRequest | None: ...

    async def add_approval(self, model: str, id: str, reviewer: str, comment: str) -> bool: ...

    async def close_request(
        self,
        model: str,
        id: str,
        state: RequestState,
        *,
        review: Review | None = None,
        failure_reason: str = "",
    ) -> TransitionRequest: ...

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
        """Fail PENDING requests on this alias (or on this version's stage) whose base is no
        longer `current`; `exclude` is the name of a request being applied."""

    # Deployments and production metrics
    async def insert_deployment(self, deployment: Deployment) -> Deployment: ...

    async def insert_metrics(self, metrics: Sequence[RecordedMetric]) -> list[RecordedMetric]: ...

    async def open_degradation(self, degradation: Degradation) -> Degradation | None:
        """Open an episode; None when one is open already for the same series."""

    async def close_degradation(
        self, model: str, version: int, environment: str, metric: str
    ) -> Degradation | None: ...


class Store(Protocol):
    def begin(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def get_alias(self, model: str, alias: str) -> Alias | None: ...

    async def resolve(self, model: str, alias: str) -> tuple[int, bytes] | None: ...

    async def resolve_at(
        self, model: str, alias: str, at: datetime
    ) -> tuple[int, bytes] | None: ...

    async def list_aliases(self, model: str, after: str, limit: int) -> list[Alias]: ...

    async def alias_history(
        self,
        model: str,
        alias: str,
        before_id: int | None,
        limit: int,
        *,
        newest_first: bool = True,
    ) -> list[AliasHistoryEntry]: ...

    async def get_stage(self, model: str, version: int) -> VersionStage | None: ...

    async def list_stages(self, model: str) -> list[VersionStage]: ...

    async def stage_history(
        self, model: str, version: int | None, before_id: int | None, limit: int
    ) -> list[StageHistoryEntry]: ...

    async def policies_for(self, model: str) -> list[Policy]: ...

    async def get_policy(self, scope: str) -> Policy | None: ...

    async def get_request(self, model: str, id: str) -> TransitionRequest | None: ...

    async def list_requests(
        self,
        model: str | None,
        state: RequestState | None,
        before: tuple[datetime, str] | None,
        limit: int,
        *,
        readable: frozenset[str] | None = None,
    ) -> list[TransitionRequest]:
        """Newest first; `model` None means every model (narrowed to `readable` unless None)."""

    async def list_deployments(
        self,
        model: str,
        environment: str,
        current_only: bool,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Deployment]: ...

    async def list_degradations(
        self, model: str, open_only: bool, before_id: int | None, limit: int
    ) -> list[Degradation]: ...
