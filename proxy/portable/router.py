"""Export and import over HTTP, streamed both ways.

``GET /v1/memories/export?user=U`` streams the owner's ``.memcube`` archive a
page of memories at a time; ``POST /v1/memories/import?user=U`` takes an
archive (or, with ``format``, another tool's export) as the raw request body,
spools it to a temporary file chunk by chunk, verifies it whole, then imports
it as ``user``. The owner comes from the ``user`` parameter, the same
request-identity input as the other management routes, so an auth layer that
resolves or checks the owner wraps these routes the same way.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from memory.archive import ArchiveReader, export_archive, import_archive
from memory.importers import ARCHIVE, FORMATS, import_items, parse
from memory.pack_owner import is_pack_owner
from proxy.errors import InvalidRequest
from proxy.services import services

router = APIRouter()

Conflict = Literal["skip", "replace", "new-version"]
SUFFIX = {"chatgpt": ".json", "mem0": ".json", "memos": ".json", "letta": ".af", "facts": ".json", ARCHIVE: ".memcube"}
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _owner(user: str) -> str:
    if is_pack_owner(user):
        raise InvalidRequest("Memory packs are not a user's memories.", param="user")
    return user


@router.get("/v1/memories/export", response_class=StreamingResponse)
async def export_memories(
    request: Request, user: str = Query(min_length=1, max_length=256), vectors: bool = True
) -> StreamingResponse:
    engine = services(request).engine
    stream = export_archive(engine, _owner(user), vectors=vectors)
    return StreamingResponse(
        stream,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{_filename(user)}.memcube"'},
    )


@router.post("/v1/memories/import", openapi_extra=UPLOAD_BODY)
async def import_memories(
    request: Request,
    user: str = Query(min_length=1, max_length=256),
    on_conflict: Conflict = "skip",
    format: str = ARCHIVE,
) -> dict[str, Any]:
    if format != ARCHIVE and format not in FORMATS:
        raise InvalidRequest(f"Unknown format '{format}'; expected {ARCHIVE} or one of {', '.join(FORMATS)}.",
                             param="format")
    engine = services(request).engine
    with tempfile.TemporaryDirectory(prefix="memproxy-import-") as folder:
        path = Path(folder) / f"upload{SUFFIX[format]}"
        with path.open("wb") as spool:  # never the whole body in memory
            async for chunk in request.stream():
                await asyncio.to_thread(spool.write, chunk)
        if format == ARCHIVE:
            with ArchiveReader(path) as reader:
                report = await import_archive(engine, reader, user=_owner(user), on_conflict=on_conflict)
        else:
            items = await asyncio.to_thread(parse, path, format)
            report = await import_items(engine, _owner(user), format, items)
    return {"object": "memories.import", "format": format, **report.to_dict()}


def _filename(user: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in user)[:64] or "memories"
