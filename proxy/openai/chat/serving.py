"""``POST /v1/chat/completions`` over the memory pipeline.

This front end only knows chat-completions shapes: the recall query is the
last user message (:func:`recall_query`), the blocks go into the messages
(:func:`inject_blocks`), and the reply is read from the completion or from
the ``chat.completion.chunk`` stream, relayed as it arrives.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from adapters.base import CallContext, Upstream
from adapters.errors import UpstreamError
from adapters.normalize import normalize_chunk, normalize_completion
from proxy.fastjson import dumps
from proxy.identity import Identity
from proxy.pipeline import Exchange, MemoryBlocks, MemoryPipeline, ReplyCapture
from proxy.pipeline.messages import inject_blocks, last_user_text, recall_query

DONE = b"data: [DONE]\n\n"


class ChatServing:
    def __init__(self, upstream: Upstream, pipeline: MemoryPipeline, model_override: str | None = None) -> None:
        self.upstream = upstream
        self.pipeline = pipeline
        self.model_override = model_override

    async def prepare(self, body: dict[str, Any], identity: Identity, context: CallContext) -> Exchange:
        messages = body["messages"]
        exchange = await self.pipeline.prepare(
            body,
            query=recall_query(messages),
            user_text=last_user_text(messages) or "",
            identity=identity,
            context=context,
            place=self._place,
        )
        if self.model_override:
            exchange.body["model"] = self.model_override
        return exchange

    def _place(self, body: dict[str, Any], blocks: MemoryBlocks) -> dict[str, Any]:
        return {**body, "messages": inject_blocks(body["messages"], blocks, self.pipeline.placement)}

    async def complete(self, exchange: Exchange) -> dict[str, Any]:
        started, ok = time.perf_counter(), False
        try:
            completion = normalize_completion(await self.upstream.chat(exchange.body, exchange.context))
            ok = True
        finally:
            self.pipeline.upstream_done("chat", False, started, ok)
        capture = ReplyCapture()
        capture.add_completion(completion)
        await self.pipeline.remember(exchange, capture)
        return completion

    async def stream(self, exchange: Exchange) -> AsyncIterator[bytes]:
        """Open the upstream stream (raising on upstream errors), then relay it."""
        chunks = await self.upstream.open_stream(exchange.body, exchange.context)
        return self.pipeline.relay(exchange, chunks, ChunkTranslator())


class ChunkTranslator:
    """``chat.completion.chunk``s relayed as ``data:`` events, ending with ``[DONE]``."""

    def __init__(self) -> None:
        self.capture = ReplyCapture()

    def start(self) -> Iterable[bytes]:
        return ()

    def feed(self, item: dict[str, Any]) -> Iterable[bytes]:
        chunk = normalize_chunk(item)
        self.capture.add_chunk(chunk)
        return (sse_data(chunk),)

    def fail(self, error: UpstreamError) -> Iterable[bytes]:
        return (sse_data(error.to_body()), DONE)

    def finish(self) -> Iterable[bytes]:
        self.capture.finished = True  # a stream that ended cleanly is a whole reply
        return (DONE,)


def sse_data(payload: dict[str, Any]) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"
