"""The chat pipeline: recall -> inject -> forward -> relay -> write.

Memory never fails a chat request: recall runs under a deadline and any
failure or timeout forwards the request without memories, reported as
``X-Memory-Status: degraded``. Writes happen in the background after the
reply is complete; failed upstream calls write nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from adapters.base import CallContext, Upstream, close_stream
from adapters.errors import UpstreamError
from adapters.normalize import normalize_chunk, normalize_completion
from memory.cube import Provenance
from memory.engine import MemoryEngine
from memory.tokens import TokenCounter
from proxy.capture import ReplyCapture
from proxy.config import MemorySettings
from proxy.identity import Identity
from adapters.kvcache import Activation
from proxy.injection import inject_blocks, last_user_text, recall_query, render_block, render_core_block

log = logging.getLogger("memproxy.chat")


@dataclass(frozen=True, slots=True)
class MemoryOutcome:
    """What memory did for one request; becomes the ``X-Memory-*`` headers."""

    status: str  # ok | off | degraded
    recalled: int = 0
    tokens: int = 0
    core: int = 0

    def headers(self) -> dict[str, str]:
        return {
            "X-Memory-Status": self.status,
            "X-Memory-Recalled": str(self.recalled),
            "X-Memory-Tokens": str(self.tokens),
            "X-Memory-Core": str(self.core),
        }


@dataclass(frozen=True, slots=True)
class MemoryBlocks:
    """The rendered memory of one request: the core block (stable, first) and
    the recalled block (per request), either possibly None."""

    core: str | None
    core_version: str | None
    recalled: str | None
    outcome: MemoryOutcome

    def joined(self) -> str | None:
        parts = [b for b in (self.core, self.recalled) if b]
        return "\n\n".join(parts) if parts else None


@dataclass(frozen=True, slots=True)
class PreparedChat:
    body: dict[str, Any]  # what goes upstream
    client_messages: list[dict[str, Any]]  # what the client sent (for the write)
    identity: Identity
    context: CallContext
    memory: MemoryOutcome

    def headers(self) -> dict[str, str]:
        """``X-Memory-*`` headers; ``X-Memory-KV`` is known once the upstream started."""
        activation = self.context.activation
        kv = activation.kv if isinstance(activation, Activation) else "off"
        return {**self.memory.headers(), "X-Memory-KV": kv}


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
        blocks = await self.memory_blocks(recall_query(messages), identity)
        upstream_messages = inject_blocks(messages, blocks.core, blocks.recalled, self.settings.placement)
        if blocks.core and blocks.core_version is not None:
            activation = Activation(identity.owner.user, blocks.core_version, blocks.core)
            context = dataclasses.replace(context, activation=activation)
        forwarded = {**body, "messages": upstream_messages}
        if self.model_override:
            forwarded["model"] = self.model_override
        return PreparedChat(forwarded, messages, identity, context, blocks.outcome)

    async def recall(
        self, messages: list[dict[str, Any]], identity: Identity
    ) -> tuple[list[dict[str, Any]], MemoryOutcome]:
        """``messages`` with the recalled memory block injected (a copy), and the outcome."""
        blocks = await self.memory_blocks(recall_query(messages), identity)
        return inject_blocks(messages, blocks.core, blocks.recalled, self.settings.placement), blocks.outcome

    async def recall_block(self, query: str, identity: Identity) -> tuple[str | None, MemoryOutcome]:
        """The rendered memory (core block first, then recalled; None when empty).

        Shared by every protocol front end (chat completions, Responses,
        Ollama); each places the block in its own request shape.
        """
        blocks = await self.memory_blocks(query, identity)
        return blocks.joined(), blocks.outcome

    async def memory_blocks(self, query: str, identity: Identity) -> MemoryBlocks:
        """The owner's core block and the block recalled for ``query``, under the deadline."""
        if not identity.mode.reads:
            status = "off" if not identity.mode.writes else "ok"
            return MemoryBlocks(None, None, None, MemoryOutcome(status))
        user = identity.owner.user
        deadline = self.settings.recall_deadline_ms / 1000

        async def recalled() -> Any:
            return await self.engine.search(user, query) if query else None

        try:
            core, result = await asyncio.wait_for(
                asyncio.gather(self.engine.core(user), recalled()), timeout=deadline
            )
        except TimeoutError:
            log.warning("recall missed its %.0f ms deadline; forwarding without memories", deadline * 1000)
            return MemoryBlocks(None, None, None, MemoryOutcome("degraded"))
        except Exception:  # fail open by design: memory must never fail a chat
            log.exception("recall failed; forwarding without memories")
            return MemoryBlocks(None, None, None, MemoryOutcome("degraded"))
        core_block = render_core_block(core.texts) if core.items else None
        items = result.items if result is not None else []
        recalled_block = render_block([item.text for item in items]) if items else None
        tokens = sum(self.counter.count(b) for b in (core_block, recalled_block) if b)
        outcome = MemoryOutcome("ok", len(items), tokens, len(core.items))
        return MemoryBlocks(core_block, core.version if core_block else None, recalled_block, outcome)

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
            await close_stream(chunks)
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


