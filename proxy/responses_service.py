"""``POST /v1/responses`` with memory: recall -> place -> forward or bridge -> relay -> write.

Memory is :class:`ChatService`'s (same deadline, block, fail-open and
background write); :mod:`proxy.responses_memory` knows where the block goes.

Which way a request goes is ``upstream.responses``:

- ``native``: the upstream's own Responses API (``previous_response_id``,
  ``store`` and every other field passed through);
- ``bridge``: translated onto chat completions (:mod:`proxy.responses_bridge`);
- ``auto`` (default): native when the upstream adapter has the capability,
  until the server answers that it has no Responses endpoint — from then on
  this service bridges.

The client always sees its own ``instructions`` echoed, never the memory
block. The turn is written from the final output once the response
completed (a failed or incomplete one writes nothing).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from adapters.base import CallContext, ResponsesUpstream, Upstream, close_stream
from adapters.errors import UpstreamError, UpstreamUnsupported
from adapters.normalize import normalize_chunk, normalize_completion
from proxy.chat_service import ChatService, MemoryOutcome
from proxy.identity import Identity
from proxy.responses_bridge import BridgeStream, to_chat_request, to_response
from proxy.responses_memory import capture_output, place_block, query_of, user_text_of

log = logging.getLogger("memproxy.responses")

TERMINAL = ("response.completed", "response.incomplete", "response.failed")


@dataclass(frozen=True, slots=True)
class PreparedResponse:
    body: dict[str, Any]  # what goes upstream (memory placed, model overridden)
    client_body: dict[str, Any]  # what the client sent
    user_text: str
    identity: Identity
    context: CallContext
    memory: MemoryOutcome


class ResponsesService:
    def __init__(self, upstream: Upstream, chat: ChatService, mode: str = "auto") -> None:
        self.upstream = upstream
        self.chat = chat
        self.mode = mode
        # auto: None until the upstream has shown whether it speaks the Responses API
        self._native: bool | None = {"native": True, "bridge": False}.get(mode)
        if not isinstance(upstream, ResponsesUpstream) and mode != "native":
            self._native = False

    async def prepare(self, body: dict[str, Any], identity: Identity, context: CallContext) -> PreparedResponse:
        block, outcome = await self.chat.recall_block(query_of(body), identity)
        forwarded = place_block(body, block, self.chat.settings.placement) if block else dict(body)
        if self.chat.model_override:
            forwarded["model"] = self.chat.model_override
        return PreparedResponse(forwarded, body, user_text_of(body), identity, context, outcome)

    async def create(self, prepared: PreparedResponse) -> dict[str, Any]:
        response = None
        if self._native is not False:
            try:
                response = await self._native_upstream().responses(prepared.body, prepared.context)
                self._learn(True)
            except UpstreamUnsupported as exc:
                self._fallback(exc)
        if response is None:
            completion = await self.upstream.chat(to_chat_request(prepared.body), prepared.context)
            response = to_response(normalize_completion(completion), prepared.client_body)
        response = _restore_instructions(response, prepared.client_body)
        self._remember(prepared, response)
        return response

    async def stream(self, prepared: PreparedResponse) -> AsyncIterator[bytes]:
        """Open the upstream stream (raising on upstream errors), then relay it."""
        if self._native is not False:
            try:
                events = await self._native_upstream().open_responses_stream(prepared.body, prepared.context)
                self._learn(True)
                return self._relay_native(prepared, events)
            except UpstreamUnsupported as exc:
                self._fallback(exc)
        chat_body = to_chat_request({**prepared.body, "stream": True})
        chunks = await self.upstream.open_stream(chat_body, prepared.context)
        return self._relay_bridged(prepared, chunks)

    async def _relay_native(
        self, prepared: PreparedResponse, events: AsyncIterator[dict[str, Any]]
    ) -> AsyncIterator[bytes]:
        final: dict[str, Any] | None = None
        try:
            async for event in events:
                if isinstance(event.get("response"), dict):
                    event = {**event, "response": _restore_instructions(event["response"], prepared.client_body)}
                    if event.get("type") in TERMINAL:
                        final = event["response"]
                yield sse_event(event)
        except UpstreamError as exc:
            log.warning("upstream failed mid-stream: %s", exc.message)
            yield sse_event({"type": "error", "code": exc.code, "message": exc.message, "param": exc.param, "sequence_number": 0})
        finally:
            await close_stream(events)
        if final is not None:
            self._remember(prepared, final)

    async def _relay_bridged(
        self, prepared: PreparedResponse, chunks: AsyncIterator[dict[str, Any]]
    ) -> AsyncIterator[bytes]:
        bridge = BridgeStream(prepared.client_body, prepared.body.get("model", ""))
        for event in bridge.start():
            yield sse_event(event)
        try:
            async for chunk in chunks:
                for event in bridge.feed(normalize_chunk(chunk)):
                    yield sse_event(event)
        except UpstreamError as exc:
            log.warning("upstream failed mid-stream: %s", exc.message)
            for event in bridge.fail(exc.message):
                yield sse_event(event)
            return
        finally:
            await close_stream(chunks)
        for event in bridge.finish():
            yield sse_event(event)
        self._remember(prepared, bridge.response)

    def _remember(self, prepared: PreparedResponse, response: dict[str, Any]) -> None:
        capture = capture_output(response)
        if not capture.finished:
            return
        model = capture.model or prepared.body.get("model")
        self.chat.remember_turn(prepared.identity, prepared.context, prepared.user_text, capture.text, model)

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


def sse_event(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event.get('type', 'message')}\ndata: {data}\n\n".encode("utf-8")


def _restore_instructions(response: dict[str, Any], client_body: dict[str, Any]) -> dict[str, Any]:
    """The response as the client should see it: its own instructions, not the memory block."""
    if "instructions" not in response:
        return response
    return {**response, "instructions": client_body.get("instructions")}


