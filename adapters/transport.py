"""The httpx seam shared by the HTTP upstreams: error mapping and JSON bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from adapters.errors import UpstreamTimeout, UpstreamUnavailable


@contextmanager
def transport_errors(peer: str, *, streaming: bool = False) -> Iterator[None]:
    """Turn httpx timeouts into 504s and connection failures into 502s.

    ``peer`` names the upstream in messages ("the upstream model", "Ollama").
    """
    try:
        yield
    except httpx.TimeoutException as exc:
        verb = "stopped sending" if streaming else "did not answer"
        raise UpstreamTimeout(f"{_capital(peer)} {verb} in time.") from exc
    except httpx.TransportError as exc:
        what = f"The stream from {peer} broke" if streaming else f"Could not reach {peer}"
        raise UpstreamUnavailable(f"{what}: {exc}") from exc


def json_object(content: bytes, peer: str) -> dict[str, Any]:
    """A JSON object body, or a 502 naming ``peer``."""
    try:
        value = json.loads(content)
    except ValueError as exc:
        raise UpstreamUnavailable(f"{_capital(peer)} returned invalid JSON.") from exc
    if not isinstance(value, dict):
        raise UpstreamUnavailable(f"{_capital(peer)} returned a non-object JSON body.")
    return value


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
