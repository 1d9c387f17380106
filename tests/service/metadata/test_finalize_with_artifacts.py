"""FinalizeModelVersion against the real artifact service in the same server: the manifest is
sealed, its digest recorded, and the READY version's source and signature frozen."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from grpc import aio

from modelreg.artifact.v1 import artifact_service_pb2 as arts
from modelreg.artifact.v1 import artifact_service_pb2_grpc as arts_grpc
from modelreg.metadata.v1 import model_version_pb2 as mv
from modelreg.metadata.v1 import model_version_service_pb2 as mvs
from modelreg.metadata.v1 import registered_model_service_pb2 as rms
from modelreg_artifact.app import make_spec
from modelreg_artifact.settings import ArtifactSettings
from modelreg_metadata.app import SPEC
from service.metadata.kit import expect_error, stubs_for
from testkit import make_settings


async def test_finalize_seals_the_manifest_and_freezes_the_version(
    start_server: Any, tmp_path: Path
) -> None:
    artifacts = make_spec(ArtifactSettings(root=tmp_path / "artifacts", gc_enabled=False))
    server = await start_server([SPEC, artifacts], settings=make_settings(relay_enabled=False))
    async with aio.insecure_channel(server.address) as channel:
        md = stubs_for(channel, server)
        await md.models.CreateRegisteredModel(
            rms.CreateRegisteredModelRequest(registered_model_id="fraud")
        )
        version = (
            await md.versions.CreateModelVersion(
                mvs.CreateModelVersionRequest(
                    parent="models/fraud", model_version=mv.ModelVersion(source="s3://a")
                )
            )
        ).model_version
        payload = b"weights" * 1000

        async def chunks() -> Any:
            yield arts.UploadRequest(
                header=arts.UploadHeader(owner=version.name, path="model/weights.bin")
            )
            yield arts.UploadRequest(chunk=payload)

        await arts_grpc.ArtifactServiceStub(channel).Upload(chunks())
        ready = (
            await md.versions.FinalizeModelVersion(
                mvs.FinalizeModelVersionRequest(name=version.name, etag=version.etag)
            )
        ).model_version
        assert ready.state == mv.MODEL_VERSION_STATE_READY
        assert ready.artifact_digest.startswith("sha256:")
        assert ready.artifact_file_count == 1
        assert ready.artifact_size_bytes == len(payload)
        line = f"model/weights.bin\tsha256:{hashlib.sha256(payload).hexdigest()}\t{len(payload)}\n"
        assert ready.artifact_digest == "sha256:" + hashlib.sha256(line.encode()).hexdigest()
        # Finalize is idempotent on a READY version.
        again = await md.versions.FinalizeModelVersion(
            mvs.FinalizeModelVersionRequest(name=version.name)
        )
        assert again.model_version == ready
        await expect_error(
            md.versions.UpdateModelVersion(
                mvs.UpdateModelVersionRequest(
                    model_version=mv.ModelVersion(name=version.name, source="s3://b"),
                    update_mask=FieldMask(paths=["source"]),
                )
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "INVALID_STATE_TRANSITION",
        )
        await expect_error(
            md.versions.FailModelVersion(mvs.FailModelVersionRequest(name=version.name)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "INVALID_STATE_TRANSITION",
        )
        await expect_error(
            md.versions.FinalizeModelVersion(
                mvs.FinalizeModelVersionRequest(name="models/fraud/versions/7")
            ),
            grpc.StatusCode.NOT_FOUND,
            "RESOURCE_NOT_FOUND",
        )
