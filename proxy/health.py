"""Liveness and readiness, for a load balancer or an orchestrator.

``/healthz`` (liveness) answers 200 whenever the process serves HTTP: restart
the process only when it stops answering. ``/readyz`` (readiness: send this
replica traffic?) answers 200 only when the memory store answers and the
background writer is storing journaled writes; 503 with a ``status`` of

* ``loading``: the app has not finished starting (models, store connection);
* ``draining``: the process got SIGTERM and is finishing requests in flight
  (it accepts no new connections; take it out of rotation);
* ``unavailable``: the store does not answer, or the writer cannot store
  (writes stay journaled and are retried; the body says why and how many wait).

Chat itself fails open and keeps answering while unavailable. The body also
says whether this process holds the scheduler lease (memory/lease.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from proxy.services import services

router = APIRouter()

READY_TIMEOUT_S = 2.0


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    if getattr(request.app.state, "drain", None) is not None and request.app.state.drain.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    if getattr(request.app.state, "services", None) is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    svc = services(request)
    try:
        await asyncio.wait_for(svc.engine.ping(), timeout=READY_TIMEOUT_S)
    except Exception as exc:  # readiness reports any failure, it never raises
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return JSONResponse({"status": "unavailable", "memory": detail}, status_code=503)
    writes = _writes(svc.engine)
    if writes["status"] != "ok":
        return JSONResponse({"status": "unavailable", "memory": "writes failing", "writes": writes}, status_code=503)
    scheduler = svc.engine.scheduler.lease.describe()
    return JSONResponse(
        {"status": "ok", "memory": "ok", "upstream": svc.upstream.name, "writes": writes, "scheduler": scheduler}
    )


def _writes(engine: Any) -> dict[str, Any]:
    """The durable-write path: the journal's depth and the writer's health."""
    writer = engine.writer
    error = engine.write_status()
    return {
        "status": "ok" if error is None else "failing",
        "error": error,
        "journal_depth": writer.depth,
        "written": writer.written,
    }
