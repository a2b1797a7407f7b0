"""What the fakes share: request recording, reply text, pacing, vectors."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

EMBEDDING_DIMENSIONS = 8
PACER_TIMEOUT_S = 30.0
_OPEN_STEPS = 1_000_000


@dataclass
class RecordedRequest:
    """One request a fake received, and every payload it sent back.

    ``sent`` grows while a reply streams (one entry per SSE event or NDJSON
    line; ``"[DONE]"`` for the SSE terminator), so a test can tell how far the
    fake had got when something else happened: an event-order check, not a
    clock.
    """

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    sent: list[Any] = field(default_factory=list)


class RequestLog:
    """Thread-safe record of the requests a fake received (the fake runs in
    the server's thread, the test reads from its own)."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()

    async def record(self, request: Request) -> RecordedRequest:
        body = await request.json() if request.method in ("POST", "PUT", "PATCH", "DELETE") else {}
        recorded = RecordedRequest(request.url.path, dict(request.headers), body)
        with self._lock:
            self.requests.append(recorded)
        return recorded

    def requests_to(self, suffix: str) -> list[RecordedRequest]:
        """The requests whose path ends with ``suffix`` (a full path matches too)."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith(suffix)]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()


class Pacer:
    """Lets a streamed reply out one piece per :meth:`step`.

    A fake holding a pacer sends its first content piece at once and waits
    for a step before each further one. A test that steps only after it has
    received a piece proves the piece was relayed while the fake still held
    the rest. A wait that is never stepped gives up after ``timeout_s``: the
    pacer then opens for good and :attr:`timed_out` is set, so a test that
    expected its steps fails on its own assertions instead of hanging.
    """

    def __init__(self, timeout_s: float = PACER_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self.timed_out = False
        self._steps = threading.Semaphore(0)
        self._open = threading.Event()

    def step(self) -> None:
        self._steps.release()

    def open(self) -> None:
        """Release every held and future piece."""
        self._open.set()
        self._steps.release(_OPEN_STEPS)

    async def wait(self) -> None:
        if self._open.is_set():
            return
        if not await asyncio.to_thread(self._steps.acquire, True, self.timeout_s):
            self.timed_out = True
            self.open()


async def sleep_unless_disconnected(request: Request, seconds: float) -> None:
    """Sleep, but stop as soon as the client hangs up (a fake told to hang
    must not outlive the caller that gave up on it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        await asyncio.sleep(min(0.1, left))
        if await request.is_disconnected():
            return


def last_user_text(value: Any) -> str:
    """The last user turn's text: chat ``messages``, Responses ``input``,
    Ollama ``messages`` or Anthropic ``messages`` (string or text parts)."""
    if isinstance(value, str):
        return value
    for item in reversed(value or []):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and "text" in p)
            return str(content or "")
    return ""


def pieces(text: str) -> list[str]:
    """``text`` split into streamed pieces: words, each after the first with its space."""
    words = text.split(" ")
    return [w if i == 0 else f" {w}" for i, w in enumerate(words)]


def fake_vector(text: str) -> list[float]:
    """A deterministic ``EMBEDDING_DIMENSIONS``-float vector for ``text``."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [round(b / 255.0, 4) for b in digest[:EMBEDDING_DIMENSIONS]]
