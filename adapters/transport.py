"""The HTTP seam shared by the HTTP upstreams (httpx and aiohttp): error mapping and JSON bodies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import aiohttp
import httpx
import orjson

from adapters.errors import UpstreamTimeout, UpstreamUnavailable

Item = TypeVar("Item")


@contextmanager
def transport_errors(peer: str, *, streaming: bool = False) -> Iterator[None]:
    """Turn httpx and aiohttp timeouts into 504s and connection failures into 502s.

    ``peer`` names the upstream in messages ("the upstream model", "Ollama").
    """
    try:
        yield
    except (httpx.TimeoutException, aiohttp.ServerTimeoutError) as exc:
        verb = "stopped sending" if streaming else "did not answer"
        raise UpstreamTimeout(f"{_capital(peer)} {verb} in time.") from exc
    except (httpx.TransportError, aiohttp.ClientError) as exc:
        what = f"The stream from {peer} broke" if streaming else f"Could not reach {peer}"
        raise UpstreamUnavailable(f"{what}: {exc or type(exc).__name__}") from exc


async def error_body(response: httpx.Response, peer: str) -> bytes:
    """The body of a streamed response with an error status, read whole; the response is closed."""
    try:
        with transport_errors(peer):
            return await response.aread()
    finally:
        await response.aclose()


def json_bytes(body: Any) -> bytes:
    """``body`` as JSON bytes, once: orjson, or the standard library for what orjson
    refuses (an integer beyond 64 bits)."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, ensure_ascii=False).encode("utf-8")


def json_object(content: bytes, peer: str) -> dict[str, Any]:
    """A JSON object body, or a 502 naming ``peer``."""
    try:
        value = orjson.loads(content)  # every streamed chunk passes here: the fast parser first
    except orjson.JSONDecodeError:
        try:  # what orjson refuses but the standard library reads (NaN, Infinity, a stray BOM)
            value = json.loads(content)
        except ValueError as exc:
            raise UpstreamUnavailable(f"{_capital(peer)} returned invalid JSON.") from exc
    if not isinstance(value, dict):
        raise UpstreamUnavailable(f"{_capital(peer)} returned a non-object JSON body.")
    return value


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def deadline_after(timeout_s: float) -> float:
    """The event-loop time by which a call started now must be over."""
    return asyncio.get_running_loop().time() + timeout_s


@asynccontextmanager
async def before(deadline: float, peer: str, *, streaming: bool = False) -> AsyncIterator[None]:
    """Run the body by ``deadline`` (loop time) or raise a 504 naming ``peer``.

    httpx's timeouts bound each read; this bounds the whole request, a
    stream that keeps trickling included (``upstream.timeout_s``).
    """
    try:
        async with asyncio.timeout_at(deadline):
            yield
    except TimeoutError as exc:
        verb = "did not finish its stream" if streaming else "did not answer"
        raise UpstreamTimeout(f"{_capital(peer)} {verb} in time (the whole-request timeout ran out).") from exc


async def until(items: AsyncIterator[Item], deadline: float, peer: str) -> AsyncIterator[Item]:
    """``items``, each awaited under the whole-request ``deadline``.

    The deadline wraps each ``__anext__`` only (never a ``yield``), so it can
    only ever cancel the read it guards.
    """
    iterator = aiter(items)
    while True:
        async with before(deadline, peer, streaming=True):
            try:
                item = await anext(iterator)
            except StopAsyncIteration:
                return
        yield item
