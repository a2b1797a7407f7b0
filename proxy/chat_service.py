"""The chat pipeline: recall -> inject -> forward -> relay -> write.

Memory never fails a chat request: recall runs under a deadline and any
failure or timeout forwards the request without memories, reported as
``X-Memory-Status: degraded``. Writes happen in the background after the
reply is complete; failed upstream calls write nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from adapters.base import CallContext, Upstream
from adapters.errors import UpstreamError
from adapters.normalize import normalize_chunk, normalize_completion
from memory.cube import Provenance
from memory.engine import MemoryEngine
from memory.tokens import TokenCounter
from proxy.capture import ReplyCapture
from proxy.config import MemorySettings
from proxy.identity import Identity
from proxy.injection import inject, last_user_text, recall_query, render_block

log = logging.getLogger("memproxy.chat")


@dataclass(frozen=True, slots=True)
class MemoryOutcome:
    """What memory did for one request; becomes the ``X-Memory-*`` headers."""

    status: str  # ok | off | degraded
    recalled: int = 0
    tokens: int = 0

    def headers(self) -> dict[str, str]:
        return {
            "X-Memory-Status": self.status,
            "X-Memory-Recalled": str(self.recalled),
            "X-Memory-Tokens": str(self.tokens),
        }


@dataclass(frozen=True, slots=True)
class PreparedChat:
    body: dict[str, Any]  # what goes upstream
    client_messages: list[dict[str, Any]]  # what the client sent (for the write)
    identity: Identity
    context: CallContext
    memory: MemoryOutcome


class ChatService:
    def __init__(
        self,
        upstream: Upstream,
        engine: MemoryEngine,
        counter: TokenCounter,
        settings: MemorySettings,
        model_override: str | None = None,
    ) -> None:
        self.upstream = upstream
        self.engine = engine
        self.counter = counter
        self.settings = settings
        self.model_override = model_override

    async def prepare(self, body: dict[str, Any], identity: Identity, context: CallContext) -> PreparedChat:
        messages = body["messages"]
        upstream_messages, outcome = await self.recall(messages, identity)
        forwarded = {**body, "messages": upstream_messages}
        if self.model_override:
            forwarded["model"] = self.model_override
        return PreparedChat(forwarded, messages, identity, context, outcome)

    async def recall(
        self, messages: list[dict[str, Any]], identity: Identity
    ) -> tuple[list[dict[str, Any]], MemoryOutcome]:
        """``messages`` with the recalled memory block injected (a copy), and the outcome."""
        block, outcome = await self.recall_block(recall_query(messages), identity)
        if block is None:
            return messages, outcome
        return inject(messages, block, self.settings.placement), outcome

    async def recall_block(self, query: str, identity: Identity) -> tuple[str | None, MemoryOutcome]:
        """The rendered memory block for ``query`` (None when nothing is recalled).

        Shared by every protocol front end (chat completions, Responses,
        Ollama); each places the block in its own request shape.
        """
        if not identity.mode.reads:
            status = "off" if not identity.mode.writes else "ok"
            return None, MemoryOutcome(status)
        if not query:
            return None, MemoryOutcome("ok")
        deadline = self.settings.recall_deadline_ms / 1000
        try:
            result = await asyncio.wait_for(
                self.engine.search(identity.owner.user, query), timeout=deadline
            )
        except TimeoutError:
            log.warning("recall missed its %.0f ms deadline; forwarding without memories", deadline * 1000)
            return None, MemoryOutcome("degraded")
        except Exception:  # fail open by design: memory must never fail a chat
            log.exception("recall failed; forwarding without memories")
            return None, MemoryOutcome("degraded")
        if not result.items:
            return None, MemoryOutcome("ok")
        block = render_block([item.text for item in result.items])
        return block, MemoryOutcome("ok", len(result.items), self.counter.count(block))

    async def complete(self, prepared: PreparedChat) -> dict[str, Any]:
        completion = normalize_completion(await self.upstream.chat(prepared.body, prepared.context))
        capture = ReplyCapture()
        capture.add_completion(completion)
        self.remember(prepared, capture)
        return completion

    async def stream(self, prepared: PreparedChat) -> AsyncIterator[bytes]:
        """Open the upstream stream (raising on upstream errors), then relay it."""
        chunks = await self.upstream.open_stream(prepared.body, prepared.context)
        return self._relay(prepared, chunks)

    async def _relay(
        self, prepared: PreparedChat, chunks: AsyncIterator[dict[str, Any]]
    ) -> AsyncIterator[bytes]:
        capture = ReplyCapture()
        completed = False
        try:
            async for chunk in chunks:
                chunk = normalize_chunk(chunk)
                capture.add_chunk(chunk)
                yield sse_event(chunk)
            completed = True
        except UpstreamError as exc:
            log.warning("upstream failed mid-stream: %s", exc.message)
            yield sse_event(exc.to_body())
        finally:
            await _aclose(chunks)
        yield b"data: [DONE]\n\n"
        if completed:
            self.remember(prepared, capture)

    def remember(self, prepared: PreparedChat, capture: ReplyCapture) -> None:
        """Queue the finished turn for the background writer."""
        user_text = last_user_text(prepared.client_messages) or ""
        model = capture.model or prepared.body.get("model")
        self.remember_turn(prepared.identity, prepared.context, user_text, capture.text, model)

    def remember_turn(
        self, identity: Identity, context: CallContext, user_text: str, reply: str, model: str | None
    ) -> None:
        """Queue one finished turn (plain texts) for the background writer.

        Shared by every protocol front end; never raises.
        """
        if not identity.mode.writes or not self.settings.write_enabled:
            return
        if not user_text and not reply:
            return
        roles = tuple(r for r, t in (("user", user_text), ("assistant", reply)) if t)
        provenance = Provenance(request_id=context.request_id, model=model, roles=roles)
        try:
            self.engine.remember_turn(identity.owner, user_text, reply, provenance)
        except Exception:  # the reply is already delivered; losing the write is logged
            log.exception("could not queue the memory write for %s", context.request_id)


def sse_event(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n".encode("utf-8")


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()
