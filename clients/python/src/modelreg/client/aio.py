"""The asyncio client: grpc.aio channels, same grouped methods as `Registry`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc import aio

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
from modelreg.client.helpers import AsyncHelpers


class _AsyncGroup(MethodGroup[aio.Channel]):
    def _bind(self, rpc: RpcMethod) -> Any:
        serializer = rpc.request_type.SerializeToString
        deserializer = rpc.response_type.FromString
        registry = self._registry
        if rpc.server_streaming and not rpc.client_streaming:
            stream = self._channel.unary_stream(rpc.path, serializer, deserializer)

            async def server_stream(
                request: Message | None = None,
                /,
                *,
                timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline
                metadata: Metadata = (),
                **fields: Any,
            ) -> AsyncIterator[Any]:
                message = build_request(rpc, request, fields)
                call = stream(
                    message, timeout=timeout, metadata=call_metadata(registry.token, metadata)
                )
                try:
                    async for item in call:
                        yield item
                except aio.AioRpcError as exc:
                    raise from_rpc_error(exc) from None
                finally:
                    call.cancel()

            return server_stream
        if rpc.client_streaming:
            upload = self._channel.stream_unary(rpc.path, serializer, deserializer)

            async def client_stream(
                requests: AsyncIterable[Message] | Iterable[Message],
                /,
                *,
                timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline
                metadata: Metadata = (),
            ) -> Any:
                try:
                    return await upload(
                        requests,  # type: ignore[arg-type]
                        timeout=timeout or registry.policy.timeout,
                        metadata=call_metadata(registry.token, metadata),
                    )
                except aio.AioRpcError as exc:
                    raise from_rpc_error(exc) from None

            return client_stream
        unary = self._channel.unary_unary(rpc.path, serializer, deserializer)

        async def call(
            request: Message | None = None,
            /,
            *,
            timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline
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
                    return await unary(
                        message,
                        timeout=max(deadline - time.monotonic(), 0.001),
                        metadata=call_metadata(registry.token, metadata),
                    )
                except aio.AioRpcError as exc:
                    pause = policy.retry_pause(exc.code(), rpc, attempt, deadline)
                    if pause is None:
                        raise from_rpc_error(exc) from None
                    registry.retries += 1
                    await asyncio.sleep(pause)

        return call


class AsyncRegistry(AsyncHelpers):
    """`Registry` for asyncio: `async with AsyncRegistry(target) as r: await r.metadata...`."""

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
        self.retries = 0
        credentials = channel_credentials(tls)
        options = channel_options(options)

        def make_channel(group_target: str) -> aio.Channel:
            if credentials is not None:
                return aio.secure_channel(group_target, credentials, options=options)
            return aio.insecure_channel(group_target, options=options)

        self._channels, groups = group_channels(target, targets, make_channel)
        self.metadata = _AsyncGroup(self, *groups["metadata"])
        self.artifacts = _AsyncGroup(self, *groups["artifacts"])
        self.lifecycle = _AsyncGroup(self, *groups["lifecycle"])
        self.events = _AsyncGroup(self, *groups["events"])

    def channel(self, service: str) -> aio.Channel:
        group = {"artifact": "artifacts"}.get(service, service)
        return getattr(self, group)._channel  # type: ignore[no-any-return]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()

    async def __aenter__(self) -> AsyncRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
