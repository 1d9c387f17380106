"""Every RPC x every role through a real server in token mode: allowed where the permission table
says so, PERMISSION_DENIED where it does not, UNAUTHENTICATED without credentials, never
INTERNAL. The expectation is restated here from the roles, not computed by the code under test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import grpc
import pytest
from grpc import aio

from modelreg.client._methods import RpcMethod, methods_of
from modelreg.metadata.v1 import (
    access_pb2,
    access_service_pb2,
    registered_model_service_pb2,
)
from modelreg_common.access import Role
from modelreg_common.auth import hash_token
from modelreg_common.permissions import RULES, Rule, Scope
from modelreg_common.server import ServiceSpec
from modelreg_common.settings import AuthSettings, TokenEntry
from testkit import make_settings

USERS = ("setup", "admin", "viewer", "editor", "approver", "owner", "regviewer", "nobody")
MODEL_GRANTS = {
    "viewer": Role.VIEWER,
    "editor": Role.EDITOR,
    "approver": Role.APPROVER,
    "owner": Role.OWNER,
}
REGISTRY_GRANTS = {"regviewer": Role.VIEWER}
ADMINS = ("setup", "admin")


def token(user: str) -> str:
    return f"matrix-token-{user}-0123456789"


def auth_metadata(user: str | None) -> tuple[tuple[str, str], ...]:
    return () if user is None else (("authorization", f"Bearer {token(user)}"),)


def expected(rule: Rule, user: str) -> bool | None:
    """True: allowed; False: PERMISSION_DENIED; None: up to the handler (any non-auth code)."""
    if user in ADMINS:
        return True
    if rule.scope is Scope.HANDLER:
        return None
    if rule.scope is Scope.INTERNAL:
        return False
    on_model = max(MODEL_GRANTS.get(user, Role.NONE), REGISTRY_GRANTS.get(user, Role.NONE))
    on_registry = REGISTRY_GRANTS.get(user, Role.NONE)
    if rule.scope is Scope.LISTING:
        return on_model >= Role.VIEWER
    if rule.field:
        return on_model >= rule.role
    return on_registry >= max(rule.role, rule.registry_role or Role.NONE)


def set_field(message: Any, path: str, value: str) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        message = getattr(message, part)
    setattr(message, leaf, value)


def request_for(rpc: RpcMethod, rule: Rule, model: str) -> Any:
    request: Any = rpc.request_type()
    fields = request.DESCRIPTOR.fields_by_name
    if rule.field:
        leaf = rule.field.rsplit(".", 1)[-1]
        value = {
            "resource": f"models/{model}",
            "parent": f"models/{model}",
            "owner": f"models/{model}/versions/999",
        }.get(leaf, f"models/{model}/versions/999")
        if rule.field == "policy.name":
            value = f"models/{model}/policy"
        set_field(request, rule.field, value)
    # A stale etag turns every allowed delete, rename or policy write into ABORTED, so the
    # matrix changes nothing it later depends on.
    if "etag" in fields:
        request.etag = '"0"'
    for field in fields.values():
        if (
            field.message_type is not None
            and not field.is_repeated
            and "etag" in field.message_type.fields_by_name
        ):
            getattr(request, field.name).etag = '"0"'
    return request


async def call(channel: aio.Channel, rpc: RpcMethod, request: Any, user: str | None) -> str:
    serialize = rpc.request_type.SerializeToString
    deserialize = rpc.response_type.FromString
    metadata = auth_metadata(user)
    try:
        if rpc.server_streaming:
            stream = channel.unary_stream(rpc.path, serialize, deserialize)(
                request, metadata=metadata, timeout=1.5
            )
            async for _ in stream:
                break
            stream.cancel()
        else:
            await channel.unary_unary(rpc.path, serialize, deserialize)(
                request, metadata=metadata, timeout=10
            )
    except aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED and rpc.server_streaming:
            return "OK"  # an open stream (Subscribe) with nothing to send yet: allowed
        return exc.code().name
    return "OK"


async def grant(channel: aio.Channel, resource: str, grants: dict[str, Role]) -> None:
    stub: Any = channel.unary_unary(
        "/modelreg.metadata.v1.AccessService/GetIamPolicy",
        access_service_pb2.GetIamPolicyRequest.SerializeToString,
        access_service_pb2.GetIamPolicyResponse.FromString,
    )
    current = (
        await stub(
            access_service_pb2.GetIamPolicyRequest(resource=resource),
            metadata=auth_metadata("setup"),
        )
    ).policy
    policy = access_pb2.IamPolicy(etag=current.etag)
    policy.bindings.extend(current.bindings)
    for user, role in grants.items():
        policy.bindings.append(
            access_pb2.Binding(role=access_pb2.Role.ValueType(role), members=[f"user:{user}"])
        )
    setter: Any = channel.unary_unary(
        "/modelreg.metadata.v1.AccessService/SetIamPolicy",
        access_service_pb2.SetIamPolicyRequest.SerializeToString,
        access_service_pb2.SetIamPolicyResponse.FromString,
    )
    await setter(
        access_service_pb2.SetIamPolicyRequest(resource=resource, policy=policy),
        metadata=auth_metadata("setup"),
    )


async def create_model(channel: aio.Channel, model: str, user: str = "setup") -> None:
    create: Any = channel.unary_unary(
        "/modelreg.metadata.v1.RegisteredModelService/CreateRegisteredModel",
        registered_model_service_pb2.CreateRegisteredModelRequest.SerializeToString,
        registered_model_service_pb2.CreateRegisteredModelResponse.FromString,
    )
    await create(
        registered_model_service_pb2.CreateRegisteredModelRequest(registered_model_id=model),
        metadata=auth_metadata(user),
    )


def every_rpc() -> list[RpcMethod]:
    return [
        rpc
        for service in ("metadata", "artifact", "lifecycle", "events")
        for rpc in methods_of(f"modelreg.{service}.v1").values()
        if not rpc.client_streaming
    ]


@pytest.fixture
async def matrix_server(start_server: Any, all_specs: Sequence[ServiceSpec]) -> Any:
    settings = make_settings(
        auth=AuthSettings(
            mode="token",
            tokens=[TokenEntry(sha256=hash_token(token(u)), principal=u) for u in USERS],
            admins=[f"user:{u}" for u in ADMINS],
        )
    )
    return await start_server(all_specs, settings=settings)


async def test_every_rpc_for_every_role_is_allowed_or_denied_as_the_table_says(
    matrix_server: Any,
) -> None:
    model = f"matrix-{uuid.uuid4().hex[:8]}"
    async with aio.insecure_channel(matrix_server.address) as channel:
        await create_model(channel, model)
        await grant(channel, f"models/{model}", MODEL_GRANTS)
        await grant(channel, "registry", REGISTRY_GRANTS)
        mismatches: list[str] = []
        for rpc in every_rpc():
            rule = RULES[rpc.path]
            request = request_for(rpc, rule, model)
            codes = await asyncio.gather(
                *(call(channel, rpc, request, user) for user in (*USERS, None))
            )
            for user, code in zip((*USERS, None), codes, strict=True):
                if code in ("INTERNAL", "UNKNOWN"):
                    mismatches.append(f"{rpc.path} as {user}: {code}")
                elif user is None:
                    if code != "UNAUTHENTICATED":
                        mismatches.append(f"{rpc.path} without credentials: {code}")
                else:
                    want = expected(rule, user)
                    denied = code in ("PERMISSION_DENIED", "UNAUTHENTICATED")
                    if want is True and denied:
                        mismatches.append(f"{rpc.path} as {user}: {code}, expected allowed")
                    if want is False and code != "PERMISSION_DENIED":
                        mismatches.append(f"{rpc.path} as {user}: {code}, expected denied")
                    if want is None and code == "UNAUTHENTICATED":
                        mismatches.append(f"{rpc.path} as {user}: {code}")
        assert not mismatches, "\n".join(mismatches)


async def test_a_viewer_of_one_model_never_sees_another(matrix_server: Any) -> None:
    from modelreg.client import AsyncRegistry
    from modelreg.client.errors import PermissionDeniedError

    seen, hidden = f"seen-{uuid.uuid4().hex[:8]}", f"hidden-{uuid.uuid4().hex[:8]}"
    async with aio.insecure_channel(matrix_server.address) as channel:
        await create_model(channel, seen)
        await create_model(channel, hidden)
        await grant(channel, f"models/{seen}", {"viewer": Role.VIEWER})
    async with AsyncRegistry(matrix_server.address, token=token("viewer")) as viewer:
        listed = await viewer.metadata.list_registered_models(page_size=1000)
        assert [m.name for m in listed.registered_models] == [f"models/{seen}"]
        searched = await viewer.metadata.search_registered_models(
            filter=f'name = "{hidden}"', page_size=10
        )
        assert not searched.registered_models
        assert not searched.next_page_token
    async with AsyncRegistry(matrix_server.address, token=token("admin")) as admin:
        # Both models' events are in the log before the viewer looks (the relay is async).
        async with asyncio.timeout(20):
            while True:
                everything = await admin.events.list_events(page_size=1000)
                models = {e.subject.split("/")[1] for e in everything.events if e.subject}
                if {seen, hidden} <= models:
                    break
                await asyncio.sleep(0.05)
    async with AsyncRegistry(matrix_server.address, token=token("viewer")) as viewer:
        events = await viewer.events.list_events(page_size=1000)
        assert {e.subject.split("/")[1] for e in events.events if e.subject} == {seen}
        with pytest.raises(PermissionDeniedError) as denied:
            await viewer.metadata.get_registered_model(name=f"models/{hidden}")
        # The same answer as for a model that does not exist: nothing is revealed.
        with pytest.raises(PermissionDeniedError) as absent:
            await viewer.metadata.get_registered_model(name="models/never-created")
        assert str(denied.value).replace(hidden, "X") == str(absent.value).replace(
            "never-created", "X"
        )
    # Denials are counted (and logged as access.denied).
    denials = matrix_server.metrics.registry.get_sample_value(
        "modelreg_auth_failures_total",
        {
            "method": "/modelreg.metadata.v1.RegisteredModelService/GetRegisteredModel",
            "code": "PERMISSION_DENIED",
        },
    )
    assert denials == 2


async def test_upload_needs_editor_on_its_owner(matrix_server: Any) -> None:
    from modelreg.artifact.v1 import artifact_service_pb2 as pb

    model = f"up-{uuid.uuid4().hex[:8]}"
    async with aio.insecure_channel(matrix_server.address) as channel:
        await create_model(channel, model)
        await grant(channel, f"models/{model}", MODEL_GRANTS)
        upload: Any = channel.stream_unary(
            "/modelreg.artifact.v1.ArtifactService/Upload",
            pb.UploadRequest.SerializeToString,
            pb.UploadResponse.FromString,
        )

        def messages() -> list[Any]:
            header = pb.UploadHeader(owner=f"models/{model}/versions/1", path="model.bin")
            return [pb.UploadRequest(header=header), pb.UploadRequest(chunk=b"weights")]

        for user, allowed in (("viewer", False), ("nobody", False), ("editor", True)):
            try:
                await upload(iter(messages()), metadata=auth_metadata(user), timeout=10)
                code = "OK"
            except aio.AioRpcError as exc:
                code = exc.code().name
            if allowed:
                assert code not in ("PERMISSION_DENIED", "UNAUTHENTICATED", "INTERNAL"), user
            else:
                assert code == "PERMISSION_DENIED", (user, code)
