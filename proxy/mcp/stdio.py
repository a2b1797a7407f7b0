"""``memproxy mcp``: the MCP server over stdio, for desktop clients (Claude Desktop, Cursor, ...).

It is a client of a running memproxy (``--url``, default
``http://127.0.0.1:8000``), authenticating with ``--api-key`` /
``MEMPROXY_API_KEY`` when keys are on, and naming the owner with ``--user`` /
``MEMPROXY_USER`` (sent as ``X-Memory-User``; a user key needs none). Going
through the server keeps one process owning the store and applies the same
key rules as every other caller.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

import httpx
from mcp.server.mcpserver import Context

from proxy.mcp.tools import build_server

TIMEOUT_S = 60.0


def run_stdio(url: str, api_key: str | None, user: str | None) -> None:
    headers = {"User-Agent": "memproxy-mcp"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if user:
        headers["X-Memory-User"] = quote(user, safe="")

    @asynccontextmanager
    async def connect(ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=TIMEOUT_S) as client:
            yield client

    build_server(connect).run("stdio")
