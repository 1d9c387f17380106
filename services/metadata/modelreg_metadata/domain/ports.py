"""What the domain needs from the outside world: the store (one unit of work at a time) and
two peers. `store/` implements them; unit tests use in-memory fakes."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from modelreg_common.access import Role
from modelreg_metadata.domain.models import (
    ApiKey,
    ApiKeyDraft,
    Binding,
    Direction,
    Event,
    Experiment,
    IamPolicy,
    IdempotencyKey,
    LineageEdge,
    LineageGraph,
    LineageNode,
    ListQuery,
    Manifest,
    MetricPoint,
    ModelVersion,
    ModelVersionDraft,
    Page,
    RegisteredModel,
    Run,
    RunDraft,
    RunStatus,
)


class RegisteredModelRepo(Protocol):
    async def get(self, name: str, *, for_update: bool = False) -> RegisteredModel | None: ...

    async def create(
        self, name: str, description: str, tags: Mapping[str, str], created_by: str
    ) -> RegisteredModel: ...

    async def save(self, model: RegisteredModel, *, tags_changed: bool) -> RegisteredModel: ...

    async def rename(self, old: str, new: str) -> RegisteredModel: ...

    async def delete(self, name: str) -> list[int]: ...

    async def search(
        self, query: ListQuery, *, readable: Collection[str] | None = None
    ) -> Page[RegisteredModel]:
        """`readable`: only these model ids (None: all), applied inside the query."""


class ModelVersionRepo(Protocol):
    async def get(
        self, model: str, version: int, *, for_update: bool = False
    ) -> ModelVersion | None: ...

    async def create(
        self,
        model: str,
        draft: ModelVersionDraft,
        created_by: str,
        event_data: dict[str, Any],
    ) -> tuple[ModelVersion | None, bool]:
        """Also records the `model_version.created` event (event_data + model, version)."""

    async def save(
        self, version: ModelVersion, *, tags_changed: bool, signature_changed: bool
    ) -> ModelVersion: ...

    async def set_run_edge(self, version: ModelVersion, old_run: str) -> None: ...

    async def delete(self, model: str, version: int) -> bool: ...

    async def search(
        self, model: str | None, query: ListQuery, *, readable: Collection[str] | None = None
    ) -> Page[ModelVersion]: ...


class ExperimentRepo(Protocol):
    async def get(self, name: str, *, for_update: bool = False) -> Experiment | None: ...

    async def create(
        self, name: str, description: str, tags: Mapping[str, str], created_by: str
    ) -> Experiment: ...

    async def save(self, experiment: Experiment) -> Experiment: ...

    async def search(self, query: ListQuery, *, show_deleted: bool) -> Page[Experiment]: ...


class RunRepo(Protocol):
    async def get(
        self, experiment: str, run_id: str, *, for_update: bool = False
    ) -> Run | None: ...

    async def create(
        self, experiment: str, run_id: str, draft: RunDraft, status: RunStatus, created_by: str
    ) -> Run | None: ...

    async def save(self, run: Run) -> Run: ...

    async def log_metrics(
        self, experiment: str, run_id: str, metrics: Sequence[MetricPoint]
    ) -> None: ...

    async def touch(self, experiment: str, run_id: str) -> None: ...

    async def metric_history(
        self, experiment: str, run_id: str, key: str, page_size_requested: int, token: str
    ) -> Page[MetricPoint]: ...

    async def delete(self, experiment: str, run_id: str) -> bool: ...

    async def search(self, experiment: str | None, query: ListQuery) -> Page[Run]: ...


class LineageRepo(Protocol):
    async def upsert_nodes(self, nodes: Sequence[LineageNode]) -> None: ...

    async def node_types(self, names: Sequence[str]) -> dict[str, str]: ...

    async def add_edges(self, edges: Sequence[LineageEdge]) -> list[LineageEdge]: ...

    async def walk(
        self, start: str, direction: Direction, max_hops: int, max_nodes: int, filter_text: str
    ) -> LineageGraph: ...


class ApiKeyRepo(Protocol):
    async def create(
        self,
        key_id: str,
        draft: ApiKeyDraft,
        principal: str,
        secret_sha256: bytes,
        secret_prefix: str,
        created_by: str,
        request_id: str,
    ) -> ApiKey: ...

    async def get(self, key_id: str, *, for_update: bool = False) -> ApiKey | None: ...

    async def revoke(self, key_id: str) -> ApiKey: ...

    async def find_active(self, secret_sha256: bytes) -> tuple[ApiKey, bytes] | None:
        """The unrevoked, unexpired key with this secret hash, and the stored hash."""

    async def search(
        self, principal: str | None, show_revoked: bool, query: ListQuery
    ) -> Page[ApiKey]: ...


class PolicyRepo(Protocol):
    async def get(self, resource: str, *, for_update: bool = False) -> IamPolicy:
        """The policy, or the empty one at revision 0 when none was ever set."""

    async def replace(
        self, resource: str, bindings: Sequence[Binding], updated_by: str
    ) -> IamPolicy: ...

    async def move(self, old: str, new: str) -> None: ...

    async def delete(self, resource: str) -> None: ...

    async def resolve(self, members: Sequence[str]) -> tuple[Role, dict[str, Role]]:
        """The strongest registry role of any of `members`, and per model id the strongest
        model role where it exceeds the registry one."""


class Tx(Protocol):
    @property
    def models(self) -> RegisteredModelRepo: ...

    @property
    def versions(self) -> ModelVersionRepo: ...

    @property
    def experiments(self) -> ExperimentRepo: ...

    @property
    def runs(self) -> RunRepo: ...

    @property
    def lineage(self) -> LineageRepo: ...

    @property
    def api_keys(self) -> ApiKeyRepo: ...

    @property
    def policies(self) -> PolicyRepo: ...

    async def publish(self, events: Sequence[Event]) -> None: ...

    async def replay(self, key: IdempotencyKey) -> str | None: ...

    async def remember(self, key: IdempotencyKey, name: str) -> None: ...


class UnitOfWork(Protocol):
    def begin(self) -> AbstractAsyncContextManager[Tx]:
        """One transaction: committed on exit, rolled back on error."""

    def read(self) -> AbstractAsyncContextManager[Tx]:
        """A connection outside an explicit transaction: each statement commits alone."""


class AccessChanged(Protocol):
    def __call__(self) -> None:
        """Called after a commit that changed anyone's access: this process forgets the
        roles and keys it cached (other processes learn it from the event)."""


class ArtifactPort(Protocol):
    async def seal_manifest(self, owner: str) -> Manifest: ...


class LifecyclePort(Protocol):
    async def deletion_blockers(self, model: str) -> list[str]:
        """Aliases and pending transition requests of the model's versions (names)."""
