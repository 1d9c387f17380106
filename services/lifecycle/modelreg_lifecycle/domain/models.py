"""The lifecycle's resources as plain dataclasses."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class VersionInfo:
    """What lifecycle needs of a model version, read from the metadata service.

    `record` is the version as the metadata service serialized it: kept verbatim so that
    resolving an alias returns the full record without asking metadata again.
    """

    name: str
    model: str
    version: int
    state: str  # READY, PENDING_REGISTRATION, FAILED_REGISTRATION
    run: str
    tags: Mapping[str, str]
    has_signature: bool
    record: bytes = b""

    @property
    def ready(self) -> bool:
        return self.state == "READY"


class AliasAction(enum.StrEnum):
    SET = "set"
    DELETE = "delete"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Alias:
    model: str
    alias: str
    version: int
    revision: int
    updater: str
    update_time: datetime

    @property
    def name(self) -> str:
        return f"models/{self.model}/aliases/{self.alias}"

    @property
    def version_name(self) -> str:
        return f"models/{self.model}/versions/{self.version}"


@dataclass(frozen=True)
class AliasHistoryEntry:
    id: int
    model: str
    alias: str
    from_version: int | None
    to_version: int | None
    action: AliasAction
    actor: str
    reason: str
    time: datetime
    request_id: str
    transition_request: str = ""


@dataclass(frozen=True)
class VersionStage:
    model: str
    version: int
    stage: str
    updater: str = ""
    update_time: datetime | None = None


@dataclass(frozen=True)
class StageHistoryEntry:
    id: int
    model: str
    version: int
    from_stage: str
    to_stage: str
    actor: str
    reason: str
    time: datetime
    request_id: str
    transition_request: str = ""


class TargetKind(enum.StrEnum):
    ALIAS = "alias"
    STAGE = "stage"


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind.value} {self.name}"


class RequestState(enum.StrEnum):
    PENDING = "PENDING"
    APPLIED = "APPLIED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class Review:
    reviewer: str
    comment: str
    time: datetime


@dataclass(frozen=True)
class TransitionRequest:
    id: str
    model: str
    version: int
    target: Target
    comment: str
    state: RequestState
    requester: str
    base: str
    required_approvals: int
    create_time: datetime
    update_time: datetime
    approvals: tuple[Review, ...] = ()
    closing_review: Review | None = None
    failure_reason: str = ""
    archive_existing: bool = False

    @property
    def name(self) -> str:
        return f"models/{self.model}/transitionRequests/{self.id}"

    @property
    def version_name(self) -> str:
        return f"models/{self.model}/versions/{self.version}"


class DeploymentStatus(enum.StrEnum):
    DEPLOYING = "DEPLOYING"
    ACTIVE = "ACTIVE"
    FAILED = "FAILED"
    RETIRED = "RETIRED"


@dataclass(frozen=True)
class Deployment:
    id: str
    model: str
    version: int
    environment: str
    endpoint: str
    status: DeploymentStatus
    recorder: str
    create_time: datetime
    end_time: datetime | None = None
    lineage_node: str = ""

    @property
    def name(self) -> str:
        return f"models/{self.model}/deployments/{self.id}"

    @property
    def version_name(self) -> str:
        return f"models/{self.model}/versions/{self.version}"


@dataclass(frozen=True)
class MetricValue:
    metric: str
    value: float
    window_seconds: float


@dataclass(frozen=True)
class RecordedMetric:
    model: str
    version: int
    environment: str
    metric: str
    value: float
    window_seconds: float
    record_time: datetime


@dataclass(frozen=True)
class Degradation:
    model: str
    version: int
    environment: str
    metric: str
    threshold: str
    value: float
    start_time: datetime
    end_time: datetime | None = None
    id: int = 0


@dataclass(frozen=True)
class Event:
    """An event for the outbox: `type` is `entity.action`, `subject` a resource name."""

    type: str
    subject: str
    data: Mapping[str, object] = field(default_factory=dict)
