"""``POST /v1/responses`` over the memory pipeline, native or bridged.

Which way a request goes is ``upstream.responses``:

- ``native``: the upstream's own Responses API (``previous_response_id``,
  ``store`` and every other field passed through);
- ``bridge``: translated onto chat completions (:mod:`.bridge`);
- ``auto`` (default): native when the upstream adapter has the capability,
  until the server answers that it has no Responses endpoint — from then on
  this service bridges.

Memory is the pipeline's (same deadline, blocks, activation, fail-open and
background write); :mod:`.shapes` knows where the blocks go. The client
always sees its own ``instructions`` echoed, never the memory blocks. The turn
is written from the final output once the response completed (a failed or
incomplete one writes nothing).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from adapters.base import CallContext, ResponsesUpstream, Upstream
from adapters.errors import UpstreamError, UpstreamUnsupported
from adapters.normalize import normalize_chunk, normalize_completion
from proxy.identity import Identity
from proxy.openai.responses.bridge import BridgeStream, to_chat_request, to_response
from proxy.openai.responses.shapes import capture_output, place_blocks, read_turn, restore_instructions
from proxy.pipeline import Exchange, MemoryBlocks, MemoryPipeline, ReplyCapture

log = logging.getLogger("memproxy.responses")

TERMINAL = ("response.completed", "response.incomplete", "response.failed")


class ResponsesServing:
    def __init__(
        self, upstream: Upstream, pipeline: MemoryPipeline, mode: str = "auto", model_override: str | None = None
    ) -> None:
        self.upstream = upstream
        self.pipeline = pipeline
        self.mode = mode
        self.model_override = model_override
        # auto: None until the upstream has shown whether it speaks the Responses API
        self._native: bool | None = {"native": True, "bridge": False}.get(mode)
        if not isinstance(upstream, ResponsesUpstream) and mode != "native":
            self._native = False

    async def prepare(self, body: dict[str, Any], identity: Identity, context: CallContext) -> Exchange:
        turn = read_turn(body)
        exchange = await self.pipeline.prepare(
            body, query=turn.query, user_text=turn.user_text, identity=identity, context=context, place=self._place
        )
        if self.model_override:
            exchange.body["model"] = self.model_override
        return exchange

    def _place(self, body: dict[str, Any], blocks: MemoryBlocks) -> dict[str, Any]:
        return place_blocks(body, blocks, self.pipeline.placement)

    async def create(self, exchange: Exchange, client_body: dict[str, Any]) -> dict[str, Any]:
        response = None
        started, ok = time.perf_counter(), False
        try:
            if self._native is not False:
                try:
                    response = await self._native_upstream().responses(exchange.body, exchange.context)
                    self._learn(True)
                except UpstreamUnsupported as exc:
                    self._fallback(exc)
            if response is None:
                completion = await self.upstream.chat(to_chat_request(exchange.body), exchange.context)
                response = to_response(normalize_completion(completion), client_body)
            ok = True
        finally:
            self.pipeline.upstream_done("responses", False, started, ok)
        response = restore_instructions(response, client_body)
        await self.pipeline.remember(exchange, capture_output(response))
        return response

    async def stream(self, exchange: Exchange, client_body: dict[str, Any]) -> AsyncIterator[bytes]:
        """Open the upstream stream (raising on upstream errors), then relay it."""
        if self._native is not False:
            try:
                events = await self._native_upstream().open_responses_stream(exchange.body, exchange.context)
                self._learn(True)
                return self.pipeline.relay(exchange, events, NativeTranslator(client_body))
            except UpstreamUnsupported as exc:
                self._fallback(exc)
        chat_body = to_chat_request({**exchange.body, "stream": True})
        chunks = await self.upstream.open_stream(chat_body, exchange.context)
        bridge = BridgeStream(client_body, exchange.body.get("model", ""))
        return self.pipeline.relay(exchange, chunks, BridgedTranslator(bridge))

    def _native_upstream(self) -> ResponsesUpstream:
        if not isinstance(self.upstream, ResponsesUpstream):
            raise UpstreamUnsupported(f"The '{self.upstream.name}' upstream has no Responses API.")
        return self.upstream

    def _learn(self, native: bool) -> None:
        if self.mode == "auto" and self._native is None:
            log.info("upstream %s: Responses API %s", self.upstream.name, "native" if native else "bridged")
            self._native = native

    def _fallback(self, exc: UpstreamUnsupported) -> None:
        """The upstream has no Responses API: bridge from now on (``native`` mode: fail)."""
        if self.mode == "native":
            raise exc
        self._learn(False)


class NativeTranslator:
    """The upstream's own Responses events, relayed with the client's instructions restored."""

    def __init__(self, client_body: dict[str, Any]) -> None:
        self.client_body = client_body
        self.capture = ReplyCapture()

    def start(self) -> Iterable[bytes]:
        return ()

    def feed(self, item: dict[str, Any]) -> Iterable[bytes]:
        event = item
        if isinstance(event.get("response"), dict):
            event = {**event, "response": restore_instructions(event["response"], self.client_body)}
            if event.get("type") in TERMINAL:
                self.capture = capture_output(event["response"])
        return (sse_event(event),)

    def fail(self, error: UpstreamError) -> Iterable[bytes]:
        body = {"type": "error", "code": error.code, "message": error.message, "param": error.param, "sequence_number": 0}
        return (sse_event(body),)

    def finish(self) -> Iterable[bytes]:
        return ()


class BridgedTranslator:
    """``chat.completion.chunk``s turned into Responses events by the bridge."""

    def __init__(self, bridge: BridgeStream) -> None:
        self.bridge = bridge
        self.capture = ReplyCapture()

    def start(self) -> Iterable[bytes]:
        return [sse_event(e) for e in self.bridge.start()]

    def feed(self, item: dict[str, Any]) -> Iterable[bytes]:
        return [sse_event(e) for e in self.bridge.feed(normalize_chunk(item))]

    def fail(self, error: UpstreamError) -> Iterable[bytes]:
        return [sse_event(e) for e in self.bridge.fail(error.message)]

    def finish(self) -> Iterable[bytes]:
        events = [sse_event(e) for e in self.bridge.finish()]
        self.capture = capture_output(self.bridge.response)
        return events


def sse_event(event: dict[str, Any]) -> bytes:
    """A Responses stream event: named by its ``type``."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event.get('type', 'message')}\ndata: {data}\n\n".encode()
