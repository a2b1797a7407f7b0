"""A fake Anthropic Messages API (``POST /v1/messages``, non-streaming).

Enough of Anthropic's wire format for litellm's own ``anthropic/`` provider:
it answers ``reply`` (default ``"Echo: <last user text>"``) as one text
block, reports usage with a prompt-cache read, and records every request so
tests can check what reached the wire (``system`` blocks, ``cache_control``).
A request with ``"stream": true`` gets a 400: streaming is not faked.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from testing.common import RequestLog, last_user_text

USAGE = {"input_tokens": 40, "output_tokens": 2, "cache_read_input_tokens": 30}


class FakeAnthropic(RequestLog):
    def __init__(self, *, reply: str | None = None) -> None:
        super().__init__()
        self.reply = reply

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/messages", self._messages, methods=["POST"])])

    async def _messages(self, request: Request) -> Response:
        recorded = await self.record(request)
        body = recorded.body
        if body.get("stream"):
            error = {"type": "invalid_request_error", "message": "The fake Anthropic server does not stream."}
            payload: dict[str, Any] = {"type": "error", "error": error}
            recorded.sent.append(payload)
            return JSONResponse(payload, status_code=400)
        text = self.reply if self.reply is not None else f"Echo: {last_user_text(body.get('messages'))}"
        payload = {
            "id": f"msg_fake{len(self.requests)}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-fake"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": USAGE,
        }
        recorded.sent.append(payload)
        return JSONResponse(payload)
