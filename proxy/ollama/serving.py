"""Ollama's native chat and generate over the memory pipeline.

This front end only knows Ollama's shapes:

- ``/api/chat``: ``messages`` are OpenAI-like (``role`` + string
  ``content``), so the blocks are placed exactly as on ``/v1/chat/completions``.
- ``/api/generate``: the core block goes into ``system`` when the request
  has one, else before the ``prompt`` (adding a ``system`` would replace the
  model's own Modelfile system prompt); the recalled block follows it there
  (``system`` placement) or goes right before the user's prompt. ``raw``
  prompts are the client's exact template and are never touched.

Streams are NDJSON relayed line by line, unchanged; the turn is written once
the final ``done`` line has been relayed. Everything else under ``/api`` is
forwarded as is.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx

from adapters.base import CallContext
from adapters.errors import UpstreamError
from adapters.ollama_upstream import NdjsonLine, OllamaUpstream
from memory.render import strip_injected
from proxy.identity import Identity
from proxy.pipeline import Exchange, MemoryBlocks, MemoryPipeline, ReplyCapture
from proxy.pipeline.messages import inject_blocks, last_user_text, recall_query

CHAT = "/api/chat"
GENERATE = "/api/generate"


class OllamaServing:
    def __init__(self, client: OllamaUpstream, pipeline: MemoryPipeline) -> None:
        self.client = client
        self.pipeline = pipeline

    async def prepare_chat(self, body: dict[str, Any], identity: Identity, context: CallContext) -> Exchange:
        messages = body.get("messages") or []
        return await self.pipeline.prepare(
            body,
            query=recall_query(messages),
            user_text=last_user_text(messages) or "",
            identity=identity,
            context=context,
            place=self._place_chat,
        )

    async def prepare_generate(self, body: dict[str, Any], identity: Identity, context: CallContext) -> Exchange:
        user_text = strip_injected(body.get("prompt") or "").strip()
        # raw: the client's own template; empty: a model load/unload call
        query = None if body.get("raw") or not user_text else user_text
        return await self.pipeline.prepare(
            body,
            query=query,
            user_text="" if body.get("raw") else user_text,
            identity=identity,
            context=context,
            place=self._place_generate,
        )

    def _place_chat(self, body: dict[str, Any], blocks: MemoryBlocks) -> dict[str, Any]:
        return {**body, "messages": inject_blocks(body.get("messages") or [], blocks, self.pipeline.placement)}

    def _place_generate(self, body: dict[str, Any], blocks: MemoryBlocks) -> dict[str, Any]:
        system = body.get("system")
        has_system = isinstance(system, str) and bool(system.strip())
        system_text = system if isinstance(system, str) else ""
        to_system = [b for b in (blocks.core,) if b and has_system]
        to_prompt = [b for b in (blocks.core,) if b and not has_system]
        if blocks.recalled:
            (to_system if has_system and self.pipeline.placement == "system" else to_prompt).append(blocks.recalled)
        out = dict(body)
        if to_system:
            out["system"] = "\n\n".join([system_text, *to_system])
        if to_prompt:
            out["prompt"] = "\n\n".join([*to_prompt, body.get("prompt") or ""])
        return out

    async def complete(self, path: str, exchange: Exchange) -> dict[str, Any]:
        started, ok = time.perf_counter(), False
        try:
            answer = await self.client.post(path, exchange.body, exchange.context)
            ok = True
        finally:
            self.pipeline.upstream_done("ollama", False, started, ok)
        translator = LineTranslator(path)
        translator.add(answer)
        await self.pipeline.remember(exchange, translator.capture)
        return answer

    async def stream(self, path: str, exchange: Exchange) -> AsyncIterator[bytes]:
        """Open the upstream stream (raising on upstream errors), then relay it."""
        lines = await self.client.open_stream(path, exchange.body, exchange.context)
        return self.pipeline.relay(exchange, lines, LineTranslator(path))

    async def forward_get(self, path: str, context: CallContext) -> dict[str, Any]:
        return await self.client.get(path, context)

    async def forward_post(self, path: str, body: dict[str, Any], context: CallContext) -> dict[str, Any]:
        return await self.client.post(path, body, context)

    async def forward_raw(self, method: str, path: str, content: bytes, content_type: str | None) -> httpx.Response:
        """Model management (pull, push, create, …): relayed byte for byte."""
        return await self.client.open_raw(method, path, content, content_type)

    async def aclose(self) -> None:
        await self.client.aclose()


class LineTranslator:
    """Ollama's NDJSON lines relayed unchanged; the reply read from each."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.capture = ReplyCapture()

    def start(self) -> Iterable[bytes]:
        return ()

    def feed(self, item: NdjsonLine) -> Iterable[bytes]:
        self.add(item.data)
        return (item.raw + b"\n",)

    def fail(self, error: UpstreamError) -> Iterable[bytes]:
        return (json.dumps({"error": error.message}).encode("utf-8") + b"\n",)

    def finish(self) -> Iterable[bytes]:
        return ()

    def add(self, data: dict[str, Any]) -> None:
        """Add one Ollama answer (or streamed line) to the reply being collected."""
        capture = self.capture
        capture.model = capture.model or data.get("model")
        if self.path == CHAT:
            message = data.get("message") or {}
            if isinstance(message.get("content"), str) and message["content"]:
                capture.add_text(message["content"])
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                capture.add_tool_call(str(function.get("name") or "tool"), function.get("arguments") or {})
        elif isinstance(data.get("response"), str) and data["response"]:
            capture.add_text(data["response"])
        if data.get("done"):
            capture.finished = True
