"""The synchronous client: plain grpc channels, no event loop."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import grpc
from google.protobuf.message import Message

from modelreg.client._config import (
    CallPolicy,
    Metadata,
    build_request,
    call_metadata,
    channel_credentials,
    resolve_targets,
)
from modelreg.client._methods import GROUPS, RpcMethod, methods_of
from modelreg.client.errors import from_rpc_error
from modelreg.client.helpers import SyncHelpers


class _Group:
    """The RPCs of one service group as methods: `group.get_model_version(name=...)`."""

    def __init__(self, registry: Registry, channel: grpc.Channel, package: str) -> None:
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
        serializer = rpc.request_type.SerializeToString
        deserializer = rpc.response_type.FromString
        registry = self._registry
        if rpc.server_streaming and not rpc.client_streaming:
            stream = self._channel.unary_stream(rpc.path, serializer, deserializer)

            def server_stream(
                request: Message | None = None,
                /,
                *,
                timeout: float | None = None,
                metadata: Metadata = (),
                **fields: Any,
            ) -> Iterator[Any]:
                message = build_request(rpc, request, fields)
                call = stream(
                    message, timeout=timeout, metadata=call_metadata(registry.token, metadata)
                )
                try:
                    yield from call
                except grpc.RpcError as exc:
                    raise from_rpc_error(exc) from None
                finally:
                    # A consumer that stops early must not leave the stream open on the server.
                    call.cancel()

            return server_stream
        if rpc.client_streaming:
            upload = self._channel.stream_unary(rpc.path, serializer, deserializer)

            def client_stream(
                requests: Iterable[Message],
                /,
                *,
                timeout: float | None = None,
                metadata: Metadata = (),
            ) -> Any:
                try:
                    return upload(
                        iter(requests),
                        timeout=timeout or registry.policy.timeout,
                        metadata=call_metadata(registry.token, metadata),
                    )
                except grpc.RpcError as exc:
                    raise from_rpc_error(exc) from None

            return client_stream
        unary = self._channel.unary_unary(rpc.path, serializer, deserializer)

        def call(
            request: Message | None = None,
            /,
            *,
            timeout: float | None = None,
            metadata: Metadata = (),
            **fields: Any,
        ) -> Any:
            message = build_request(rpc, request, fields)
            policy = registry.policy
            deadline = time.monotonic() + (timeout or policy.timeout)
            attempt = 0
            while True:
                attempt += 1
                try:
                    return unary(
                        message,
                        timeout=max(deadline - time.monotonic(), 0.001),
                        metadata=call_metadata(registry.token, metadata),
                    )
                except grpc.RpcError as exc:
                    pause = policy.backoff(attempt)
                    if (
                        exc.code() == grpc.StatusCode.UNAVAILABLE
                        and rpc.idempotent
                        and attempt < policy.max_attempts
                        and time.monotonic() + pause < deadline
                    ):
                        registry.retries += 1
                        time.sleep(pause)
                        continue
                    raise from_rpc_error(exc) from None

        return call


class Registry(SyncHelpers):
    """One interface to all four services.

        with Registry("127.0.0.1:50051") as registry:
            registry.metadata.create_registered_model(registered_model={"name": "fraud"})

    `targets` maps service names (metadata, artifact, lifecycle, events) to their own targets
    when they run as separate processes without a mesh; `target` is the fallback for the rest.
    Every call has a deadline (`timeout`), unary reads and creates with a request id are
    retried with backoff on UNAVAILABLE, and errors are `modelreg.client.errors` classes.
    """

    def __init__(
        self,
        target: str | None = "127.0.0.1:50051",
        *,
        targets: Mapping[str, str] | None = None,
        token: str | None = None,
        tls: bool | grpc.ChannelCredentials = False,
        policy: CallPolicy | None = None,
        options: list[tuple[str, Any]] | None = None,
    ) -> None:
        self.token = token
        self.policy = policy or CallPolicy()
        # Counts automatic retries, so callers (and benchmarks) can see them.
        self.retries = 0
        credentials = channel_credentials(tls)
        channel_options = [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            *(options or []),
        ]
        self._channels: dict[str, grpc.Channel] = {}
        groups: dict[str, _Group] = {}
        for group, group_target in resolve_targets(target, targets).items():
            if group_target not in self._channels:
                self._channels[group_target] = (
                    grpc.secure_channel(group_target, credentials, options=channel_options)
                    if credentials is not None
                    else grpc.insecure_channel(group_target, options=channel_options)
                )
            groups[group] = _Group(self, self._channels[group_target], GROUPS[group])
        self.metadata = groups["metadata"]
        self.artifacts = groups["artifacts"]
        self.lifecycle = groups["lifecycle"]
        self.events = groups["events"]

    def channel(self, service: str) -> grpc.Channel:
        """The channel to one service, for generated stubs: `FooServiceStub(r.channel("x"))`."""
        group = {"artifact": "artifacts"}.get(service, service)
        return getattr(self, group)._channel  # type: ignore[no-any-return]

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
