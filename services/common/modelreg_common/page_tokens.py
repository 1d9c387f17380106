"""Opaque keyset page tokens (AIP-158), HMAC-signed and bound to the query they came from.

A token carries the sort key of the last item returned and a fingerprint of the query (parent,
filter, order_by, ...). A token that was tampered with, or is replayed with another query, is
INVALID_ARGUMENT on `page_token`. Keyset, never offsets: paging costs O(pages).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any

from modelreg_common.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_MAC_BYTES = 16


def page_size(
    requested: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE
) -> int:
    """0 means the default; above the maximum is capped; negative is an error."""
    if requested < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return default if requested == 0 else min(requested, maximum)


def fingerprint(*parts: object) -> str:
    """A stable digest of everything that defines a query except the page position."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class PageTokens:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("page token key must be at least 16 bytes")
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, query: str, last: Sequence[Any]) -> str:
        payload = json.dumps({"q": query, "k": list(last)}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(self._mac(payload) + payload).decode().rstrip("=")

    def decode(self, token: str, query: str) -> list[Any] | None:
        """The last key of the previous page, or None for the first page (empty token)."""
        if not token:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raise InvalidArgument("page_token", "is not a token this server issued") from None
        mac, payload = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidArgument("page_token", "is not a token this server issued")
        data = json.loads(payload)
        if data.get("q") != query:
            raise InvalidArgument(
                "page_token",
                "was issued for a different query; keep parent, filter and order_by the same "
                "while paging",
            )
        last = data.get("k")
        if not isinstance(last, list):
            raise InvalidArgument("page_token", "is not a token this server issued")
        return last
