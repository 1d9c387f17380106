"""The metadata service's resources as plain dataclasses (no protobuf, no SQL)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from modelreg_common.access import Role


class VersionState(enum.Enum):
    PENDING_REGISTRATION = "PENDING_REGISTRATION"
    READY = "READY"
    FAILED_REGISTRATION = "FAILED_REGISTRATION"


class RunStatus(enum.Enum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class ExperimentState(enum.Enum):
    ACTIVE = "ACTIVE"
    DELETED = "DELETED"


class NodeType(enum.Enum):
    DATASET = "DATASET"
    CODE = "CODE"
    RUN = "RUN"
    MODEL_VERSION = "MODEL_VERSION"
    DEPLOYMENT = "DEPLOYMENT"


class EdgeType(enum.Enum):
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"
    DERIVED_FROM = "DERIVED_FROM"
    DEPLOYED_AS = "DEPLOYED_AS"


class Direction(enum.Enum):
    UPSTREAM = "UPSTREAM"
    DOWNSTREAM = "DOWNSTREAM"
    BOTH = "BOTH"


@dataclass(frozen=True)
class SignatureField:
    name: str
    type: str  # a DataType name without prefix, e.g. "FLOAT32"
    shape: tuple[int, ...] = ()
    optional: bool = False
    default_value: str = ""


@dataclass(frozen=True)
class Signature:
    inputs: tuple[SignatureField, ...] = ()
    outputs: tuple[SignatureField, ...] = ()
    params: tuple[SignatureField, ...] = ()


@dataclass(frozen=True)
class RegisteredModel:
    name: str  # the {model} id
    description: str
    tags: Mapping[str, str]
    created_by: str
    create_time: datetime
    update_time: datetime
    latest_version: int
    revision: int

    @property
    def resource_name(self) -> str:
        return f"models/{self.name}"


@dataclass(frozen=True)
class ModelVersionDraft:
    """What a caller may set on a version: on create, and (subset) on update."""

    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    run: str = ""
    source: str = ""
    model_format: str = ""
    framework: str = ""
    signature: Signature = field(default_factory=Signature)


@dataclass(frozen=True)
class ModelVersion:
    model: str
    version: int
    state: VersionState
    run: str
    description: str
    source: str
    model_format: str
    framework: str
    signature: Signature
    tags: Mapping[str, str]
    artifact_digest: str
    artifact_file_count: int
    artifact_size_bytes: int
    status_message: str
    created_by: str
    create_time: datetime
    update_time: datetime
    revision: int

    @property
    def resource_name(self) -> str:
        return f"models/{self.model}/versions/{self.version}"


@dataclass(frozen=True)
class Manifest:
    """The sealed file set of a version, as the artifact service reports it."""

    digest: str
    file_count: int
    total_size_bytes: int


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    tags: Mapping[str, str]
    state: ExperimentState
    created_by: str
    create_time: datetime
    update_time: datetime
    revision: int

    @property
    def resource_name(self) -> str:
        return f"experiments/{self.name}"


@dataclass(frozen=True)
class MetricPoint:
    key: str
    value: float
    step: int
    timestamp: datetime | None


@dataclass(frozen=True)
class DatasetInput:
    name: str
    digest: str
    source_uri: str = ""
    schema: str = ""
    context: str = ""
    lineage_node: str = ""


@dataclass(frozen=True)
class CodeVersion:
    repository_url: str = ""
    commit: str = ""
    entry_point: str = ""

    @property
    def empty(self) -> bool:
        return not (self.repository_url or self.commit or self.entry_point)


@dataclass(frozen=True)
class RunDraft:
    display_name: str = ""
    status: RunStatus | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    inputs: tuple[DatasetInput, ...] = ()
    code: CodeVersion = field(default_factory=CodeVersion)


@dataclass(frozen=True)
class Run:
    experiment: str
    run_id: str
    display_name: str
    status: RunStatus
    start_time: datetime
    end_time: datetime | None
    params: Mapping[str, str]
    latest_metrics: Mapping[str, float]
    tags: Mapping[str, str]
    inputs: tuple[DatasetInput, ...]
    code: CodeVersion
    created_by: str
    create_time: datetime
    update_time: datetime
    revision: int

    @property
    def resource_name(self) -> str:
        return f"experiments/{self.experiment}/runs/{self.run_id}"


@dataclass(frozen=True)
class LineageNode:
    name: str
    type: NodeType
    display_name: str = ""
    properties: Mapping[str, str] = field(default_factory=dict)
    create_time: datetime | None = None


@dataclass(frozen=True)
class LineageEdge:
    source: str
    target: str
    type: EdgeType
    properties: Mapping[str, str] = field(default_factory=dict)
    create_time: datetime | None = None


@dataclass(frozen=True)
class LineageGraph:
    nodes: tuple[LineageNode, ...]
    edges: tuple[LineageEdge, ...]
    truncated: bool


@dataclass(frozen=True)
class ApiKeyDraft:
    """What a caller asks for on CreateApiKey; `principal` empty means the caller."""

    display_name: str = ""
    principal: str = ""
    groups: tuple[str, ...] = ()
    expire_time: datetime | None = None


@dataclass(frozen=True)
class ApiKey:
    """A key's record; the secret is never part of it (only its hash is stored)."""

    id: str
    display_name: str
    principal: str
    groups: tuple[str, ...]
    secret_prefix: str
    created_by: str
    create_time: datetime
    expire_time: datetime | None
    revoke_time: datetime | None

    @property
    def resource_name(self) -> str:
        return f"apiKeys/{self.id}"


@dataclass(frozen=True)
class Binding:
    role: Role
    members: tuple[str, ...]


@dataclass(frozen=True)
class IamPolicy:
    """`resource` is `registry` or `models/{model}`; revision 0 is a policy never set."""

    resource: str
    bindings: tuple[Binding, ...]
    revision: int
    update_time: datetime | None = None
    updated_by: str = ""


@dataclass(frozen=True)
class ResolvedAccess:
    """The roles one principal holds by policy: registry-wide, and per model (model id ->
    role) where the model's role exceeds the registry one."""

    registry_role: Role
    model_roles: Mapping[str, Role]
    resolve_time: datetime


@dataclass(frozen=True)
class Event:
    """A change to publish through the outbox (type `entity.action`, subject a name)."""

    type: str
    subject: str
    data: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class IdempotencyKey:
    request_id: str
    method: str
    digest: bytes


@dataclass(frozen=True)
class ListQuery:
    """A List/Search request as the domain sees it: validated by the store's compiler."""

    filter: str = ""
    order_by: str = ""
    page_size: int = 0
    page_token: str = ""


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next_page_token: str
