"""OpenAI-format errors for every failure the HTTP layer can return.

Every error body is ``{"error": {"message", "type", "param", "code"}}``.

    ProxyError                     base; carries status/type/param/code
    ├── InvalidRequest       400   malformed JSON, failed validation
    ├── Unauthorized         401   no, unknown or revoked API key; no owner named
    ├── Forbidden            403   the key lacks the scope, or names another owner
    ├── NotFound             404   unknown route or resource
    └── MethodNotAllowed     405

Upstream failures (``adapters.errors.UpstreamError``) keep their own status;
memory engine errors are mapped in :func:`install_handlers`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.errors import UpstreamError
from memory.errors import InvalidMemory, MemoryNotFound, StoreUnavailable

log = logging.getLogger("memproxy.errors")


class ProxyError(Exception):
    status = 500
    type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidRequest(ProxyError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(ProxyError):
    status = 401
    type = "invalid_request_error"


class Forbidden(ProxyError):
    status = 403
    type = "invalid_request_error"


class NotFound(ProxyError):
    status = 404
    type = "invalid_request_error"


class MethodNotAllowed(ProxyError):
    status = 405
    type = "invalid_request_error"


def error_body(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(
    status: int, message: str, type: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    return JSONResponse(error_body(message, type, param, code), status_code=status)


def _loc_to_param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    if not parts:
        return None
    out = parts[0]
    for part in parts[1:]:
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out


def install_handlers(app: FastAPI) -> None:
    """Register handlers so no error leaves the app in a non-OpenAI shape."""

    @app.exception_handler(ProxyError)
    async def _proxy_error(_: Request, exc: ProxyError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.type, exc.param, exc.code)

    @app.exception_handler(UpstreamError)
    async def _upstream_error(_: Request, exc: UpstreamError) -> JSONResponse:
        return JSONResponse(exc.to_body(), status_code=exc.status, headers=exc.headers or None)

    @app.exception_handler(MemoryNotFound)
    async def _memory_not_found(_: Request, exc: MemoryNotFound) -> JSONResponse:
        return error_response(404, str(exc), "invalid_request_error", "id", "memory_not_found")

    @app.exception_handler(InvalidMemory)
    async def _invalid_memory(_: Request, exc: InvalidMemory) -> JSONResponse:
        return error_response(400, str(exc), "invalid_request_error", exc.param, None)

    @app.exception_handler(StoreUnavailable)
    async def _store_unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        log.error("memory store unavailable: %s", exc)
        return error_response(
            503, f"The memory store is unavailable: {exc}", "server_error", None, "store_unavailable"
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = _loc_to_param(tuple(first.get("loc", ())))
        detail = first.get("msg", "Invalid request.")
        message = f"Invalid value for '{param}': {detail}" if param else detail
        return error_response(400, message, "invalid_request_error", param, None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"Invalid URL ({request.method} {request.url.path})"
        elif exc.status_code == 405:
            message = f"Method {request.method} not allowed for {request.url.path}"
        else:
            message = str(exc.detail)
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return error_response(exc.status_code, message, kind)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "The server had an error processing your request.", "server_error")
