"""Server bootstrap shared by every service: migrations, pools, interceptors, health,
reflection, metrics, peers, and a graceful stop.

A service plugs in with a `ServiceSpec` (name, schema, migrations, factory); its factory gets a
`ServiceRuntime` and returns a `ServiceComponent` that registers servicers and runs workers.
One `RegistryServer` serves any set of them on one port: all four in the embedded default,
one per process in production.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from modelreg_common.addresses import split_host_port
from modelreg_common.api_keys import ApiKeyVerifier
from modelreg_common.auth import Authenticator, InternalTokenVerifier, refuse_exposed_local_mode
from modelreg_common.authorizer import AccessEventsWatcher, Authorizer, MetadataAccessSource
from modelreg_common.database import create_pool, runtime_secret
from modelreg_common.interceptors import server_interceptors
from modelreg_common.logs import get_logger
from modelreg_common.metrics import RpcMetrics
from modelreg_common.migrations import Migration, load_migrations, migrate_dsn
from modelreg_common.page_tokens import PageTokens
from modelreg_common.permissions import RULES, Rule
from modelreg_common.relay import RELAY_STATEMENTS, OutboxRelay
from modelreg_common.settings import Settings
from modelreg_common.telemetry import Telemetry
from modelreg_common.tls import peer_channel_credentials, peer_channel_options
from modelreg_common.usage import UsageRecorder

log = get_logger("modelreg.server")

HEALTH_SERVICE = "grpc.health.v1.Health"


class ServiceComponent(Protocol):
    """What a service's factory returns: its servicers and background workers."""

    @property
    def service_names(self) -> Sequence[str]:
        """Full proto names of the gRPC services it serves, for health and reflection."""

    def register(self, server: aio.Server) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    schema: str
    migrations_package: str | None
    create: Callable[[ServiceRuntime], Awaitable[ServiceComponent]]
    # Permission rules of RPCs outside the registry's own table (test probes, extensions).
    rules: Mapping[str, Rule] = field(default_factory=dict)
    # Static SQL of the service's hot paths, parsed on each new pooled connection.
    warm_statements: Sequence[str] = ()

    def migrations(self) -> list[Migration]:
        if self.migrations_package is None:
            return []
        return load_migrations(self.migrations_package, self.name)


class _PeerCredentials(
    aio.UnaryUnaryClientInterceptor,
    aio.UnaryStreamClientInterceptor,
    aio.StreamUnaryClientInterceptor,
    aio.StreamStreamClientInterceptor,
):
    """Adds the service's own bearer token to every call it makes to a peer."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: aio.ClientCallDetails) -> aio.ClientCallDetails:
        metadata = aio.Metadata(*(details.metadata or ()))
        metadata.add(*self._header)
        return aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)

    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class Peers:
    """Channels to other services; a peer with no configured target is this process.

    Calls carry the service's peer token (`MODELREG_PEERS__TOKEN`) when one is set, so peers
    accept them in token mode. Channels balance round-robin over every address a target
    resolves to (a headless Service), rather than sticking to the first.
    """

    def __init__(
        self,
        settings: Settings,
        self_target: Callable[[], str],
        interceptors: Sequence[Any],
        internal_token: str | None = None,
    ) -> None:
        self._settings = settings.peers
        self._self_target = self_target
        self._interceptors = list(interceptors)
        # A configured peer token is what the other processes know; a peer with no target is
        # this very process, which knows its own random internal token.
        configured = self._settings.token
        self._token = configured.get_secret_value() if configured is not None else None
        self._internal_token = internal_token
        self._credentials = peer_channel_credentials(settings)
        self._options = [
            ("grpc.lb_policy_name", "round_robin"),
            *peer_channel_options(settings),
        ]
        self._channels: dict[str, aio.Channel] = {}

    @property
    def timeout(self) -> float:
        return self._settings.timeout_seconds

    def is_local(self, name: str) -> bool:
        """True when `name` has no configured target: it is served by this process."""
        return not getattr(self._settings, name, "")

    def target(self, name: str) -> str:
        return self._self_target() if self.is_local(name) else str(getattr(self._settings, name))

    def channel(self, name: str) -> aio.Channel:
        if name not in self._channels:
            # This process (no target) is called with its internal token: roles are resolved
            # with calls to metadata, which must not themselves wait for a role lookup.
            token = (self._internal_token or self._token) if self.is_local(name) else self._token
            interceptors = [
                *self._interceptors,
                *([_PeerCredentials(token)] if token is not None else []),
            ] or None
            self._channels[name] = (
                aio.insecure_channel(self.target(name), self._options, interceptors=interceptors)
                if self._credentials is None
                else aio.secure_channel(
                    self.target(name), self._credentials, self._options, interceptors=interceptors
                )
            )
        return self._channels[name]

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()


@dataclass
class ServiceRuntime:
    """What the runtime hands a service: settings, its own pool, peers, telemetry, and the
    page-token signer keyed by a secret all replicas share."""

    settings: Settings
    dsn: str
    pool: asyncpg.Pool[Any]
    peers: Peers
    telemetry: Telemetry
    page_tokens: PageTokens
    # Forget cached roles and keys at once after a change to grants (`invalidate()`).
    authorizer: Authorizer
    # Counts downloads and alias resolutions per principal (`record()`), flushed to events.
    usage: UsageRecorder
    extras: dict[str, Any] = field(default_factory=dict)


async def migrate_services(dsn: str, specs: Sequence[ServiceSpec]) -> dict[str, list[str]]:
    return {spec.name: await migrate_dsn(dsn, spec.schema, spec.migrations()) for spec in specs}


class RegistryServer:
    def __init__(
        self,
        settings: Settings,
        specs: Sequence[ServiceSpec],
        dsn: str,
        *,
        telemetry: Telemetry | None = None,
        authenticator: Authenticator | None = None,
        metrics: RpcMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.specs = list(specs)
        self.dsn = dsn
        self.telemetry = telemetry or Telemetry(settings.telemetry)
        self.authenticator = authenticator or Authenticator.from_settings(
            settings.auth, settings.tls
        )
        # Calls this process makes to itself (peers with no target) authenticate with a token
        # only this process knows, as the internal principal; never configured, never logged.
        internal_token = secrets.token_urlsafe(32)
        self.authenticator.add_verifier(InternalTokenVerifier(internal_token))
        self.metrics = metrics or RpcMetrics()
        self.port = 0
        self.health = health.aio.HealthServicer()
        self.components: list[ServiceComponent] = []
        self.relays: list[OutboxRelay] = []
        self._pools: list[asyncpg.Pool[Any]] = []
        self._server: aio.Server | None = None
        self._peers = Peers(
            settings,
            lambda: f"127.0.0.1:{self.port}",
            self.telemetry.client_interceptors(),
            internal_token,
        )
        self.authorizer = Authorizer(
            settings.auth,
            MetadataAccessSource(lambda: self._peers.channel("metadata"), self._peers.timeout),
        )
        self._access_watcher = AccessEventsWatcher(
            self.authorizer, lambda: self._peers.channel("events")
        )
        api_keys = ApiKeyVerifier.from_settings(
            settings.auth, lambda: self._peers.channel("metadata"), self._peers.timeout
        )
        self.authenticator.add_verifier(api_keys)
        self.authorizer.on_invalidate(api_keys.clear)
        self.usage = UsageRecorder.for_peers(self._peers, registry=self.metrics.registry)

    @property
    def address(self) -> str:
        host, _ = split_host_port(self.settings.listen)
        return f"{host}:{self.port}"

    def _check_auth_exposure(self) -> None:
        host, _ = split_host_port(self.settings.listen)
        refuse_exposed_local_mode(
            self.settings.auth, host, refusing="listen on", fix="listen on 127.0.0.1"
        )

    def _credentials(self) -> grpc.ServerCredentials | None:
        tls = self.settings.tls
        if tls.cert_file is None or tls.key_file is None:
            return None
        client_ca = tls.client_ca_file.read_bytes() if tls.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )

    async def start(self) -> None:
        self._check_auth_exposure()
        await migrate_services(self.dsn, self.specs)
        limit = self.settings.max_message_bytes
        server = aio.server(
            interceptors=server_interceptors(
                self.authenticator,
                self.authorizer,
                self.metrics,
                self.telemetry.server_interceptors(),
                {**RULES, **{m: r for spec in self.specs for m, r in spec.rules.items()}},
            ),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.keepalive_timeout_ms", 20_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
                # Without this a second server on the same port starts "fine" and steals calls.
                ("grpc.so_reuseport", 0),
            ],
        )
        self._server = server
        # Bind first: services made below may open channels to "this process" (peers with no
        # configured target), which must know the real port even when listening on port 0.
        credentials = self._credentials()
        if credentials is None:
            self.port = server.add_insecure_port(self.settings.listen)
        else:
            self.port = server.add_secure_port(self.settings.listen, credentials)
        if self.port == 0:
            raise RuntimeError(f"cannot listen on {self.settings.listen}")
        names: list[str] = []
        for spec in self.specs:
            pool = await create_pool(
                self.dsn,
                spec.schema,
                min_size=min(self.settings.pool_min_size, self.settings.pool_max_size),
                max_size=self.settings.pool_max_size,
                warm_statements=[
                    *spec.warm_statements,
                    *(RELAY_STATEMENTS if self.settings.relay_enabled else ()),
                ],
            )
            self._pools.append(pool)
            page_tokens = PageTokens(await runtime_secret(pool, "page_token_key"))
            runtime = ServiceRuntime(
                self.settings,
                self.dsn,
                pool,
                self._peers,
                self.telemetry,
                page_tokens,
                self.authorizer,
                self.usage,
            )
            component = await spec.create(runtime)
            component.register(server)
            self.components.append(component)
            if self.settings.relay_enabled:
                self.relays.append(OutboxRelay.for_service(runtime, spec.schema, spec.name))
            names.extend(component.service_names)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [*names, HEALTH_SERVICE, reflection.SERVICE_NAME], server
        )
        await server.start()
        for component in self.components:
            await component.start()
        for relay in self.relays:
            await relay.start()
        if self.settings.auth.mode != "local":
            await self._access_watcher.start()
        await self.usage.start()
        if self.settings.metrics_listen:
            self.metrics.serve(self.settings.metrics_listen)
        for name in ["", *names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("server.started", address=self.address, services=names)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting calls, let in-flight ones finish within `grace`, then release all."""
        if self._server is None:
            return
        server, self._server = self._server, None
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        await self.health.enter_graceful_shutdown()
        # Before the port is released: a watcher reconnecting after that could reach the next
        # server on the same port.
        await self._access_watcher.stop()
        # The last usage flush needs the events service, which may be this very server.
        await self.usage.stop()
        await server.stop(grace)
        for relay in self.relays:
            await relay.stop()
        for component in reversed(self.components):
            await component.stop()
        await self._peers.close()
        for pool in self._pools:
            await pool.close()
        self.telemetry.shutdown()
        log.info("server.stopped")

    async def serve_until_signal(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            log.info("server.stopping")
            await self.stop()
