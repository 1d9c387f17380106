"""What the sync and async clients share: targets, credentials, deadlines, retry policy."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.message import Message

from modelreg.client._methods import GROUPS, SERVICE_OF_GROUP, RpcMethod, methods_of

Metadata = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class CallPolicy:
    timeout: float = 30.0
    max_attempts: int = 5
    initial_backoff: float = 0.05
    max_backoff: float = 2.0

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff before retry number `attempt` (1-based)."""
        ceiling = min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)

    def retry_pause(
        self, code: grpc.StatusCode, rpc: RpcMethod, attempt: int, deadline: float
    ) -> float | None:
        """How long to wait before retrying a failed unary call, or None to give up: only
        UNAVAILABLE, only idempotent calls, within the attempts and the call's deadline."""
        if code != grpc.StatusCode.UNAVAILABLE or not rpc.idempotent:
            return None
        pause = self.backoff(attempt)
        if attempt >= self.max_attempts or time.monotonic() + pause >= deadline:
            return None
        return pause


def channel_options(extra: list[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        *(extra or []),
    ]


ChannelT = TypeVar("ChannelT")


def group_channels(
    target: str | None,
    targets: Mapping[str, str] | None,
    make_channel: Callable[[str], ChannelT],
) -> tuple[dict[str, ChannelT], dict[str, tuple[ChannelT, str]]]:
    """One channel per distinct target; each group gets its channel and proto package."""
    channels: dict[str, ChannelT] = {}
    groups: dict[str, tuple[ChannelT, str]] = {}
    for group, group_target in resolve_targets(target, targets).items():
        if group_target not in channels:
            channels[group_target] = make_channel(group_target)
        groups[group] = (channels[group_target], GROUPS[group])
    return channels, groups


class MethodGroup(Generic[ChannelT]):
    """The RPCs of one service group as methods (`group.get_model_version(name=...)`), bound
    on first use; the sync and async clients differ only in `_bind`."""

    def __init__(self, registry: Any, channel: ChannelT, package: str) -> None:
        self._registry = registry
        self._channel = channel
        self._methods = methods_of(package)
        self._package = package
        self._callables: dict[str, Any] = {}

    def __dir__(self) -> list[str]:
        return sorted(self._methods)

    def __getattr__(self, attribute: str) -> Any:
        rpc = self._methods.get(attribute)
        if rpc is None:
            raise AttributeError(f"{self._package} has no RPC {attribute!r}")
        if attribute not in self._callables:
            self._callables[attribute] = self._bind(rpc)
        return self._callables[attribute]

    def _bind(self, rpc: RpcMethod) -> Any:
        raise NotImplementedError


def resolve_targets(target: str | None, targets: Mapping[str, str] | None) -> dict[str, str]:
    """Target per group: one target for all (the embedded server or a mesh route), or one per
    service (`{"metadata": "meta:50051", ...}`) with `target` as the fallback."""
    per_service = dict(targets or {})
    unknown = set(per_service) - set(SERVICE_OF_GROUP.values())
    if unknown:
        raise ValueError(f"unknown services in targets: {sorted(unknown)}")
    resolved: dict[str, str] = {}
    for group in GROUPS:
        chosen = per_service.get(SERVICE_OF_GROUP[group]) or target
        if not chosen:
            raise ValueError(f"no target for the {SERVICE_OF_GROUP[group]} service")
        resolved[group] = chosen
    return resolved


def channel_credentials(tls: bool | grpc.ChannelCredentials) -> grpc.ChannelCredentials | None:
    if tls is True:
        return grpc.ssl_channel_credentials()
    if tls is False:
        return None
    return tls


def call_metadata(token: str | None, extra: Metadata = ()) -> tuple[tuple[str, str | bytes], ...]:
    metadata: list[tuple[str, str | bytes]] = [("x-request-id", uuid.uuid4().hex), *extra]
    if token:
        metadata.append(("authorization", f"Bearer {token}"))
    return tuple(metadata)


def build_request(rpc: RpcMethod, request: Message | None, fields: dict[str, object]) -> Message:
    if request is not None and fields:
        raise TypeError("pass either a request message or keyword fields, not both")
    if request is None:
        request = rpc.request_type(**fields)
    elif not isinstance(request, rpc.request_type):
        raise TypeError(
            f"{rpc.attribute} takes {rpc.request_type.__name__}, got {type(request).__name__}"
        )
    if rpc.has_request_id and not getattr(request, "request_id", ""):
        # A fresh id makes the create safe to retry: the server answers a replay with the
        # first response instead of creating twice.
        copy = type(request)()
        copy.CopyFrom(request)
        copy.request_id = str(uuid.uuid4())  # type: ignore[attr-defined]
        request = copy
    return request
