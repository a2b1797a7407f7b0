"""A fake OpenAI-compatible upstream that speaks the real wire protocol.

:class:`FakeOpenAI` serves ``POST /v1/chat/completions`` (JSON and SSE
streaming), ``POST /v1/responses`` (the Responses API, JSON and SSE; 404
while ``responses_api`` is False, like a server without it),
``POST /v1/embeddings`` and ``GET /v1/models`` over real HTTP. It records
every request and every payload it sends back (:class:`RecordedRequest`), so
tests check exactly what reached the "model" and how far its reply had got.

By default the reply depends on the request:

- any model: ``"Echo: <last user text>"``, streamed word by word; when the
  request offers ``tools`` (and ``tool_choice`` is not ``"none"``) the reply
  is a call to the first tool with :data:`TOOL_ARGUMENTS` instead;
- model ``error-<status>`` (e.g. ``error-429``): an OpenAI error with that
  status, message ``"Fake upstream error <status>."``, code ``fake_<status>``;
- model ``slow-<ms>``: streams with ``<ms>`` milliseconds between pieces;
- model ``sleep-<ms>``: answers only after ``<ms>`` milliseconds;
- model ``hang``: does not answer for 60 s (or until the caller hangs up);
- model ``long-<words>`` (e.g. ``long-300``): a realistic, deterministic
  assistant reply of about that many words (:func:`testing.chatter.long_reply`);
- model ``broken-stream``: sends one chunk, then an error event mid-stream;
- model ``truncated-stream``: streams the reply's pieces, then simply stops
  (no ``finish_reason``, no ``[DONE]``; a Responses stream stops before
  ``response.completed``);
- a 429 carries ``Retry-After: 7`` (:data:`RETRY_AFTER`).

Tests steer it further:

- :meth:`FakeOpenAI.script` queues chat replies (a text, a function of the
  request body, :class:`Error` or :class:`Sleep`), one per chat request, the
  last repeating;
- :meth:`FakeOpenAI.pace_streams` returns a :class:`~testing.common.Pacer`
  that lets streamed replies out one piece per step, for event-order checks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from testing.chatter import long_reply
from testing.common import (
    Pacer,
    RecordedRequest,
    RequestLog,
    fake_vector,
    last_user_text,
    pieces,
    sleep_unless_disconnected,
)

MODELS = ("fake-model", "gpt-4o-mini")
TOOL_CALL_ID = "call_fake_1"
TOOL_ARGUMENTS = json.dumps({"city": "Paris", "unit": "c"})
HANG_S = 60.0
RETRY_AFTER = "7"
TRUNCATED = "truncated-stream"
ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 429: "rate_limit_exceeded"}
RESPONSES_USAGE = {
    "input_tokens": 12,
    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    "output_tokens": 5,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 17,
}

__all__ = [
    "MODELS",
    "TOOL_ARGUMENTS",
    "TOOL_CALL_ID",
    "Error",
    "FakeOpenAI",
    "RecordedRequest",
    "Sleep",
    "fake_vector",
]


@dataclass(frozen=True)
class Error:
    """A scripted reply: an OpenAI error with this HTTP status."""

    status: int


@dataclass(frozen=True)
class Sleep:
    """A scripted reply: wait ``seconds`` (less if the caller hangs up), then
    answer ``then`` (a scripted text or function; None: the default reply)."""

    seconds: float
    then: str | Callable[[dict[str, Any]], str] | None = None


Scripted = str | Callable[[dict[str, Any]], str] | Error | Sleep
Pause = Callable[[int], Awaitable[None]]


class FakeOpenAI(RequestLog):
    """The fake's state: what it saw, how it answers (see the module docs)."""

    def __init__(
        self, *, chunk_delay_s: float = 0.0, responses_api: bool = True, models: Sequence[str] = MODELS
    ) -> None:
        super().__init__()
        self.chunk_delay_s = chunk_delay_s
        self.responses_api = responses_api  # False: /v1/responses is 404, like llama.cpp's server
        self.models = tuple(models)
        self._script: list[Scripted] = []
        self._scripted_calls = 0
        self._pacer: Pacer | None = None

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
            ]
        )

    def chat_requests(self) -> list[RecordedRequest]:
        return self.requests_to("/chat/completions")

    def script(self, *replies: Scripted) -> None:
        """Answer the next chat requests with ``replies`` in order (the last
        repeats); no replies: back to the default behaviour."""
        for reply in replies:
            if isinstance(reply, (bool, int, float)):
                raise TypeError(f"not a scripted reply: {reply!r} (use Error(status) or Sleep(seconds))")
        with self._lock:
            self._script = list(replies)
            self._scripted_calls = 0

    def pace_streams(self, timeout_s: float | None = None) -> Pacer:
        """From now on, streamed replies send one content piece per ``step()``."""
        pacer = Pacer() if timeout_s is None else Pacer(timeout_s)
        with self._lock:
            self._pacer = pacer
        return pacer

    def clear(self) -> None:
        """Forget the requests, the script and the pacer (opened, so nothing stays held)."""
        with self._lock:
            self.requests.clear()
            self._script = []
            self._scripted_calls = 0
            pacer, self._pacer = self._pacer, None
        if pacer is not None:
            pacer.open()

    # ------------------------------------------------------------ routes

    async def _models(self, request: Request) -> Response:
        data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in self.models]
        return JSONResponse({"object": "list", "data": data})

    async def _chat(self, request: Request) -> Response:
        recorded = await self.record(request)
        body = recorded.body
        model = str(body.get("model", ""))
        scripted = self._next_scripted()
        text: str | None = None
        if scripted is None:
            if (status := _requested_error(model)) is not None:
                return _json(recorded, error_body(status), status)
            if (wait := _requested_wait(model)) is not None:
                await sleep_unless_disconnected(request, wait)
        else:
            if isinstance(scripted, Sleep):
                await sleep_unless_disconnected(request, scripted.seconds)
                scripted = scripted.then
            if isinstance(scripted, Error):
                return _json(recorded, error_body(scripted.status), scripted.status)
            if scripted is not None:
                text = scripted(body) if callable(scripted) else scripted
        reply = Reply.for_request(body, text)
        if body.get("stream"):
            events = _chat_stream(reply, body, self._pause(model), broken=model == "broken-stream", truncated=model == TRUNCATED)
            return _sse(recorded, events)
        return _json(recorded, reply.completion(body))

    async def _responses(self, request: Request) -> Response:
        if not self.responses_api:
            return Response("Not Found", status_code=404, media_type="text/plain")
        recorded = await self.record(request)
        body = recorded.body
        model = str(body.get("model", ""))
        if (status := _requested_error(model)) is not None:
            return _json(recorded, error_body(status), status)
        if body.get("stream"):
            return _sse(recorded, _responses_stream(body, self._pause(model), truncated=model == TRUNCATED))
        return _json(recorded, complete_response(body))

    async def _embeddings(self, request: Request) -> Response:
        recorded = await self.record(request)
        if (status := _requested_error(str(recorded.body.get("model", "")))) is not None:
            return _json(recorded, error_body(status), status)
        return _json(recorded, embeddings(recorded.body))

    # ------------------------------------------------------------ steering

    def _next_scripted(self) -> Scripted | None:
        with self._lock:
            if not self._script:
                return None
            reply = self._script[min(self._scripted_calls, len(self._script) - 1)]
            self._scripted_calls += 1
            return reply

    def _pause(self, model: str) -> Pause:
        """What a stream awaits before its piece ``index``: the chunk delay,
        and from the second piece on, the pacer installed when it started."""
        delay = int(model.split("-", 1)[1]) / 1000 if model.startswith("slow-") else self.chunk_delay_s
        pacer = self._pacer

        async def pause(index: int) -> None:
            if pacer is not None and index > 0:
                await pacer.wait()
            await asyncio.sleep(delay)

        return pause


def error_body(status: int) -> dict[str, Any]:
    """The OpenAI error the fake answers ``error-<status>`` with."""
    return {
        "error": {
            "message": f"Fake upstream error {status}.",
            "type": ERROR_TYPES.get(status, "server_error"),
            "param": None,
            "code": f"fake_{status}",
        }
    }


def _requested_error(model: str) -> int | None:
    return int(model.split("-", 1)[1]) if model.startswith("error-") else None


def _requested_wait(model: str) -> float | None:
    if model == "hang":
        return HANG_S
    if model.startswith("sleep-"):
        return int(model.split("-", 1)[1]) / 1000
    return None


def _json(recorded: RecordedRequest, payload: dict[str, Any], status: int = 200) -> JSONResponse:
    recorded.sent.append(payload)
    headers = {"Retry-After": RETRY_AFTER} if status == 429 else None
    return JSONResponse(payload, status_code=status, headers=headers)


def _sse(recorded: RecordedRequest, events: AsyncIterator[tuple[str | None, Any]]) -> StreamingResponse:
    """Serve ``(event name or None, payload)`` pairs as SSE, recording each as it goes out."""

    async def body() -> AsyncIterator[bytes]:
        async for name, payload in events:
            recorded.sent.append(payload)
            data = payload if isinstance(payload, str) else json.dumps(payload)
            head = f"event: {name}\n" if name else ""
            yield f"{head}data: {data}\n\n".encode()

    return StreamingResponse(body(), media_type="text/event-stream")


# ------------------------------------------------------------ chat completions


@dataclass(frozen=True)
class Reply:
    text: str | None
    tool_call: dict[str, Any] | None
    created: int
    id: str

    @classmethod
    def for_request(cls, body: dict[str, Any], text: str | None = None) -> Reply:
        """``text`` when scripted; else a call to the first offered tool, or the echo."""
        created = int(time.time())
        rid = f"chatcmpl-fake{time.time_ns():x}"
        if text is not None:
            return cls(text, None, created, rid)
        tools = body.get("tools") or []
        if tools and body.get("tool_choice") != "none":
            name = tools[0].get("function", {}).get("name", "tool")
            call = {"id": TOOL_CALL_ID, "type": "function", "function": {"name": name, "arguments": TOOL_ARGUMENTS}}
            return cls(None, call, created, rid)
        model = str(body.get("model", ""))
        if model.startswith("long-") and model[5:].isdigit():
            return cls(long_reply(last_user_text(body.get("messages")), int(model[5:])), None, created, rid)
        return cls(f"Echo: {last_user_text(body.get('messages'))}", None, created, rid)

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.text, "refusal": None}
        if self.tool_call:
            message["tool_calls"] = [self.tool_call]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": body.get("model", "fake-model"),
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if self.tool_call else "stop",
                }
            ],
            "usage": self.usage(body),
        }

    def usage(self, body: dict[str, Any]) -> dict[str, int]:
        prompt_tokens = _rough_tokens(json.dumps(body.get("messages", [])))
        completion_tokens = _rough_tokens(self.text or json.dumps(self.tool_call))
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    def chunk(self, body: dict[str, Any], delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": body.get("model", "fake-model"),
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }


async def _chat_stream(
    reply: Reply, body: dict[str, Any], pause: Pause, broken: bool, truncated: bool = False
) -> AsyncIterator[tuple[str | None, Any]]:
    yield None, reply.chunk(body, {"role": "assistant", "content": ""}, None)
    if broken:
        await pause(0)
        yield None, {"error": {"message": "The fake upstream broke.", "type": "server_error", "param": None, "code": None}}
        return
    if reply.tool_call:
        call = reply.tool_call
        head = {"index": 0, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": ""}}
        yield None, reply.chunk(body, {"tool_calls": [head]}, None)
        arguments = call["function"]["arguments"]
        for index, piece in enumerate((arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :])):
            await pause(index)
            yield None, reply.chunk(body, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None)
        finish = "tool_calls"
    else:
        for index, piece in enumerate(pieces(reply.text or "")):
            await pause(index)
            yield None, reply.chunk(body, {"content": piece}, None)
        if truncated:
            return
        finish = "stop"
    yield None, reply.chunk(body, {}, finish)
    if (body.get("stream_options") or {}).get("include_usage"):
        yield None, {**reply.chunk(body, {}, None), "choices": [], "usage": reply.usage(body)}
    yield None, "[DONE]"


def _rough_tokens(text: str) -> int:
    return max(1, len(text) // 4)


# ------------------------------------------------------------ Responses API
# Written independently of memproxy's own bridge so that tests compare two
# implementations. The request's previous_response_id, store and
# instructions are echoed back.


def response_reply(body: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """(text, function call) the fake answers a Responses request with."""
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    if tools and body.get("tool_choice") != "none":
        return None, {"name": tools[0].get("name", "tool"), "arguments": TOOL_ARGUMENTS}
    return f"Echo: {last_user_text(body.get('input'))}", None


def response_object(body: dict[str, Any], status: str, output: list[dict[str, Any]], usage: bool) -> dict[str, Any]:
    return {
        "id": f"resp_fake{time.time_ns():x}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model", "fake-model"),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "metadata": body.get("metadata") or {},
        **({"user": body["user"]} if body.get("user") else {}),
        **({"usage": RESPONSES_USAGE} if usage else {}),
    }


def _items(text: str | None, call: dict[str, Any] | None) -> list[dict[str, Any]]:
    if call is not None:
        return [
            {
                "type": "function_call",
                "id": "fc_fake1",
                "call_id": TOOL_CALL_ID,
                "name": call["name"],
                "arguments": call["arguments"],
                "status": "completed",
            }
        ]
    part = {"type": "output_text", "text": text or "", "annotations": [], "logprobs": []}
    return [{"type": "message", "id": "msg_fake1", "status": "completed", "role": "assistant", "content": [part]}]


def complete_response(body: dict[str, Any]) -> dict[str, Any]:
    text, call = response_reply(body)
    return response_object(body, "completed", _items(text, call), usage=True)


async def _responses_stream(
    body: dict[str, Any], pause: Pause, truncated: bool = False
) -> AsyncIterator[tuple[str | None, Any]]:
    text, call = response_reply(body)
    sequence = iter(range(10_000))

    def event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": next(sequence), **fields}

    yield event("response.created", response=response_object(body, "in_progress", [], usage=False))
    yield event("response.in_progress", response=response_object(body, "in_progress", [], usage=False))
    (item,) = _items(text, call)
    if call is not None:
        yield event("response.output_item.added", output_index=0, item={**item, "arguments": "", "status": "in_progress"})
        arguments = call["arguments"]
        for index, piece in enumerate((arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :])):
            await pause(index)
            yield event("response.function_call_arguments.delta", item_id=item["id"], output_index=0, delta=piece)
        yield event(
            "response.function_call_arguments.done", item_id=item["id"], output_index=0, name=call["name"], arguments=arguments
        )
    else:
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield event("response.output_item.added", output_index=0, item={**item, "status": "in_progress", "content": []})
        yield event("response.content_part.added", item_id=item["id"], output_index=0, content_index=0, part=empty)
        for index, piece in enumerate(pieces(text or "")):
            await pause(index)
            yield event(
                "response.output_text.delta", item_id=item["id"], output_index=0, content_index=0, delta=piece, logprobs=[]
            )
        if truncated:
            return
        yield event("response.output_text.done", item_id=item["id"], output_index=0, content_index=0, text=text, logprobs=[])
        yield event("response.content_part.done", item_id=item["id"], output_index=0, content_index=0, part=item["content"][0])
    yield event("response.output_item.done", output_index=0, item=item)
    yield event("response.completed", response=response_object(body, "completed", [item], usage=True))


# ------------------------------------------------------------ embeddings


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    data = []
    for index, text in enumerate(texts):
        vector = fake_vector(str(text))
        if body.get("encoding_format") == "base64":
            encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        else:
            encoded = vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(_rough_tokens(str(t)) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": body.get("model", "fake-embedding"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
