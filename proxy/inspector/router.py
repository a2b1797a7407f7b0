"""``/ui``: the inspector's static files (HTML, JS, CSS; nothing fetched from a CDN).

The files hold no data: every memory the page shows comes from the JSON API,
called by the page with the key typed into it (kept in the tab's
``sessionStorage``, sent as ``Authorization``, never in a URL). So ``/ui``
itself is public and the key decides what the page can see, as everywhere.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from proxy.errors import NotFound

STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# The page may load only its own files and talk only to its own origin.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/ui")
async def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/{name:path}")
async def ui_file(name: str) -> FileResponse:
    name = name or "index.html"
    path = (STATIC / name).resolve()
    if path.parent != STATIC.resolve() or path.suffix not in TYPES or not path.is_file():
        raise NotFound(f"No inspector file '{name}'.", code="not_found")
    return FileResponse(path, media_type=TYPES[path.suffix], headers=HEADERS)
