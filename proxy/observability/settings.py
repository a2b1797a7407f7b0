"""The ``observability:`` settings section (docs/observability.md).

- ``observability.metrics``: serve ``/metrics`` in the Prometheus text format
  (default on). With ``auth.mode: keys`` it needs a key with the ``admin``
  scope; without keys it is open like every route. ``store_size_interval_s``:
  the store's owners and memories are recounted by a scrape at most this often.
- ``observability.tracing``: OpenTelemetry spans for HTTP requests, recall,
  the upstream call and memory writes (default off). ``exporter``: ``otlp``
  (OTLP over HTTP/protobuf or gRPC, to ``otlp_endpoint``) or ``console``
  (spans printed as JSON to stdout, for a quick look).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TracingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    exporter: Literal["otlp", "console"] = "otlp"
    otlp_endpoint: str | None = None  # None: the OTEL_EXPORTER_OTLP_ENDPOINT environment variable, else localhost:4317
    service_name: str = "memproxy"


class ObservabilitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metrics: bool = True
    store_size_interval_s: float = Field(default=30.0, ge=0)  # how often a scrape recounts the store
    tracing: TracingSettings = Field(default_factory=TracingSettings)
