"""Random, mostly bad AccessService requests to a real metadata server: never INTERNAL (nor
UNKNOWN), whatever the names, members, principals, secrets and timestamps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from hypothesis import strategies as st

from modelreg.metadata.v1 import access_pb2 as ac
from modelreg.metadata.v1 import access_service_pb2 as acs
from modelreg.metadata.v1 import access_service_pb2_grpc as acs_grpc
from modelreg.metadata.v1 import registered_model_pb2 as rm
from modelreg.metadata.v1 import registered_model_service_pb2 as rms
from service.metadata.kit import Stubs
from testkit import examples

T = TypeVar("T")
BAD = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


# Control characters, NULs and odd Unicode included: PostgreSQL refuses NUL in text, so any of
# them reaching a statement would be INTERNAL.
TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=12),
    st.sampled_from(["", "*", "a b", "x\x00y", "é" * 300, "a" * 257]),
)
MEMBERS = st.one_of(
    TEXT,
    st.builds(lambda k, v: f"{k}:{v}", st.sampled_from(["user", "group", "team", ""]), TEXT),
    st.sampled_from(["user:*", "group:*", "user:", "user:a", "group:ml"]),
)
RESOURCES = st.one_of(
    TEXT,
    st.builds(lambda m: f"models/{m}", TEXT),
    st.sampled_from(["registry", "models/m", "models/-", "models/m/versions/1"]),
)
KEY_NAMES = st.one_of(
    TEXT, st.builds(lambda k: f"apiKeys/{k}", TEXT), st.just("apiKeys/" + "0" * 32)
)
ROLES = st.integers(min_value=-3, max_value=9)
SECONDS = st.one_of(
    st.integers(min_value=-(2**62), max_value=2**62),
    st.sampled_from([0, 1, 253402300799, 253402300800, -62135596801]),
)


def stamp(seconds: int, nanos: int) -> Timestamp:
    out = Timestamp()
    out.seconds, out.nanos = seconds, nanos
    return out


def api_key(
    name: str, principal: str, groups: list[str], seconds: int, nanos: int, expires: bool
) -> ac.ApiKey:
    key = ac.ApiKey(display_name=name, principal=principal, groups=groups)
    if expires:
        key.expire_time.CopyFrom(stamp(seconds, nanos))
    return key


KEYS = st.builds(
    api_key,
    TEXT,
    TEXT,
    st.lists(TEXT, max_size=3),
    SECONDS,
    st.integers(min_value=-5, max_value=2 * 10**9),
    st.booleans(),
)
POLICIES = st.builds(
    lambda bindings, etag: ac.IamPolicy(bindings=bindings, etag=etag),
    st.lists(
        st.builds(
            lambda role, members: ac.Binding(role=role, members=members),
            ROLES,
            st.lists(MEMBERS, max_size=4),
        ),
        max_size=4,
    ),
    st.one_of(TEXT, st.sampled_from(['"0"', '"1"', '"x"'])),
)


Call = tuple[Callable[[Any], Awaitable[Any]], Message]


async def run_all(calls: list[Call]) -> None:
    for method, request in calls:
        code, details = grpc.StatusCode.OK, ""
        try:
            await method(request)
        except aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
        assert code not in BAD, (type(request).__name__, code, details)


async def test_api_key_requests_never_fail_internally(md: Stubs) -> None:
    access = acs_grpc.AccessServiceStub(md.channel)
    calls: list[Call] = []
    for key, request_id in examples(st.tuples(KEYS, st.one_of(st.just(""), TEXT)), 60):
        calls.append(
            (access.CreateApiKey, acs.CreateApiKeyRequest(api_key=key, request_id=request_id))
        )
    for name in examples(KEY_NAMES, 30):
        calls.append((access.GetApiKey, acs.GetApiKeyRequest(name=name)))
        calls.append((access.RevokeApiKey, acs.RevokeApiKeyRequest(name=name)))
    for secret in examples(st.one_of(TEXT, st.builds(lambda s: "mrk_" + s, TEXT)), 30):
        calls.append((access.VerifyApiKey, acs.VerifyApiKeyRequest(secret=secret)))
    for principal, size, token, revoked in examples(
        st.tuples(TEXT, st.integers(-2, 2000), TEXT, st.booleans()), 30
    ):
        request = acs.ListApiKeysRequest(
            principal=principal, page_size=size, page_token=token, show_revoked=revoked
        )
        calls.append((access.ListApiKeys, request))
    await run_all(calls)


async def test_policy_and_resolve_requests_never_fail_internally(md: Stubs) -> None:
    await md.models.CreateRegisteredModel(
        rms.CreateRegisteredModelRequest(
            registered_model_id="m", registered_model=rm.RegisteredModel()
        )
    )
    access = acs_grpc.AccessServiceStub(md.channel)
    calls: list[Call] = []
    for resource, policy in examples(st.tuples(RESOURCES, POLICIES), 80):
        calls.append(
            (access.SetIamPolicy, acs.SetIamPolicyRequest(resource=resource, policy=policy))
        )
        calls.append((access.GetIamPolicy, acs.GetIamPolicyRequest(resource=resource)))
    for subject, groups in examples(st.tuples(TEXT, st.lists(TEXT, max_size=4)), 40):
        calls.append(
            (access.ResolveAccess, acs.ResolveAccessRequest(subject=subject, groups=groups))
        )
    await run_all(calls)
