"""OpenTelemetry tracing: a span per RPC, context carried on calls between services.

Off by default. With an exporter configured, server and client interceptors from
opentelemetry-instrumentation-grpc create the spans and propagate W3C trace context.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from modelreg_common.settings import TelemetrySettings


class Telemetry:
    def __init__(self, settings: TelemetrySettings, processor: SpanProcessor | None = None) -> None:
        self.enabled = settings.exporter != "none" or processor is not None
        self.provider: TracerProvider | None = None
        if not self.enabled:
            return
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name})
        )
        if processor is not None:
            self.provider.add_span_processor(processor)
        elif settings.exporter == "console":
            self.provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif settings.exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            self.provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
            )

    def server_interceptors(self) -> list[Any]:
        if self.provider is None:
            return []
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        return [aio_server_interceptor(tracer_provider=self.provider)]  # type: ignore[no-untyped-call]

    def client_interceptors(self) -> list[Any]:
        if self.provider is None:
            return []
        from opentelemetry.instrumentation.grpc import aio_client_interceptors

        return list(aio_client_interceptors(tracer_provider=self.provider))  # type: ignore[no-untyped-call]

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


def current_trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


def inject_trace_context() -> dict[str, str]:
    """W3C `traceparent` of the current span, to store beside an outbox row."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
