"""gRPC servicer of modelreg.events.v1.UsageService: proto in, domain call, proto out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from grpc import aio

from modelreg.events.v1 import usage_service_pb2, usage_service_pb2_grpc
from modelreg_common.errors import InvalidArgument
from modelreg_common.filters import parse_timestamp
from modelreg_common.page_tokens import PageTokens, fingerprint, page_size
from modelreg_events.domain.models import UsageKey
from modelreg_events.domain.usage import UsageService, parse_parent, parse_usage_filter
from modelreg_events.transport import convert

Context = aio.ServicerContext[Any, Any]


def _key(last: list[Any]) -> UsageKey:
    """The position a page token carries; the token is signed, so a bad shape is a token
    from an older build rather than an attack, and still only INVALID_ARGUMENT."""
    if len(last) == 4:
        hour, version, principal, kind = last
        stamp = parse_timestamp(hour) if isinstance(hour, str) else None
        if (
            stamp is not None
            and isinstance(version, int)
            and isinstance(principal, str)
            and isinstance(kind, str)
        ):
            return UsageKey(stamp, version, principal, kind)
    raise InvalidArgument("page_token", "is not a token this server issued")


class UsageServicer(usage_service_pb2_grpc.UsageServiceServicer):
    def __init__(self, service: UsageService, tokens: PageTokens) -> None:
        self._service = service
        self._tokens = tokens

    async def RecordUsage(
        self, request: usage_service_pb2.RecordUsageRequest, context: Context
    ) -> usage_service_pb2.RecordUsageResponse:
        applied = await self._service.record(
            request.batch_id,
            [convert.usage_from_proto(r) for r in request.records],
            now=datetime.now(UTC),
        )
        return usage_service_pb2.RecordUsageResponse(applied=applied)

    async def ListUsage(
        self, request: usage_service_pb2.ListUsageRequest, context: Context
    ) -> usage_service_pb2.ListUsageResponse:
        parent = parse_parent(request.parent)
        limit = page_size(request.page_size)
        flt = parse_usage_filter(request.filter)
        query = fingerprint("usage", str(parent), request.filter)
        last = self._tokens.decode(request.page_token, query)
        after = _key(last) if last is not None else None
        found = await self._service.list_usage(parent, flt, after=after, limit=limit + 1)
        token = ""
        if len(found) > limit:
            found = found[:limit]
            tail = found[-1]
            token = self._tokens.encode(
                query, [tail.hour_start.isoformat(), tail.version, tail.principal, tail.kind]
            )
        return usage_service_pb2.ListUsageResponse(
            usage_records=[convert.usage_to_proto(r) for r in found], next_page_token=token
        )
