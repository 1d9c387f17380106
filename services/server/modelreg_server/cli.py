"""modelreg serve | migrate | version | health, and the client commands (models, versions,
alias, requests, deployments, events, webhooks, audit) from `modelreg.client.cli`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from modelreg.client import cli as client_cli
from modelreg_common import __version__
from modelreg_common.logs import configure_logging, get_logger
from modelreg_common.memory import freeze_startup_heap, tune_malloc
from modelreg_common.server import RegistryServer, migrate_services
from modelreg_common.settings import Settings
from modelreg_server.catalog import SERVICES, load_specs
from modelreg_server.database import database
from modelreg_server.web import WebGateway, loopback_target

log = get_logger("modelreg.server")


def web_off_reason(settings: Settings, services: Sequence[str] | None) -> str | None:
    """Why this process serves no web UI, or None when it does."""
    if not settings.web_listen:
        return "MODELREG_WEB_LISTEN is empty"
    if services is not None and set(services) != set(SERVICES):
        # The UI needs every service; one replica of a split deployment is not its home.
        return "not every service runs in this process"
    if settings.tls.cert_file is not None:
        # The gateway has no client certificate and no name to check the server's against on
        # loopback; a TLS deployment serves the UI through its own ingress instead.
        return "TLS is configured on the gRPC port"
    return None


async def _serve(settings: Settings, services: Sequence[str] | None) -> None:
    specs = load_specs(services)
    async with database(settings) as dsn:
        server = RegistryServer(settings, specs, dsn)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        reason = web_off_reason(settings, services)
        gateway = None
        if reason is not None:
            log.info("web.off", reason=reason)
        else:
            # The gateway forwards to this process's own gRPC port, known once it is bound.
            gateway = WebGateway(
                settings,
                lambda: loopback_target(settings.listen, server.port),
                authenticator=server.authenticator,
            )
        try:
            if gateway is not None:
                try:
                    await gateway.start()
                except OSError as exc:
                    if "web_listen" in settings.model_fields_set:
                        raise
                    # Only the default port was taken (another registry, a dev server): the
                    # registry itself is still useful, so say so loudly and go on without it.
                    log.error("web.unavailable", listen=settings.web_listen, error=str(exc))
            freeze_startup_heap()
            await stop.wait()
        finally:
            log.info("server.stopping")
            # gRPC first: its grace ends the streams the gateway relays with a status the
            # browser can read; then the gateway has nothing left in flight.
            await server.stop()
            if gateway is not None:
                await gateway.stop()


async def _migrate(settings: Settings, services: Sequence[str] | None) -> None:
    async with database(settings) as dsn:
        applied = await migrate_services(dsn, load_specs(services))
    for name, labels in applied.items():
        print(
            f"{name}: {len(labels)} migration(s) applied"
            + (f" ({', '.join(labels)})" if labels else "")
        )


def _health(target: str, timeout: float) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
            listing = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=timeout
            )
            services = [s.name for r in listing for s in r.list_services_response.service]
        except grpc.RpcError as exc:
            print(f"{target}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{target}: {status}")
    for name in services:
        print(f"  {name}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelreg", description="The modelreg model registry.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the registry (all services by default)")
    serve.add_argument(
        "--service",
        action="append",
        choices=sorted(SERVICES) or None,
        help="run only this service (repeatable); default: every service in one process",
    )
    serve.add_argument("--listen", help="host:port (default 127.0.0.1:50051, MODELREG_LISTEN)")
    migrate = commands.add_parser("migrate", help="apply database migrations and exit")
    migrate.add_argument("--service", action="append", choices=sorted(SERVICES) or None)
    commands.add_parser("version", help="print the version")
    check = commands.add_parser("health", help="check a running registry")
    check.add_argument("--target", default="127.0.0.1:50051")
    check.add_argument("--timeout", type=float, default=5.0)
    client_cli.add_commands(commands)
    args = parser.parse_args(argv)

    if getattr(args, "handler", None) is not None:
        return client_cli.run(args)

    if args.command == "version":
        print(f"modelreg {__version__}")
        return 0
    if args.command == "health":
        return _health(args.target, args.timeout)
    overrides = {"listen": args.listen} if getattr(args, "listen", None) else {}
    settings = Settings(**overrides)
    configure_logging(settings)
    if args.command == "serve":
        # Before any thread exists: glibc keeps the malloc arenas threads have already made.
        tune_malloc()
        asyncio.run(_serve(settings, args.service))
    else:
        asyncio.run(_migrate(settings, args.service))
    return 0


if __name__ == "__main__":
    sys.exit(main())
