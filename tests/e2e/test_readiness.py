"""Readiness a load balancer can use (proxy/health.py): ready with the store and the
writer healthy, the scheduler lease reported; 503 ``draining`` once a stop signal
arrived (the drain itself, with a real SIGTERM, is in tests/e2e/test_replicas.py)."""

from __future__ import annotations

import signal
from typing import Any

import httpx

from proxy.serving import Drain


def test_ready_with_the_lease_then_draining_after_the_stop_signal(proxy: Any) -> None:
    ready = httpx.get(f"{proxy.url}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ok" and body["writes"]["status"] == "ok"
    assert body["scheduler"]["kind"] == "local" and body["scheduler"]["held"] is True  # embedded store: one process

    drain: Drain = proxy.server.config.app.state.drain
    received: list[int] = []
    # what Drain.watch chains onto uvicorn's handler (only the main thread may install it: call it as the signal would)
    drain._chain(lambda signum, frame: received.append(signum))(signal.SIGTERM, None)
    assert received == [signal.SIGTERM]  # uvicorn's own handler still runs: it stops accepting and drains
    draining = httpx.get(f"{proxy.url}/readyz", timeout=30)
    assert draining.status_code == 503 and draining.json() == {"status": "draining"}
    assert httpx.get(f"{proxy.url}/healthz", timeout=30).status_code == 200  # alive all along
