"""Optional OpenTelemetry traces (``observability.tracing``, off by default).

When on, each app gets its own :class:`TracerProvider` (never the global
one): FastAPI's instrumentation makes a span per HTTP request, and the
memory pipeline adds ``memproxy.recall``, ``memproxy.upstream`` and
``memproxy.write`` spans inside it. Span attributes carry sizes, statuses and
the front end, never owner names or memory text.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI

from proxy.observability.settings import TracingSettings


class Tracing:
    """The tracer of one app (a no-op when tracing is off)."""

    def __init__(self, tracer: Any = None, provider: Any = None) -> None:
        self._tracer = tracer
        self.provider = provider

    @contextlib.contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[Any]:
        if self._tracer is None:
            yield None
            return
        with self._tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span

    def record(self, name: str, seconds: float, **attributes: Any) -> None:
        """A span that just ended after ``seconds`` (a call timed elsewhere), under the current span."""
        if self._tracer is None:
            return
        end = time.time_ns()
        span = self._tracer.start_span(name, start_time=end - int(seconds * 1e9), attributes=attributes)
        span.end(end_time=end)

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


OFF = Tracing()


def setup_tracing(app: FastAPI, settings: TracingSettings, exporter: Any = None) -> Tracing:
    """Instrument ``app`` when tracing is on; ``exporter`` overrides the configured one (tests)."""
    if not settings.enabled:
        return OFF
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="/metrics,/healthz,/readyz")
    return Tracing(provider.get_tracer("memproxy"), provider)
