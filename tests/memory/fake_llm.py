"""A fake LLM for the fact extractor: OpenAI chat-completions on real HTTP.

Each request is answered by the next scripted reply (the last one repeats):
a string (the assistant message content, e.g. canned JSON), a callable
``body -> str`` (content computed from the request), an ``int`` (an OpenAI
error with that HTTP status) or a ``float`` (sleep that many seconds, then
answer ``{"facts": []}``: a hang for a client with a shorter timeout).
Every request body is recorded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

Reply = Union[str, int, float, Callable[[dict[str, Any]], str]]


@dataclass
class FakeLLM:
    replies: list[Reply] = field(default_factory=lambda: ['{"facts": []}'])
    requests: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self.replies = list(replies)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    async def _chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        with self._lock:
            index = len(self.requests)
            self.requests.append(body)
            reply = self.replies[min(index, len(self.replies) - 1)]
        if isinstance(reply, bool):
            raise TypeError("a bool is not a reply")
        if isinstance(reply, int):
            error = {"message": f"scripted failure {reply}", "type": "server_error", "param": None, "code": None}
            return JSONResponse({"error": error}, status_code=reply)
        if isinstance(reply, float):
            await asyncio.sleep(reply)
            content = '{"facts": []}'
        elif callable(reply):
            content = reply(body)
        else:
            content = reply
        return JSONResponse(
            {
                "id": f"chatcmpl-fake-{index}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
            }
        )
