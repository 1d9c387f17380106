"""The model-version domain on in-memory fakes: finalize through the artifact port, the
registration state machine, immutability once READY, validation."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from modelreg_common.errors import (
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from modelreg_metadata.domain.common import etag, hexid, mask_paths
from modelreg_metadata.domain.lineage import node_type_of
from modelreg_metadata.domain.model_versions import ModelVersionService
from modelreg_metadata.domain.models import (
    Event,
    Manifest,
    ModelVersion,
    ModelVersionDraft,
    NodeType,
    Signature,
    SignatureField,
    VersionState,
)
from modelreg_metadata.domain.runs import _merge_params

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class FakeVersions:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], ModelVersion] = {}
        self.counters: dict[str, int] = {"fraud": 0}

    async def get(
        self, model: str, version: int, *, for_update: bool = False
    ) -> ModelVersion | None:
        return self.rows.get((model, version))

    async def create(
        self, model: str, draft: ModelVersionDraft, created_by: str, event_data: dict[str, Any]
    ) -> tuple[ModelVersion | None, bool]:
        if model not in self.counters:
            return None, True
        self.counters[model] += 1
        version = ModelVersion(
            model=model,
            version=self.counters[model],
            state=VersionState.PENDING_REGISTRATION,
            run=draft.run,
            description=draft.description,
            source=draft.source,
            model_format=draft.model_format,
            framework=draft.framework,
            signature=draft.signature,
            tags=dict(draft.tags),
            artifact_digest="",
            artifact_file_count=0,
            artifact_size_bytes=0,
            status_message="",
            created_by=created_by,
            create_time=NOW,
            update_time=NOW,
            revision=1,
        )
        self.rows[(model, version.version)] = version
        return version, True

    async def save(
        self, version: ModelVersion, *, tags_changed: bool, signature_changed: bool
    ) -> ModelVersion:
        saved = dataclasses.replace(version, revision=version.revision + 1)
        self.rows[(version.model, version.version)] = saved
        return saved


class FakeTx:
    def __init__(self, versions: FakeVersions) -> None:
        self.versions = versions
        self.events: list[Event] = []

    async def publish(self, events: Sequence[Event]) -> None:
        self.events.extend(events)


class FakeUow:
    def __init__(self) -> None:
        self.versions = FakeVersions()
        self.tx = FakeTx(self.versions)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[FakeTx]:
        yield self.tx

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[FakeTx]:
        yield self.tx


class FakeArtifacts:
    def __init__(self, *, down: bool = False) -> None:
        self.sealed: list[str] = []
        self.down = down

    async def seal_manifest(self, owner: str) -> Manifest:
        if self.down:
            raise Unavailable("artifact service down", backend="artifact")
        self.sealed.append(owner)
        return Manifest("sha256:" + "ab" * 32, 2, 1234)


def service(artifacts: FakeArtifacts | None = None) -> tuple[ModelVersionService, FakeUow]:
    uow = FakeUow()
    return ModelVersionService(uow, artifacts or FakeArtifacts()), uow  # type: ignore[arg-type]


async def test_finalize_seals_then_records_digest_and_event() -> None:
    artifacts = FakeArtifacts()
    svc, uow = service(artifacts)
    created = await svc.create("models/fraud", ModelVersionDraft(), None)
    ready = await svc.finalize(created.resource_name, etag(created.revision))
    assert ready.state is VersionState.READY
    assert ready.artifact_digest == "sha256:" + "ab" * 32
    assert (ready.artifact_file_count, ready.artifact_size_bytes) == (2, 1234)
    assert artifacts.sealed == ["models/fraud/versions/1"]
    assert [e.type for e in uow.tx.events] == ["model_version.finalized"]
    again = await svc.finalize(created.resource_name, "")
    assert again == ready
    assert artifacts.sealed == ["models/fraud/versions/1"]


async def test_finalize_with_peer_down_leaves_version_pending() -> None:
    svc, uow = service(FakeArtifacts(down=True))
    created = await svc.create("models/fraud", ModelVersionDraft(), None)
    with pytest.raises(Unavailable):
        await svc.finalize(created.resource_name, "")
    assert uow.versions.rows[("fraud", 1)].state is VersionState.PENDING_REGISTRATION


async def test_finalize_stale_etag_and_failed_version() -> None:
    svc, _ = service()
    created = await svc.create("models/fraud", ModelVersionDraft(), None)
    with pytest.raises(EtagMismatch):
        await svc.finalize(created.resource_name, '"42"')
    await svc.fail(created.resource_name, "broken upload")
    with pytest.raises(FailedPrecondition):
        await svc.finalize(created.resource_name, "")


async def test_ready_version_freezes_source_and_signature() -> None:
    svc, _ = service()
    created = await svc.create("models/fraud", ModelVersionDraft(source="s3://a"), None)
    await svc.finalize(created.resource_name, "")
    with pytest.raises(FailedPrecondition):
        await svc.update(created.resource_name, "", ["source"], ModelVersionDraft(source="s3://b"))
    updated = await svc.update(
        created.resource_name,
        "",
        ["description", "tags"],
        ModelVersionDraft(description="d", tags={"a": "b"}),
    )
    assert (updated.description, dict(updated.tags), updated.source) == ("d", {"a": "b"}, "s3://a")


async def test_create_validates_every_field_and_missing_model() -> None:
    svc, _ = service()
    bad = ModelVersionDraft(
        tags={"": "x"},
        run="nope",
        signature=Signature(inputs=(SignatureField("a", "UNSPECIFIED", (-2,)),)),
    )
    with pytest.raises(InvalidArgument) as info:
        await svc.create("models/fraud", bad, None)
    fields = {v.field for v in info.value.violations}
    assert {"model_version.run", "model_version.signature.inputs[0].type"} <= fields
    assert "model_version.signature.inputs[0].shape" in fields
    with pytest.raises(NotFound):
        await svc.create("models/other", ModelVersionDraft(), None)


def test_mask_paths() -> None:
    assert mask_paths([], ("a", "b"), ("a",)) == {"a"}
    with pytest.raises(InvalidArgument) as info:
        mask_paths(["a", "zzz"], ("a",), ())
    assert info.value.violations[0].field == "update_mask"


def test_params_are_immutable() -> None:
    current: Mapping[str, str] = {"lr": "0.1"}
    assert _merge_params("r", current, {"lr": "0.1", "bs": "32"}) == {"lr": "0.1", "bs": "32"}
    with pytest.raises(FailedPrecondition):
        _merge_params("r", current, {"lr": "0.2"})


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("models/m/versions/3", NodeType.MODEL_VERSION),
        ("experiments/e/runs/r", NodeType.RUN),
        (f"datasets/{hexid('a', 'b')}", NodeType.DATASET),
        ("code/x", NodeType.CODE),
        ("deployments/prod-1", NodeType.DEPLOYMENT),
    ],
)
def test_node_type_of(name: str, kind: NodeType) -> None:
    assert node_type_of(name, "start") is kind


@pytest.mark.parametrize("name", ["", "models/m", "deployments/", "other/x", "models/m/versions/0"])
def test_node_type_of_rejects(name: str) -> None:
    with pytest.raises(InvalidArgument):
        node_type_of(name, "start")
