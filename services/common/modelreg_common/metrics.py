"""Prometheus metrics shared by every service, served on `MODELREG_METRICS_LISTEN`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from modelreg_common.addresses import split_host_port


class RpcMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.calls = Counter(
            "modelreg_rpc_total",
            "RPCs handled, by method and status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "modelreg_rpc_duration_seconds",
            "RPC handling time, by method and status code.",
            ["method", "code"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "modelreg_auth_failures_total",
            "Calls refused as unauthenticated or unauthorized, by method and code.",
            ["method", "code"],
            registry=self.registry,
        )

    def observe(self, method: str, code: str, seconds: float) -> None:
        self.calls.labels(method, code).inc()
        self.latency.labels(method, code).observe(seconds)

    def serve(self, listen: str) -> None:
        host, port = split_host_port(listen)
        start_http_server(port, addr=host, registry=self.registry)
