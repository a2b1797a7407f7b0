"""Errors raised by upstream adapters.

The proxy maps each to an OpenAI-format error response:

    UpstreamError            an upstream answered with an error (status kept)
    ├── UpstreamTimeout      no answer in time                      -> 504
    ├── UpstreamUnavailable  could not connect / protocol broke     -> 502
    └── UpstreamUnsupported  the upstream has no such endpoint      -> 501
                             (e.g. no Responses API: the proxy bridges instead)
"""

from __future__ import annotations

from typing import Any


class UpstreamError(Exception):
    """An upstream model call failed; carries an OpenAI-style error."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        type: str = "upstream_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        # response headers the proxy relays to its client (``Retry-After`` of a 429)
        self.headers: dict[str, str] = dict(headers or {})

    def to_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


# Upstream response headers worth relaying with the proxy's error answer.
RELAYED_HEADERS = ("retry-after", "retry-after-ms")


def relayed_headers(headers: Any) -> dict[str, str]:
    """The :data:`RELAYED_HEADERS` present in ``headers`` (any case-insensitive mapping)."""
    if headers is None:
        return {}
    out: dict[str, str] = {}
    for name in RELAYED_HEADERS:
        value = headers.get(name)
        if value:
            out[name.title()] = str(value)
    return out


class UpstreamTimeout(UpstreamError):
    def __init__(self, message: str = "The upstream model did not answer in time.") -> None:
        super().__init__(message, status=504, type="timeout", code="upstream_timeout")


class UpstreamUnavailable(UpstreamError):
    def __init__(self, message: str = "Could not reach the upstream model.") -> None:
        super().__init__(message, status=502, type="upstream_error", code="upstream_unavailable")


class UpstreamUnsupported(UpstreamError):
    def __init__(self, message: str = "The upstream does not serve this endpoint.") -> None:
        super().__init__(message, status=501, type="invalid_request_error", code="unsupported_endpoint")
