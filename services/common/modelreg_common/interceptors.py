"""The server interceptor every service runs: authentication, authorization, call context,
error mapping, structured request logs and RPC metrics, around every handler kind."""

from __future__ import annotations

import dataclasses
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from grpc import aio

from modelreg_common import context as call_context
from modelreg_common.access import Access
from modelreg_common.auth import Authenticator
from modelreg_common.authorizer import Authorizer, check
from modelreg_common.errors import DomainError, PermissionDenied
from modelreg_common.forwarding import FORWARDED_FOR, FORWARDER, forwarded_peer
from modelreg_common.logs import get_logger
from modelreg_common.metrics import RpcMetrics
from modelreg_common.permissions import RULES, Rule
from modelreg_common.status import map_exception
from modelreg_common.telemetry import current_trace_id

log = get_logger("modelreg.rpc")

# Probes and discovery must work without credentials (Kubernetes gRPC probes send none).
UNAUTHENTICATED_PREFIXES: tuple[str, ...] = ("/grpc.health.v1.", "/grpc.reflection.")

_CLIENT_MISTAKES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.CANCELLED,
    }
)


def _metadata_value(context: aio.ServicerContext[Any, Any], key: str) -> str | None:
    for item_key, value in context.invocation_metadata() or ():
        if item_key == key:
            return value.decode() if isinstance(value, bytes) else value
    return None


class _Call:
    """The bookkeeping of one RPC: who, which request id, how long, how it ended."""

    def __init__(self, method: str, context: aio.ServicerContext[Any, Any]) -> None:
        self.method = method
        self.context = context
        self.started = time.perf_counter()
        self.request_id = _metadata_value(context, "x-request-id") or uuid.uuid4().hex
        self.token: Any = None
        self.principal = call_context.SYSTEM
        self.rule: Rule | None = None
        self.authorizer: Authorizer | None = None

    async def begin(
        self,
        authenticator: Authenticator,
        authorizer: Authorizer,
        rule: Rule | None,
        request: Any,
    ) -> None:
        """Authenticate and authorize; `request` is None for a client stream, whose first
        message `authorize` checks once it arrives."""
        access = None
        if not self.method.startswith(UNAUTHENTICATED_PREFIXES):
            self.principal = await authenticator.authenticate(
                _metadata_value(self.context, "authorization"), self.context.auth_context()
            )
            access = await authorizer.access_for(self.principal)
        self.token = call_context.bind_call(
            call_context.CallInfo(
                method=self.method,
                request_id=self.request_id,
                principal=self.principal,
                peer=forwarded_peer(
                    _metadata_value(self.context, FORWARDED_FOR),
                    _metadata_value(self.context, FORWARDER),
                )
                or self.context.peer()
                or "",
                access=access,
            )
        )
        self.rule = rule
        self.authorizer = authorizer
        if access is not None and request is not None:
            await self.authorize(request)

    async def authorize(self, request: Any) -> None:
        call = call_context.current_call()
        if call is None or call.access is None or self.authorizer is None:
            return
        denied = self._denial(call.access, request)
        if denied is not None:
            fresh = await self.authorizer.refreshed(self.principal)
            if fresh is not None and fresh != call.access:
                self._rebind(call, fresh)
                denied = self._denial(fresh, request)
        if denied is not None:
            log.warning(
                "access.denied",
                method=self.method,
                principal=self.principal.subject,
                request_id=self.request_id,
                **denied.metadata,
            )
            raise denied

    def _denial(self, access: Access, request: Any) -> PermissionDenied | None:
        if self.rule is None:
            # Deny by default: an RPC missing from the table is a bug, not an open door.
            return PermissionDenied(f"{self.method} is not in the permission table")
        try:
            check(self.rule, access, request)
        except PermissionDenied as exc:
            return exc
        return None

    def _rebind(self, call: call_context.CallInfo, access: Access) -> None:
        call_context.unbind_call(self.token)
        self.token = call_context.bind_call(dataclasses.replace(call, access=access))

    def end(self) -> None:
        if self.token is not None:
            call_context.unbind_call(self.token)
            self.token = None


def _behavior(function: Callable[..., Any] | None) -> Callable[..., Any]:
    if function is None:
        raise TypeError("handler has no behavior for its own kind")
    return function


class RuntimeInterceptor(aio.ServerInterceptor):
    def __init__(
        self,
        authenticator: Authenticator,
        authorizer: Authorizer,
        metrics: RpcMetrics,
        rules: Mapping[str, Rule] = RULES,
    ) -> None:
        self._authenticator = authenticator
        self._authorizer = authorizer
        self._metrics = metrics
        self._rules = rules

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(method, _behavior(handler.stream_stream), client_stream=True),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, _behavior(handler.stream_unary), client_stream=True),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, _behavior(handler.unary_stream)),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            self._unary(method, _behavior(handler.unary_unary)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def _begin(self, call: _Call, request: Any, client_stream: bool) -> Any:
        """Start the call; returns the request to hand on (a client stream re-wrapped so its
        first message is authorized before the handler sees it)."""
        await call.begin(
            self._authenticator,
            self._authorizer,
            self._rules.get(call.method),
            None if client_stream else request,
        )
        return _authorized_stream(call, request) if client_stream else request

    def _unary(
        self, method: str, inner: Callable[..., Any], *, client_stream: bool = False
    ) -> Callable[[Any, aio.ServicerContext[Any, Any]], Awaitable[Any]]:
        async def behavior(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            call = _Call(method, context)
            try:
                request = await self._begin(call, request, client_stream)
                response = await inner(request, context)
            except BaseException as exc:
                await self._fail(call, exc)
                raise
            else:
                self._finish(call, context.code() or grpc.StatusCode.OK)
                return response
            finally:
                call.end()

        return behavior

    def _streaming(
        self, method: str, inner: Callable[..., Any], *, client_stream: bool = False
    ) -> Callable[[Any, aio.ServicerContext[Any, Any]], AsyncIterator[Any]]:
        async def behavior(
            request: Any, context: aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            call = _Call(method, context)
            try:
                request = await self._begin(call, request, client_stream)
                result = inner(request, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        yield item
                else:
                    await result
            except BaseException as exc:
                await self._fail(call, exc)
                raise
            else:
                self._finish(call, context.code() or grpc.StatusCode.OK)
            finally:
                call.end()

        return behavior

    async def _fail(self, call: _Call, exc: BaseException) -> None:
        """Record the failure and abort with the mapped status (abort raises)."""
        if isinstance(exc, aio.AbortError):
            # The handler aborted by itself; its code is already on the context.
            self._finish(call, call.context.code() or grpc.StatusCode.UNKNOWN)
            return
        if isinstance(exc, GeneratorExit | KeyboardInterrupt | SystemExit) or (
            not isinstance(exc, Exception)
        ):
            # Cancellation (client went away, server shutting down): nothing to send.
            self._finish(call, grpc.StatusCode.CANCELLED)
            return
        mapped = map_exception(exc, call.method)
        self._finish(call, mapped.code, exc=exc, correlation_id=mapped.correlation_id)
        await call.context.abort_with_status(mapped.status)

    def _finish(
        self,
        call: _Call,
        code: grpc.StatusCode,
        *,
        exc: BaseException | None = None,
        correlation_id: str | None = None,
    ) -> None:
        elapsed = time.perf_counter() - call.started
        self._metrics.observe(call.method, code.name, elapsed)
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            self._metrics.auth_failures.labels(call.method, code.name).inc()
        fields: dict[str, Any] = {
            "method": call.method,
            "code": code.name,
            "duration_ms": round(elapsed * 1000, 3),
            "request_id": call.request_id,
            "principal": call.principal.subject,
        }
        trace_id = current_trace_id()
        if trace_id:
            fields["trace_id"] = trace_id
        if code == grpc.StatusCode.INTERNAL:
            log.error("rpc.failed", correlation_id=correlation_id, exc_info=exc, **fields)
        elif code == grpc.StatusCode.OK or code in _CLIENT_MISTAKES:
            if isinstance(exc, DomainError):
                fields["error"] = exc.message
            log.info("rpc.finished", **fields)
        else:
            log.warning("rpc.finished", error=str(exc) if exc else None, **fields)


async def _authorized_stream(call: _Call, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    first = True
    async for request in requests:
        if first:
            await call.authorize(request)
            first = False
        yield request


def server_interceptors(
    authenticator: Authenticator,
    authorizer: Authorizer,
    metrics: RpcMetrics,
    tracing: Sequence[Any] = (),
    rules: Mapping[str, Rule] = RULES,
) -> list[Any]:
    # Tracing outermost, so logs written inside the runtime interceptor see the span.
    return [*tracing, RuntimeInterceptor(authenticator, authorizer, metrics, rules)]
