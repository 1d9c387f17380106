"""Deleting a model whose versions still have aliases: the lifecycle service is asked first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from modelreg.lifecycle.v1 import alias_service_pb2 as als
from modelreg.lifecycle.v1 import alias_service_pb2_grpc as als_grpc
from modelreg.metadata.v1 import model_version_pb2 as mv
from modelreg.metadata.v1 import model_version_service_pb2 as mvs
from modelreg.metadata.v1 import registered_model_service_pb2 as rms
from modelreg_artifact.app import make_spec
from modelreg_artifact.settings import ArtifactSettings
from modelreg_lifecycle.app import SPEC as LIFECYCLE
from modelreg_metadata.app import SPEC
from service.metadata.kit import expect_error, stubs_for
from testkit import make_settings


async def test_delete_model_with_alias_needs_force(start_server: Any, tmp_path: Path) -> None:
    artifacts = make_spec(ArtifactSettings(root=tmp_path / "artifacts", gc_enabled=False))
    server = await start_server(
        [SPEC, artifacts, LIFECYCLE], settings=make_settings(relay_enabled=False)
    )
    async with aio.insecure_channel(server.address) as channel:
        md = stubs_for(channel, server)
        await md.models.CreateRegisteredModel(
            rms.CreateRegisteredModelRequest(registered_model_id="fraud")
        )
        version = (
            await md.versions.CreateModelVersion(
                mvs.CreateModelVersionRequest(parent="models/fraud")
            )
        ).model_version
        ready = await md.versions.FinalizeModelVersion(
            mvs.FinalizeModelVersionRequest(name=version.name)
        )
        assert ready.model_version.state == mv.MODEL_VERSION_STATE_READY
        await als_grpc.AliasServiceStub(channel).SetAlias(
            als.SetAliasRequest(name="models/fraud/aliases/champion", version=version.name)
        )
        meta, _ = await expect_error(
            md.models.DeleteRegisteredModel(rms.DeleteRegisteredModelRequest(name="models/fraud")),
            grpc.StatusCode.FAILED_PRECONDITION,
            "INVALID_STATE_TRANSITION",
        )
        assert "models/fraud/aliases/champion" in meta["blockers"]
        forced = await md.models.DeleteRegisteredModel(
            rms.DeleteRegisteredModelRequest(name="models/fraud", force=True)
        )
        assert forced.deleted_versions == 1
