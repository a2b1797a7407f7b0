"""OpenTelemetry traces: off by default; when on, a chat request is one trace with recall,
upstream and write spans inside the HTTP server span, and no owner name anywhere."""

from __future__ import annotations

from pathlib import Path

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from proxy.app import create_app
from proxy.config import load_settings
from testing.serving import ServerThread

OWNER = "tracing-owner-xq"


def test_a_chat_request_is_one_trace_with_memory_spans(tmp_path: Path, embedder, upstream_url: str) -> None:
    exporter = InMemorySpanExporter()
    settings = load_settings(
        data_dir=str(tmp_path / "data"),
        upstream={"base_url": upstream_url, "provider": "openai"},
        memory={"recall_deadline_ms": 10_000},
        observability={"tracing": {"enabled": True, "service_name": "memproxy-test"}},
    )
    server = ServerThread(create_app(settings, embedder=embedder, span_exporter=exporter)).start()
    try:
        response = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": "fake-model", "messages": [{"role": "user", "content": "I live in Lisbon."}]},
            headers={"X-Memory-User": OWNER},
            timeout=30,
        )
        assert response.status_code == 200
    finally:
        server.stop()
    spans = exporter.get_finished_spans()
    by_name = {s.name: s for s in spans}
    server_span = next(s for s in spans if s.name.startswith("POST /v1/chat/completions") and s.parent is None)
    for name in ("memproxy.recall", "memproxy.upstream", "memproxy.write"):
        span = by_name[name]
        assert span.context.trace_id == server_span.context.trace_id, name
        assert span.parent is not None
    assert by_name["memproxy.upstream"].attributes["front"] == "chat"
    assert by_name["memproxy.write"].attributes["memproxy.write_status"] == "ok"
    assert server_span.resource.attributes["service.name"] == "memproxy-test"
    for span in spans:
        assert OWNER not in repr(dict(span.attributes or {}))


def test_tracing_is_off_by_default() -> None:
    assert load_settings().observability.tracing.enabled is False
