"""``/mcp`` on the server: MCP over streamable HTTP, in front of the same app.

Stateless JSON-response mode: each MCP request stands alone, carrying its own
``Authorization`` (and ``X-Memory-User``), which the tools forward to the
management API in process (:class:`httpx.ASGITransport`), so the auth
middleware judges every tool call as it judges the HTTP API. ``/mcp`` itself
needs a key with the ``memories:read`` scope; write tools need
``memories:write`` as their API routes do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.mcp.tools import build_server

FORWARDED = ("authorization", "x-memory-user")


class MountedMCP:
    """The MCP server of one app; :meth:`run` in the app's lifespan."""

    def __init__(self, app: ASGIApp, host: str) -> None:
        self._app = app

        @asynccontextmanager
        async def connect(ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
            request = ctx.request_context.request
            headers = {}
            if isinstance(request, Request):
                headers = {name: request.headers[name] for name in FORWARDED if name in request.headers}
            transport = httpx.ASGITransport(app=self._app)
            async with httpx.AsyncClient(transport=transport, base_url="http://memproxy", headers=headers) as client:
                yield client

        self.server: MCPServer = build_server(connect)
        # host: DNS-rebinding protection (Host/Origin checks) when serving on loopback
        self.server.streamable_http_app(stateless_http=True, json_response=True, host=host)
        self.asgi = StreamableHTTPASGIApp(self.server.session_manager)

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        async with self.server.session_manager.run():
            yield


class MCPEndpoint:
    """The ``/mcp`` route (an ASGI app): hands the request to this app's MCP server."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mounted: MountedMCP = scope["app"].state.mcp
        await mounted.asgi(scope, receive, send)
