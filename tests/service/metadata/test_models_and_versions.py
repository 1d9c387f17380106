"""Registered models and model versions over a real server and PostgreSQL."""

from __future__ import annotations

import asyncpg
import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from modelreg.metadata.v1 import experiment_service_pb2 as es
from modelreg.metadata.v1 import model_version_pb2 as mv
from modelreg.metadata.v1 import model_version_service_pb2 as mvs
from modelreg.metadata.v1 import registered_model_pb2 as rm
from modelreg.metadata.v1 import registered_model_service_pb2 as rms
from modelreg.metadata.v1 import run_service_pb2 as rs
from modelreg.metadata.v1 import signature_pb2 as sig
from service.metadata.kit import Stubs, expect_error

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def create_model(md: Stubs, model_id: str = "fraud", **tags: str) -> rm.RegisteredModel:
    reply = await md.models.CreateRegisteredModel(
        rms.CreateRegisteredModelRequest(
            registered_model_id=model_id,
            registered_model=rm.RegisteredModel(description="detects fraud", tags=tags),
        )
    )
    return reply.registered_model


async def create_version(md: Stubs, parent: str = "models/fraud", **kw: object) -> mv.ModelVersion:
    reply = await md.versions.CreateModelVersion(
        mvs.CreateModelVersionRequest(parent=parent, model_version=mv.ModelVersion(**kw))  # type: ignore[arg-type]
    )
    return reply.model_version


async def outbox(md: Stubs) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(md.server.dsn)
    try:
        rows = await conn.fetch("SELECT type, subject FROM metadata.outbox ORDER BY seq")
    finally:
        await conn.close()
    return [(r["type"], r["subject"]) for r in rows]


SIGNATURE = sig.ModelSignature(
    inputs=[
        sig.SignatureField(name="age", type=sig.DATA_TYPE_INT64, shape=[-1]),
        sig.SignatureField(name="income", type=sig.DATA_TYPE_FLOAT32, shape=[-1, 1]),
    ],
    outputs=[sig.SignatureField(name="score", type=sig.DATA_TYPE_FLOAT32)],
    params=[sig.SignatureField(name="threshold", type=sig.DATA_TYPE_FLOAT64, default_value="0.5")],
)


# --- registered models ----------------------------------------------------------------------


async def test_create_get_registered_model(md: Stubs) -> None:
    created = await create_model(md, team="risk")
    assert created.name == "models/fraud"
    assert created.tags == {"team": "risk"}
    assert created.created_by == "local"
    assert created.etag
    got = await md.models.GetRegisteredModel(rms.GetRegisteredModelRequest(name="models/fraud"))
    assert got.registered_model == created
    assert ("registered_model.created", "models/fraud") in await outbox(md)


async def test_create_duplicate_model_is_already_exists(md: Stubs) -> None:
    await create_model(md)
    meta, _ = await expect_error(
        create_model(md), grpc.StatusCode.ALREADY_EXISTS, "RESOURCE_ALREADY_EXISTS"
    )
    assert meta["name"] == "models/fraud"


@pytest.mark.parametrize(
    ("model_id", "tags", "field"),
    [
        ("", {}, "registered_model_id"),
        ("-bad", {}, "registered_model_id"),
        ("a/b", {}, "registered_model_id"),
        ("x" * 129, {}, "registered_model_id"),
        ("ok", {"": "v"}, "registered_model.tags"),
        ("ok", {"k" * 251: "v"}, "registered_model.tags"),
        ("ok", {"k": "v" * (64 * 1024 + 1)}, "registered_model.tags"),
    ],
)
async def test_create_model_bad_input(
    md: Stubs, model_id: str, tags: dict[str, str], field: str
) -> None:
    await expect_error(
        md.models.CreateRegisteredModel(
            rms.CreateRegisteredModelRequest(
                registered_model_id=model_id, registered_model=rm.RegisteredModel(tags=tags)
            )
        ),
        INVALID,
        "INVALID_FIELD",
        field,
    )


async def test_create_model_request_id_replays_and_rejects_reuse(md: Stubs) -> None:
    request = rms.CreateRegisteredModelRequest(registered_model_id="m1", request_id="req-1")
    first = await md.models.CreateRegisteredModel(request)
    again = await md.models.CreateRegisteredModel(request)
    assert again.registered_model.name == first.registered_model.name
    other = rms.CreateRegisteredModelRequest(registered_model_id="m2", request_id="req-1")
    await expect_error(
        md.models.CreateRegisteredModel(other), INVALID, "INVALID_FIELD", "request_id"
    )


async def test_get_missing_and_malformed_model(md: Stubs) -> None:
    await expect_error(
        md.models.GetRegisteredModel(rms.GetRegisteredModelRequest(name="models/nope")),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )
    await expect_error(
        md.models.GetRegisteredModel(rms.GetRegisteredModelRequest(name="fraud")),
        INVALID,
        "INVALID_FIELD",
        "name",
    )


async def test_update_model_with_mask_and_etag(md: Stubs) -> None:
    created = await create_model(md, team="risk")
    updated = (
        await md.models.UpdateRegisteredModel(
            rms.UpdateRegisteredModelRequest(
                registered_model=rm.RegisteredModel(
                    name="models/fraud", description="new", tags={"x": "y"}, etag=created.etag
                ),
                update_mask=FieldMask(paths=["description"]),
            )
        )
    ).registered_model
    assert updated.description == "new"
    assert updated.tags == {"team": "risk"}
    assert updated.etag != created.etag
    # The old etag is stale now.
    await expect_error(
        md.models.UpdateRegisteredModel(
            rms.UpdateRegisteredModelRequest(
                registered_model=rm.RegisteredModel(name="models/fraud", etag=created.etag),
                update_mask=FieldMask(paths=["tags"]),
            )
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    await expect_error(
        md.models.UpdateRegisteredModel(
            rms.UpdateRegisteredModelRequest(
                registered_model=rm.RegisteredModel(name="models/fraud"),
                update_mask=FieldMask(paths=["created_by"]),
            )
        ),
        INVALID,
        "INVALID_FIELD",
        "update_mask",
    )
    assert ("registered_model.updated", "models/fraud") in await outbox(md)


async def test_rename_model_moves_versions(md: Stubs) -> None:
    await create_model(md)
    await create_version(md)
    renamed = await md.models.RenameRegisteredModel(
        rms.RenameRegisteredModelRequest(name="models/fraud", new_registered_model_id="fraud2")
    )
    assert renamed.registered_model.name == "models/fraud2"
    got = await md.versions.GetModelVersion(
        mvs.GetModelVersionRequest(name="models/fraud2/versions/1")
    )
    assert got.model_version.version == 1
    await create_model(md, "taken")
    await expect_error(
        md.models.RenameRegisteredModel(
            rms.RenameRegisteredModelRequest(name="models/fraud2", new_registered_model_id="taken")
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "RESOURCE_ALREADY_EXISTS",
    )
    await expect_error(
        md.models.RenameRegisteredModel(
            rms.RenameRegisteredModelRequest(name="models/fraud2", new_registered_model_id="a b")
        ),
        INVALID,
        "INVALID_FIELD",
        "new_registered_model_id",
    )
    assert ("registered_model.renamed", "models/fraud2") in await outbox(md)


async def test_delete_model_deletes_versions_and_emits_events(md: Stubs) -> None:
    await create_model(md)
    await create_version(md)
    await create_version(md)
    reply = await md.models.DeleteRegisteredModel(
        rms.DeleteRegisteredModelRequest(name="models/fraud")
    )
    assert reply.deleted_versions == 2
    await expect_error(
        md.versions.GetModelVersion(mvs.GetModelVersionRequest(name="models/fraud/versions/1")),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )
    events = await outbox(md)
    assert ("model_version.deleted", "models/fraud/versions/2") in events
    assert ("registered_model.deleted", "models/fraud") in events
    await expect_error(
        md.models.DeleteRegisteredModel(rms.DeleteRegisteredModelRequest(name="models/fraud")),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )


async def test_delete_model_with_stale_etag_is_aborted(md: Stubs) -> None:
    await create_model(md)
    await expect_error(
        md.models.DeleteRegisteredModel(
            rms.DeleteRegisteredModelRequest(name="models/fraud", etag='"99"')
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )


# --- model versions -------------------------------------------------------------------------


async def test_create_version_with_signature_and_run(md: Stubs) -> None:
    await create_model(md)
    await md.experiments.CreateExperiment(es.CreateExperimentRequest(experiment_id="exp"))
    run = (await md.runs.CreateRun(rs.CreateRunRequest(parent="experiments/exp", run_id="r1"))).run
    version = await create_version(
        md,
        run=run.name,
        tags={"stage": "dev"},
        signature=SIGNATURE,
        source="s3://bucket/fraud",
        model_format="onnx",
        framework="sklearn",
        description="first",
    )
    assert version.name == "models/fraud/versions/1"
    assert version.state == mv.MODEL_VERSION_STATE_PENDING_REGISTRATION
    assert version.signature == SIGNATURE
    assert version.run == run.name
    got = await md.versions.GetModelVersion(mvs.GetModelVersionRequest(name=version.name))
    assert got.model_version == version
    model = await md.models.GetRegisteredModel(rms.GetRegisteredModelRequest(name="models/fraud"))
    assert model.registered_model.latest_version == 1
    assert ("model_version.created", version.name) in await outbox(md)


async def test_create_version_errors(md: Stubs) -> None:
    await expect_error(
        create_version(md, parent="models/none"), grpc.StatusCode.NOT_FOUND, "RESOURCE_NOT_FOUND"
    )
    await create_model(md)
    meta, _ = await expect_error(
        create_version(md, run="experiments/e/runs/missing"),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )
    assert meta["name"] == "experiments/e/runs/missing"
    # The failed create gave its number back: the next one is 1.
    assert (await create_version(md)).version == 1
    bad_sig = sig.ModelSignature(inputs=[sig.SignatureField(name="x")])
    await expect_error(
        create_version(md, signature=bad_sig),
        INVALID,
        "INVALID_FIELD",
        "model_version.signature.inputs[0].type",
    )
    dup_sig = sig.ModelSignature(
        inputs=[
            sig.SignatureField(name="x", type=sig.DATA_TYPE_BOOL),
            sig.SignatureField(name="x", type=sig.DATA_TYPE_BOOL),
        ]
    )
    await expect_error(
        create_version(md, signature=dup_sig),
        INVALID,
        "INVALID_FIELD",
        "model_version.signature.inputs[1].name",
    )
    await expect_error(
        create_version(md, run="runs/1"), INVALID, "INVALID_FIELD", "model_version.run"
    )
    await expect_error(create_version(md, parent="fraud"), INVALID, "INVALID_FIELD", "parent")
    await expect_error(
        create_version(md, tags={"k": "v" * (64 * 1024 + 1)}),
        INVALID,
        "INVALID_FIELD",
        "model_version.tags",
    )


async def test_create_version_request_id_returns_same_version(md: Stubs) -> None:
    await create_model(md)
    request = mvs.CreateModelVersionRequest(
        parent="models/fraud", model_version=mv.ModelVersion(tags={"a": "1"}), request_id="r-1"
    )
    first = await md.versions.CreateModelVersion(request)
    second = await md.versions.CreateModelVersion(request)
    assert first.model_version.name == second.model_version.name == "models/fraud/versions/1"
    await expect_error(
        md.versions.CreateModelVersion(
            mvs.CreateModelVersionRequest(parent="models/fraud", request_id="r-1")
        ),
        INVALID,
        "INVALID_FIELD",
        "request_id",
    )
    await expect_error(
        md.versions.CreateModelVersion(
            mvs.CreateModelVersionRequest(parent="models/fraud", request_id="bad id!")
        ),
        INVALID,
        "INVALID_FIELD",
        "request_id",
    )


async def test_update_version_mask_state_rules_and_etag(md: Stubs) -> None:
    await create_model(md)
    version = await create_version(md, tags={"a": "1"})
    updated = (
        await md.versions.UpdateModelVersion(
            mvs.UpdateModelVersionRequest(
                model_version=mv.ModelVersion(
                    name=version.name,
                    etag=version.etag,
                    description="better",
                    signature=SIGNATURE,
                    source="s3://x",
                ),
                update_mask=FieldMask(paths=["description", "signature", "source"]),
            )
        )
    ).model_version
    assert updated.description == "better"
    assert updated.signature == SIGNATURE
    assert updated.tags == {"a": "1"}
    await expect_error(
        md.versions.UpdateModelVersion(
            mvs.UpdateModelVersionRequest(
                model_version=mv.ModelVersion(name=version.name, etag=version.etag),
                update_mask=FieldMask(paths=["description"]),
            )
        ),
        grpc.StatusCode.ABORTED,
        "ETAG_MISMATCH",
    )
    await expect_error(
        md.versions.UpdateModelVersion(
            mvs.UpdateModelVersionRequest(
                model_version=mv.ModelVersion(name=version.name),
                update_mask=FieldMask(paths=["state"]),
            )
        ),
        INVALID,
        "INVALID_FIELD",
        "update_mask",
    )
    await expect_error(
        md.versions.UpdateModelVersion(
            mvs.UpdateModelVersionRequest(
                model_version=mv.ModelVersion(name="models/fraud/versions/9"),
                update_mask=FieldMask(paths=["description"]),
            )
        ),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )


async def test_failed_version_is_immutable_except_description_and_tags(md: Stubs) -> None:
    await create_model(md)
    version = await create_version(md)
    failed = await md.versions.FailModelVersion(
        mvs.FailModelVersionRequest(name=version.name, status_message="upload broke")
    )
    assert failed.model_version.state == mv.MODEL_VERSION_STATE_FAILED_REGISTRATION
    assert failed.model_version.status_message == "upload broke"
    await expect_error(
        md.versions.UpdateModelVersion(
            mvs.UpdateModelVersionRequest(
                model_version=mv.ModelVersion(name=version.name, source="s3://other"),
                update_mask=FieldMask(paths=["source"]),
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "INVALID_STATE_TRANSITION",
    )
    ok = await md.versions.UpdateModelVersion(
        mvs.UpdateModelVersionRequest(
            model_version=mv.ModelVersion(name=version.name, description="why it failed"),
            update_mask=FieldMask(paths=["description"]),
        )
    )
    assert ok.model_version.description == "why it failed"
    await expect_error(
        md.versions.FinalizeModelVersion(mvs.FinalizeModelVersionRequest(name=version.name)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "INVALID_STATE_TRANSITION",
    )


async def test_tags_set_and_delete(md: Stubs) -> None:
    await create_model(md)
    version = await create_version(md, tags={"a": "1"})
    got = await md.versions.SetModelVersionTag(
        mvs.SetModelVersionTagRequest(name=version.name, key="b", value="2")
    )
    assert got.model_version.tags == {"a": "1", "b": "2"}
    got2 = await md.versions.DeleteModelVersionTag(
        mvs.DeleteModelVersionTagRequest(name=version.name, key="a")
    )
    assert got2.model_version.tags == {"b": "2"}
    found = await md.versions.SearchModelVersions(
        mvs.SearchModelVersionsRequest(filter="tags.b = 2")
    )
    assert [v.name for v in found.model_versions] == [version.name]
    await expect_error(
        md.versions.DeleteModelVersionTag(
            mvs.DeleteModelVersionTagRequest(name=version.name, key="a")
        ),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )
    await expect_error(
        md.versions.SetModelVersionTag(
            mvs.SetModelVersionTagRequest(name=version.name, key="", value="x")
        ),
        INVALID,
        "INVALID_FIELD",
        "key",
    )
    events = await outbox(md)
    assert ("model_version_tag.set", version.name) in events
    assert ("model_version_tag.deleted", version.name) in events


async def test_delete_version_keeps_numbers_unique(md: Stubs) -> None:
    await create_model(md)
    first = await create_version(md)
    await md.versions.DeleteModelVersion(mvs.DeleteModelVersionRequest(name=first.name))
    await expect_error(
        md.versions.DeleteModelVersion(mvs.DeleteModelVersionRequest(name=first.name)),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )
    # Numbers are never reused, even after a delete.
    assert (await create_version(md)).version == 2
    assert ("model_version.deleted", first.name) in await outbox(md)


async def test_list_versions_of_missing_model_is_not_found(md: Stubs) -> None:
    await expect_error(
        md.versions.ListModelVersions(mvs.ListModelVersionsRequest(parent="models/none")),
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
    )


async def test_finalize_without_artifact_service_is_unavailable(md: Stubs) -> None:
    await create_model(md)
    version = await create_version(md)
    await expect_error(
        md.versions.FinalizeModelVersion(mvs.FinalizeModelVersionRequest(name=version.name)),
        grpc.StatusCode.UNAVAILABLE,
        "BACKEND_UNAVAILABLE",
    )
    got = await md.versions.GetModelVersion(mvs.GetModelVersionRequest(name=version.name))
    assert got.model_version.state == mv.MODEL_VERSION_STATE_PENDING_REGISTRATION
