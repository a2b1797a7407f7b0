"""Authentication before routing: every request but health checks and docs.

:class:`AuthMiddleware` runs ahead of every route, so a route added later is
protected by default: it needs a valid key and, unless listed in
:func:`required_scope`, the ``chat`` scope. It stores the caller as
``request.state.principal`` (a :class:`~proxy.auth.principal.Principal`);
routes then check ownership of the owners and memories they touch.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.auth.keys import SCOPE_ADMIN, SCOPE_CHAT, SCOPE_READ, SCOPE_WRITE, KeyStore
from proxy.auth.principal import OPEN, Principal
from proxy.errors import ProxyError, Unauthorized, error_response

# Health checks, the API docs, and Ollama's "is it running" probe.
PUBLIC_PATHS = frozenset({"/", "/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/openapi.json"})
READ_ONLY_POSTS = frozenset({"/v1/memories/search", "/v1/memories/explain"})
# Ollama model management relayed to the Ollama server (proxy/ollama/router.py): the operator's, not a user's.
OLLAMA_MANAGEMENT = frozenset({"pull", "push", "create", "delete", "copy", "blobs"})


def required_scope(method: str, path: str) -> str | None:
    """The scope a request needs (None: public). Anything not listed needs ``chat``."""
    if path in PUBLIC_PATHS or path == "/ui" or path.startswith("/ui/"):  # the inspector's static files
        return None
    if path == "/v1/admin" or path.startswith("/v1/admin/") or path == "/metrics":
        return SCOPE_ADMIN
    if path.startswith("/api/") and path.removeprefix("/api/").split("/", 1)[0] in OLLAMA_MANAGEMENT:
        return SCOPE_ADMIN
    if path == "/mcp":  # each tool call is checked again by the API route it calls (proxy/mcp/tools.py)
        return SCOPE_READ
    if path == "/v1/memories" or path.startswith(("/v1/memories/", "/v1/users/")):
        if method in ("GET", "HEAD") or (method == "POST" and path in READ_ONLY_POSTS):
            return SCOPE_READ
        return SCOPE_WRITE
    return SCOPE_CHAT


@dataclass(frozen=True, slots=True)
class Authenticator:
    """``auth.mode`` made concrete: who the bearer of a request is."""

    mode: str  # "none" | "keys"
    store: KeyStore | None = None

    @property
    def keys(self) -> bool:
        return self.mode == "keys"

    def authenticate(self, headers: Headers) -> Principal:
        if not self.keys:
            return OPEN
        assert self.store is not None
        token = bearer(headers.get("authorization", ""))
        if token is None:
            raise Unauthorized(
                "You didn't provide an API key. Send your memproxy key in the Authorization header "
                "(Authorization: Bearer mp-...).",
                code="missing_api_key",
            )
        key = self.store.authenticate(token)
        if key is None:
            hint = token[:3] + "…" + token[-4:] if len(token) > 12 else "…"
            raise Unauthorized(f"Incorrect API key provided: {hint}. It is unknown or revoked.", code="invalid_api_key")
        return Principal(key)


def bearer(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    token = token.strip()
    return token or None if hmac.compare_digest(scheme.lower(), "bearer") else None


class AuthMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needed = required_scope(scope.get("method", "GET"), scope.get("path", ""))
        if needed is not None:
            auth: Authenticator = scope["app"].state.services.auth
            try:
                principal = auth.authenticate(Headers(scope=scope))
                principal.require(needed)
            except ProxyError as exc:
                response = error_response(exc.status, exc.message, exc.type, exc.param, exc.code)
                if exc.status == 401:
                    response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
            scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
