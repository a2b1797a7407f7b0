"""``memproxy bench latency``: a tiny run against a real ``memproxy serve`` process (shape only, no timing)."""

from __future__ import annotations

from bench import latency

MODES = {"direct", "proxy_memory_off", "proxy_memory_read", "direct_during_writes", "proxy_memory_on"}


def test_a_tiny_streamed_run_reports_added_p50_and_p95_for_every_mode() -> None:
    results = latency.measure(calls=2, memories=3, stream=True)
    assert set(results["modes"]) == MODES and set(results["first_chunk"]) == MODES
    for row in [*results["modes"].values(), *results["first_chunk"].values()]:
        assert {"median_ms", "p95_ms", "added_median_ms", "added_p95_ms"} <= set(row)
        assert row["median_ms"] > 0
    assert results["modes"]["direct"]["added_median_ms"] == 0
    text = latency.render(results)
    assert "added p95" in text and "time to the first streamed chunk" in text
