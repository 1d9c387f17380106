"""POSTs webhook deliveries with aiohttp, behind the SSRF guard.

Every host is resolved at delivery time by a resolver that refuses forbidden addresses, and
the connection goes to the addresses that were checked (no second lookup to rebind).
IP-literal hosts skip aiohttp's resolver, so they are checked here before the request.
Redirects are not followed: a 3xx is a failed attempt.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from modelreg_events.domain.models import SendResult
from modelreg_events.domain.targets import refusal

USER_AGENT = "modelreg-webhooks/1"
_MAX_ERROR = 500


class TargetRefused(Exception):
    pass


class GuardedResolver(AbstractResolver):
    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loopback_name = host.lower() == "localhost" or host.lower().endswith(".localhost")
        if loopback_name and not self._allow_private:
            raise TargetRefused(f"{host} is a loopback host")
        results = await self._inner.resolve(host, port, family)
        for result in results:
            why = refusal(result["host"], allow_private=self._allow_private)
            if why is not None:
                raise TargetRefused(f"{host} resolves to a refused address: {why}")
        return results

    async def close(self) -> None:
        await self._inner.close()


def _literal_refusal(url: str, allow_private: bool) -> str | None:
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    return refusal(host, allow_private=allow_private)


class HttpSender:
    def __init__(self, *, allow_private: bool, timeout_seconds: float) -> None:
        self._allow_private = allow_private
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(allow_private=self._allow_private),
                use_dns_cache=False,
                limit=256,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, trust_env=False
            )
        return self._session

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> SendResult:
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        why = _literal_refusal(url, self._allow_private)
        if why is not None:
            return SendResult(0, 0.0, f"target refused: {why}")
        all_headers = {"content-type": "application/json", "user-agent": USER_AGENT, **headers}
        try:
            async with self._client().post(
                url, data=body, headers=all_headers, allow_redirects=False
            ) as response:
                await response.content.read(64 * 1024)
                status = response.status
                retry_after = response.headers.get("retry-after")
        except TargetRefused as exc:
            return SendResult(0, elapsed(), f"target refused: {exc}")
        except aiohttp.ClientConnectorError as exc:
            cause: Any = exc.os_error if hasattr(exc, "os_error") else exc
            if isinstance(cause, TargetRefused) or isinstance(exc.__cause__, TargetRefused):
                return SendResult(0, elapsed(), f"target refused: {exc}")
            return SendResult(0, elapsed(), f"connection failed: {exc}"[:_MAX_ERROR])
        except TimeoutError:
            return SendResult(0, elapsed(), "timed out")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return SendResult(0, elapsed(), f"{type(exc).__name__}: {exc}"[:_MAX_ERROR])
        error = ""
        if 300 <= status < 400:
            error = f"HTTP {status}: redirects are not followed"
        elif not 200 <= status < 300:
            error = f"HTTP {status}"
        return SendResult(status, elapsed(), error, retry_after)

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
            await asyncio.sleep(0)
