"""Liveness and readiness.

``/healthz`` answers while the process serves HTTP. ``/readyz`` also checks
the memory store: 503 when it is unreachable, so an orchestrator can route
around this replica (chat itself still fails open and keeps answering).
"""

from __future__ import annotations

import asyncio

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
    return JSONResponse({"status": "ok", "memory": "ok", "upstream": svc.upstream.name})
