"""Ollama's native chat and generate with memory: recall -> inject -> forward -> relay -> write.

The memory work is :class:`ChatService`'s (the same recall deadline, block,
placement, fail-open policy and background write); this module only knows
where the block goes in an Ollama body and where the reply text comes from
in Ollama's answers:

- ``/api/chat``: ``messages`` are OpenAI-like (``role`` + string
  ``content``), so the block is injected exactly as on ``/v1/chat/completions``.
- ``/api/generate``: into ``system`` when the request has one and placement
  is ``system``; otherwise before the ``prompt`` (adding a ``system`` would
  replace the model's own Modelfile system prompt). ``raw`` prompts are the
  client's exact template and are never touched.

Streams are NDJSON relayed line by line, unchanged; the turn is written once
the final ``done`` line has been relayed. Everything else under ``/api`` is
forwarded as is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from adapters.base import CallContext, close_stream
from adapters.errors import UpstreamError
from adapters.ollama_upstream import NdjsonLine, OllamaUpstream
from memory.render import strip_injected
from proxy.capture import ReplyCapture
from proxy.chat_service import ChatService, MemoryOutcome
from proxy.identity import Identity
from proxy.injection import last_user_text
from proxy.ollama_protocol import streams

log = logging.getLogger("memproxy.ollama")

CHAT = "/api/chat"
GENERATE = "/api/generate"


@dataclass(frozen=True, slots=True)
class PreparedOllama:
    path: str  # CHAT or GENERATE
    body: dict[str, Any]  # what goes upstream
    user_text: str  # the client's own text of this turn (for the write)
    identity: Identity
    context: CallContext
    memory: MemoryOutcome

    @property
    def streaming(self) -> bool:
        return streams(self.body)


class OllamaService:
    def __init__(self, client: OllamaUpstream, chat: ChatService) -> None:
        self.client = client
        self.chat = chat

    async def prepare_chat(self, body: dict[str, Any], identity: Identity, context: CallContext) -> PreparedOllama:
        messages = body.get("messages") or []
        injected, outcome = await self.chat.recall(messages, identity)
        user_text = last_user_text(messages) or ""
        return PreparedOllama(CHAT, {**body, "messages": injected}, user_text, identity, context, outcome)

    async def prepare_generate(
        self, body: dict[str, Any], identity: Identity, context: CallContext
    ) -> PreparedOllama:
        prompt = body.get("prompt") or ""
        user_text = strip_injected(prompt).strip()
        if body.get("raw") or not user_text:
            # raw: the client's own template; empty: a model load/unload call
            block, outcome = None, MemoryOutcome("ok" if identity.mode.reads or identity.mode.writes else "off")
        else:
            block, outcome = await self.chat.recall_block(user_text, identity)
        forwarded = _place_in_generate(body, block, self.chat.settings.placement) if block else body
        return PreparedOllama(GENERATE, forwarded, user_text if not body.get("raw") else "", identity, context, outcome)

    async def complete(self, prepared: PreparedOllama) -> dict[str, Any]:
        answer = await self.client.post(prepared.path, prepared.body, prepared.context)
        capture = ReplyCapture()
        _capture(capture, answer, prepared.path)
        self._remember(prepared, capture)
        return answer

    async def stream(self, prepared: PreparedOllama) -> AsyncIterator[bytes]:
        """Open the upstream stream (raising on upstream errors), then relay it."""
        lines = await self.client.open_stream(prepared.path, prepared.body, prepared.context)
        return self._relay(prepared, lines)

    async def forward_get(self, path: str, context: CallContext) -> dict[str, Any]:
        return await self.client.get(path, context)

    async def forward_post(self, path: str, body: dict[str, Any], context: CallContext) -> dict[str, Any]:
        return await self.client.post(path, body, context)

    async def forward_raw(self, method: str, path: str, content: bytes, content_type: str | None) -> httpx.Response:
        """Model management (pull, push, create, …): relayed byte for byte."""
        return await self.client.open_raw(method, path, content, content_type)

    async def _relay(self, prepared: PreparedOllama, lines: AsyncIterator[NdjsonLine]) -> AsyncIterator[bytes]:
        capture = ReplyCapture()
        try:
            async for line in lines:
                _capture(capture, line.data, prepared.path)
                yield line.raw + b"\n"
        except UpstreamError as exc:
            log.warning("Ollama failed mid-stream: %s", exc.message)
            yield json.dumps({"error": exc.message}).encode("utf-8") + b"\n"
        finally:
            await close_stream(lines)
        self._remember(prepared, capture)

    def _remember(self, prepared: PreparedOllama, capture: ReplyCapture) -> None:
        if not capture.finished:
            return  # a broken stream writes nothing
        model = capture.model or prepared.body.get("model")
        self.chat.remember_turn(prepared.identity, prepared.context, prepared.user_text, capture.text, model)


def _capture(capture: ReplyCapture, data: dict[str, Any], path: str) -> None:
    """Add one Ollama answer (or streamed line) to the reply being collected."""
    capture.model = capture.model or data.get("model")
    if path == CHAT:
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


def _place_in_generate(body: dict[str, Any], block: str, placement: str) -> dict[str, Any]:
    system = body.get("system")
    if placement == "system" and isinstance(system, str) and system.strip():
        return {**body, "system": f"{system}\n\n{block}"}
    prompt = body.get("prompt") or ""
    return {**body, "prompt": f"{block}\n\n{prompt}"}
