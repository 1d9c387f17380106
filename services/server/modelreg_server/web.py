"""The web UI's gateway: the built assets plus grpc-web, forwarded to the registry's gRPC port.

Browsers cannot speak HTTP/2 gRPC, so the UI (TypeScript generated from protos/) sends
grpc-web: `POST /<package.Service>/<Method>`, `application/grpc-web+proto`, one length-prefixed
message. Each call is forwarded as raw bytes over a grpc.aio channel to the registry on loopback,
so the servicers, interceptors (auth, errors, audit) and contracts are the very same; nothing
here decodes a message. Server streams (the audit log's live tail) are relayed frame by frame;
client streams (Upload) cannot come from a browser and are refused as UNIMPLEMENTED.
"""

from __future__ import annotations

import base64
import mimetypes
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
from aiohttp import web
from grpc import aio

from modelreg.artifact.v1 import artifact_service_pb2
from modelreg.client._methods import GROUPS, methods_of
from modelreg_common.addresses import split_host_port
from modelreg_common.auth import Authenticator, refuse_exposed_local_mode
from modelreg_common.errors import Unauthenticated
from modelreg_common.forwarding import forwarding_metadata
from modelreg_common.logs import get_logger
from modelreg_common.settings import Settings

log = get_logger("modelreg.web")

ASSETS = Path(__file__).parent / "web_assets"
GRPC_WEB = "application/grpc-web+proto"
# grpc-web carries no compression negotiation from our client; a compressed frame is refused.
_DATA, _COMPRESSED, _TRAILER = 0x00, 0x01, 0x80
_HEADER = struct.Struct(">BI")
# Metadata a browser may pass on; anything else (cookies, hop-by-hop headers) stays behind.
_FORWARDED = ("authorization", "x-request-id")
_UNARY_TIMEOUT = 60.0
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_METHOD_PATH = re.compile(r"^/(modelreg\.[a-z]+\.v[0-9]+\.[A-Za-z]+)/([A-Za-z]+)$")
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}


class FrameError(ValueError):
    """A grpc-web body that is not exactly one uncompressed, complete message frame."""


def encode_data_frame(message: bytes) -> bytes:
    return _HEADER.pack(_DATA, len(message)) + message


def encode_trailer_frame(trailers: Iterable[tuple[str, str]]) -> bytes:
    block = "".join(f"{key}: {value}\r\n" for key, value in trailers).encode("ascii")
    return _HEADER.pack(_TRAILER, len(block)) + block


def decode_request(body: bytes) -> bytes:
    """The single message of a unary or server-streaming grpc-web request."""
    if len(body) < _HEADER.size:
        raise FrameError("grpc-web request shorter than a frame header")
    flags, length = _HEADER.unpack_from(body)
    if flags & _TRAILER:
        raise FrameError("grpc-web request starts with a trailer frame")
    if flags & _COMPRESSED:
        raise FrameError("compressed grpc-web messages are not supported")
    end = _HEADER.size + length
    if len(body) < end:
        raise FrameError("grpc-web request frame is truncated")
    if len(body) != end:
        raise FrameError("grpc-web request carries more than one message")
    return body[_HEADER.size : end]


def decode_frames(body: bytes) -> tuple[list[bytes], dict[str, str]]:
    """Messages and trailers of a grpc-web response body (for tests and tools)."""
    messages: list[bytes] = []
    trailers: dict[str, str] = {}
    offset = 0
    while offset < len(body):
        flags, length = _HEADER.unpack_from(body, offset)
        chunk = body[offset + _HEADER.size : offset + _HEADER.size + length]
        if len(chunk) != length:
            raise FrameError("grpc-web response frame is truncated")
        offset += _HEADER.size + length
        if flags & _TRAILER:
            for line in chunk.decode("ascii").split("\r\n"):
                if line:
                    key, _, value = line.partition(":")
                    trailers[key.strip().lower()] = value.strip()
        else:
            messages.append(chunk)
    return messages, trailers


def parse_timeout(value: str | None) -> float | None:
    """`grpc-timeout: 1500m` -> 1.5 seconds; None when absent or malformed."""
    if not value or len(value) < 2 or value[-1] not in _TIMEOUT_UNITS:
        return None
    amount = value[:-1]
    if not amount.isdigit() or len(amount) > 8:
        return None
    return int(amount) * _TIMEOUT_UNITS[value[-1]]


def status_trailers(
    code: grpc.StatusCode, message: str, metadata: Iterable[tuple[str, str | bytes]] = ()
) -> list[tuple[str, str]]:
    """grpc-status, percent-encoded grpc-message, then the call's trailing metadata;
    binary (`-bin`) values travel base64 as in gRPC over HTTP/2."""
    trailers = [("grpc-status", str(code.value[0]))]
    if message:
        trailers.append(("grpc-message", percent_encode(message)))
    for key, value in metadata:
        key = key.lower()
        if key in ("grpc-status", "grpc-message") or not re.fullmatch(r"[0-9a-z_.-]+", key):
            continue
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode("ascii")
        elif key.endswith("-bin"):
            value = base64.b64encode(value.encode()).decode("ascii")
        if "\r" in value or "\n" in value:
            continue
        trailers.append((key, value))
    return trailers


def percent_encode(message: str) -> str:
    """grpc-message encoding: printable ASCII but `%` as is, every other UTF-8 byte `%XX`."""
    return "".join(
        chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in message.encode()
    )


def loopback_target(listen: str, port: int) -> str:
    """Where this process's gRPC server is reached from inside it: its own host, or
    127.0.0.1 when it listens on every address."""
    host, _ = split_host_port(listen)
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class MethodKind:
    client_streaming: bool
    server_streaming: bool


@cache
def known_methods() -> Mapping[str, MethodKind]:
    """Every RPC of the registry by path, from the generated descriptors; nothing else is
    forwarded, so the gateway cannot be used to reach health, reflection or other services."""
    return {
        rpc.path: MethodKind(rpc.client_streaming, rpc.server_streaming)
        for package in GROUPS.values()
        for rpc in methods_of(package).values()
    }


class WebGateway:
    """Serves the UI and relays grpc-web to `target()` (the registry's gRPC address)."""

    def __init__(
        self,
        settings: Settings,
        target: Callable[[], str],
        *,
        assets: Path = ASSETS,
        authenticator: Authenticator | None = None,
    ) -> None:
        self._settings = settings
        self._target = target
        self._assets = assets
        # The gRPC server's own authenticator, so "who am I" answers exactly as calls will.
        self._authenticator = authenticator or Authenticator.from_settings(settings.auth)
        self._channel: aio.Channel | None = None
        self._runner: web.AppRunner | None = None
        # Room for the frame header on top of the largest message the registry accepts.
        self._max_body = settings.max_message_bytes + _HEADER.size
        self.port = 0

    @property
    def url(self) -> str:
        host, _ = split_host_port(self._settings.web_listen)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body, middlewares=[_security_headers])
        app.router.add_post(r"/{service:modelreg\.[^/]+}/{method}", self._grpc_web)
        app.router.add_get("/download", self._download)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/whoami", self._whoami)
        app.router.add_get("/{tail:.*}", self._static)
        return app

    async def start(self) -> None:
        host, port = split_host_port(self._settings.web_listen)
        refuse_exposed_local_mode(
            self._settings.auth,
            host,
            refusing="serve the web UI on",
            fix="MODELREG_WEB_LISTEN=127.0.0.1:8080",
        )
        limit = self._settings.max_message_bytes
        options = [
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]
        target = self._target()
        self._channel = aio.insecure_channel(target, options=options)
        # Cancelling the handler when the browser goes away ends the upstream stream too; on
        # shutdown, open streams (live tails) get the same grace as gRPC calls, not a minute.
        runner = web.AppRunner(
            self.app(),
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=self._settings.shutdown_grace_seconds,
        )
        await runner.setup()
        self._runner = runner  # so stop() cleans up even when binding fails below
        await web.TCPSite(runner, host, port).start()
        bound = runner.addresses
        self.port = int(bound[0][1]) if bound else port
        if not (self._assets / "index.html").is_file():
            log.warning("web.assets_missing", path=str(self._assets), hint="run make web")
        log.info("web.started", url=self.url, upstream=target)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()
        log.info("web.stopped")

    # -- grpc-web --------------------------------------------------------------------------

    async def _grpc_web(self, request: web.Request) -> web.StreamResponse:
        content_type = request.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip() not in (GRPC_WEB, "application/grpc-web"):
            # Also what keeps other origins out: this content type needs a CORS preflight,
            # and the gateway answers none.
            raise web.HTTPUnsupportedMediaType(text=f"expected {GRPC_WEB}")
        path = request.path
        kind = known_methods().get(path) if _METHOD_PATH.match(path) else None
        if kind is None:
            return await self._reply_status(
                request, grpc.StatusCode.UNIMPLEMENTED, f"{path} is not a method of the registry"
            )
        if kind.client_streaming:
            return await self._reply_status(
                request,
                grpc.StatusCode.UNIMPLEMENTED,
                "client-streaming calls cannot be made from a browser; use the Python client",
            )
        try:
            message = decode_request(await request.read())
        except web.HTTPRequestEntityTooLarge:
            return await self._reply_status(
                request,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request larger than {self._max_body} bytes",
            )
        except FrameError as exc:
            return await self._reply_status(request, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        metadata = _forwarded_metadata(request)
        timeout = parse_timeout(request.headers.get("grpc-timeout"))
        assert self._channel is not None
        if kind.server_streaming:
            stream: aio.UnaryStreamMultiCallable[bytes, bytes] = self._channel.unary_stream(path)
            return await self._relay_stream(
                request, stream(message, metadata=metadata, timeout=timeout)
            )
        unary: aio.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(path)
        call = unary(message, metadata=metadata, timeout=timeout or _UNARY_TIMEOUT)
        try:
            reply: bytes = await call
        except aio.AioRpcError as exc:
            return await self._reply_status(
                request, exc.code(), exc.details() or "", exc.trailing_metadata() or ()
            )
        response = await self._open(request, await call.initial_metadata())
        await response.write(encode_data_frame(reply))
        trailers = status_trailers(grpc.StatusCode.OK, "", await call.trailing_metadata() or ())
        await response.write(encode_trailer_frame(trailers))
        await response.write_eof()
        return response

    async def _relay_stream(
        self, request: web.Request, call: aio.UnaryStreamCall[Any, Any]
    ) -> web.StreamResponse:
        try:
            # Headers go out at once, so the browser knows the stream is open even while no
            # event comes (a live tail may wait for minutes); the status is in the trailers.
            response = await self._open(request, ())
            try:
                async for reply in call:
                    await response.write(encode_data_frame(reply))
                trailers = status_trailers(
                    grpc.StatusCode.OK, "", await call.trailing_metadata() or ()
                )
            except aio.AioRpcError as exc:
                trailers = status_trailers(
                    exc.code(), exc.details() or "", exc.trailing_metadata() or ()
                )
            await response.write(encode_trailer_frame(trailers))
            await response.write_eof()
            return response
        finally:
            # The browser left (handler cancelled) or the write failed: end the upstream call.
            call.cancel()

    async def _open(
        self, request: web.Request, initial: Iterable[tuple[str, str | bytes]] | None
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": GRPC_WEB, "Cache-Control": "no-store"}
        )
        for key, value in initial or ():
            if key == "x-request-id" and isinstance(value, str):
                response.headers[key] = value
        await response.prepare(request)
        return response

    async def _reply_status(
        self,
        request: web.Request,
        code: grpc.StatusCode,
        message: str,
        metadata: Iterable[tuple[str, str | bytes]] = (),
    ) -> web.StreamResponse:
        response = await self._open(request, ())
        await response.write(encode_trailer_frame(status_trailers(code, message, metadata)))
        await response.write_eof()
        return response

    # -- downloads, health, assets ----------------------------------------------------------

    async def _download(self, request: web.Request) -> web.StreamResponse:
        """A file of a version or run as a plain HTTP download (the UI's "download" link),
        streamed from the artifact service's Download with the caller's own token."""
        owner, path = request.query.get("owner", ""), request.query.get("path", "")
        if not owner or not path:
            raise web.HTTPBadRequest(text="owner and path query parameters are required")
        assert self._channel is not None
        stream = self._channel.unary_stream(
            "/modelreg.artifact.v1.ArtifactService/Download",
            request_serializer=artifact_service_pb2.DownloadRequest.SerializeToString,
            response_deserializer=artifact_service_pb2.DownloadResponse.FromString,
        )
        call = stream(
            artifact_service_pb2.DownloadRequest(owner=owner, path=path),
            metadata=_forwarded_metadata(request),
        )
        response: web.StreamResponse | None = None
        try:
            async for part in call:
                if response is None:
                    response = web.StreamResponse(headers=_download_headers(part.file, path))
                    await response.prepare(request)
                if part.chunk:
                    await response.write(part.chunk)
        except aio.AioRpcError as exc:
            if response is not None:
                # Headers are gone: cutting the body short is the only honest signal left.
                raise
            raise _http_error(exc) from None
        finally:
            call.cancel()
        if response is None:
            response = web.StreamResponse(headers=_download_headers(None, path))
            await response.prepare(request)
        await response.write_eof()
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _whoami(self, request: web.Request) -> web.Response:
        """The principal the caller's token stands for: the sign-in check, and how the UI
        knows whose requests are its own (the servers still decide every call)."""
        try:
            principal = await self._authenticator.authenticate(request.headers.get("authorization"))
        except Unauthenticated as exc:
            return web.json_response(
                {"code": "UNAUTHENTICATED", "message": exc.message},
                status=401,
                headers={"Cache-Control": "no-store"},
            )
        return web.json_response(
            {
                "subject": principal.subject,
                "groups": list(principal.groups),
                "method": principal.method,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def _static(self, request: web.Request) -> web.StreamResponse:
        root = self._assets.resolve()
        relative = request.match_info["tail"]
        if relative:
            candidate = (root / relative).resolve()
            if candidate.is_relative_to(root) and candidate.is_file():
                # Vite puts a content hash in every name under assets/: cache them for good.
                immutable = candidate.parent.name == "assets"
                return web.FileResponse(
                    candidate,
                    headers={
                        "Cache-Control": "public, max-age=31536000, immutable"
                        if immutable
                        else "no-cache"
                    },
                )
            if "." in relative.rsplit("/", 1)[-1]:
                raise web.HTTPNotFound()
        index = root / "index.html"
        if not index.is_file():
            return web.Response(
                status=503,
                text="The web UI is not built: run `make web` (needs Node.js) and restart.",
            )
        # Client-side routes (/models/fraud) all load the app, which routes in the browser.
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})


@web.middleware
async def _security_headers(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if request.method != "GET" and origin is not None and not _same_origin(origin, request.host):
        raise web.HTTPForbidden(text="cross-origin requests are not accepted")
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(_SECURITY_HEADERS)
        raise
    if not response.prepared:
        response.headers.update(_SECURITY_HEADERS)
    return response


def _same_origin(origin: str, host: str) -> bool:
    return origin.split("://", 1)[-1].rstrip("/") == host


def _forwarded_metadata(request: web.Request) -> list[tuple[str, str]]:
    """The browser's token and request id, and its address for the audit trail (the call's
    own peer is this gateway)."""
    metadata = [(key, request.headers[key]) for key in _FORWARDED if key in request.headers]
    peername = request.transport.get_extra_info("peername") if request.transport else None
    if peername:
        metadata += forwarding_metadata(str(peername[0]), int(peername[1]))
    return metadata


def _download_headers(file: Any, path: str) -> dict[str, str]:
    name = path.rsplit("/", 1)[-1]
    media_type = (file.media_type if file is not None else "") or (
        mimetypes.guess_type(name)[0] or "application/octet-stream"
    )
    headers = {
        "Content-Type": media_type,
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        "Cache-Control": "no-store",
    }
    if file is not None and file.size_bytes:
        headers["Content-Length"] = str(file.size_bytes)
    if file is not None and file.digest:
        headers["Digest"] = file.digest
    return headers


_HTTP_OF_CODE: dict[grpc.StatusCode, type[web.HTTPException]] = {
    grpc.StatusCode.INVALID_ARGUMENT: web.HTTPBadRequest,
    grpc.StatusCode.NOT_FOUND: web.HTTPNotFound,
    grpc.StatusCode.UNAUTHENTICATED: web.HTTPUnauthorized,
    grpc.StatusCode.PERMISSION_DENIED: web.HTTPForbidden,
    grpc.StatusCode.FAILED_PRECONDITION: web.HTTPConflict,
    grpc.StatusCode.UNAVAILABLE: web.HTTPServiceUnavailable,
}


def _http_error(exc: aio.AioRpcError) -> web.HTTPException:
    cls = _HTTP_OF_CODE.get(exc.code(), web.HTTPBadGateway)
    return cls(text=f"{exc.code().name}: {exc.details() or ''}")


__all__ = [
    "ASSETS",
    "FrameError",
    "WebGateway",
    "decode_frames",
    "decode_request",
    "encode_data_frame",
    "encode_trailer_frame",
    "known_methods",
    "loopback_target",
    "parse_timeout",
    "status_trailers",
]
