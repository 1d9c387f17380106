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
    MethodGroup,
    build_request,
    call_metadata,
    channel_credentials,
    channel_options,
    group_channels,
)
from modelreg.client._methods import RpcMethod
from modelreg.client.errors import from_rpc_error
from modelreg.client.helpers import SyncHelpers


class _Group(MethodGroup[grpc.Channel]):
    """The RPCs of one service group as methods: `group.get_model_version(name=...)`."""

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
                    pause = policy.retry_pause(exc.code(), rpc, attempt, deadline)
                    if pause is None:
                        raise from_rpc_error(exc) from None
                    registry.retries += 1
                    time.sleep(pause)

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
        options = channel_options(options)

        def make_channel(group_target: str) -> grpc.Channel:
            if credentials is not None:
                return grpc.secure_channel(group_target, credentials, options=options)
            return grpc.insecure_channel(group_target, options=options)

        self._channels, groups = group_channels(target, targets, make_channel)
        self.metadata = _Group(self, *groups["metadata"])
        self.artifacts = _Group(self, *groups["artifacts"])
        self.lifecycle = _Group(self, *groups["lifecycle"])
        self.events = _Group(self, *groups["events"])

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
