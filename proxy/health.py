"""Liveness and readiness.

``/healthz`` answers while the process serves HTTP. ``/readyz`` also checks
the memory store: 503 when it is unreachable, or when the background writer
cannot store journaled writes (they stay journaled and are retried; the body
says why and how many wait), so an orchestrator can route around this replica
(chat itself still fails open and keeps answering).
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
    svc = services(request)
    try:
        await asyncio.wait_for(svc.engine.ping(), timeout=READY_TIMEOUT_S)
    except Exception as exc:  # readiness reports any failure, it never raises
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return JSONResponse({"status": "unavailable", "memory": detail}, status_code=503)
    writes = _writes(svc.engine)
    if writes["status"] != "ok":
        return JSONResponse({"status": "unavailable", "memory": "writes failing", "writes": writes}, status_code=503)
    return JSONResponse({"status": "ok", "memory": "ok", "upstream": svc.upstream.name, "writes": writes})


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
