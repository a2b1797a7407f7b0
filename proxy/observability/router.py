"""``GET /metrics``: the Prometheus text format (``admin`` scope under keys; see docs/observability.md)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy.errors import NotFound
from proxy.services import services

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    found = services(request).metrics
    if found is None:
        raise NotFound("Metrics are off (observability.metrics: false).", code="not_found")
    await found.collector.refresh_store_size()
    body = await asyncio.to_thread(generate_latest, found.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
