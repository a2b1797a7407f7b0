"""The background turn writer.

``submit`` never blocks: turns go on a bounded queue, and when it is full the
turn is dropped with a warning and counted. One worker task drains the queue
in batches (waiting ``linger_s`` after the first turn, so that turns arriving
close together share one embedding call and one store write) and hands each batch to a sink (the engine's batched ``add``,
which embeds the whole batch at once). Sink failures are logged with their
exception and counted; the worker keeps going.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memory.cube import Owner, Provenance
from memory.render import strip_injected
from memory.worker import QueueWorker

log = logging.getLogger(__name__)

BATCH_SIZE = 64


@dataclass(frozen=True, slots=True)
class Turn:
    owner: Owner
    content: str
    provenance: Provenance
    event_time: datetime | None = None
    metadata: dict[str, Any] | None = None  # stored on the turn's memory (e.g. a benchmark's dia_id)


def turn_content(user_text: str, assistant_text: str) -> str:
    """``User: ...\\nAssistant: ...`` with injected memory blocks removed;
    empty when neither side has any text left."""
    user = strip_injected(user_text or "").strip()
    assistant = strip_injected(assistant_text or "").strip()
    lines = [f"User: {user}" if user else "", f"Assistant: {assistant}" if assistant else ""]
    return "\n".join(line for line in lines if line)


Sink = Callable[[list[Turn]], Awaitable[None]]


class TurnWriter(QueueWorker[Turn]):
    def __init__(self, sink: Sink, maxsize: int, batch_size: int = BATCH_SIZE, linger_s: float = 0.0) -> None:
        super().__init__(maxsize, "memproxy-writer")
        self._sink = sink
        self._linger_s = linger_s
        self._batch_size = batch_size
        self.failed = 0
        self.written = 0

    def submit(self, turn: Turn) -> bool:
        """Queue a turn; False (and a warning) when it had to be dropped."""
        return self.offer(turn)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._linger_s > 0:  # let a burst of turns share one embed + store call
                await asyncio.sleep(self._linger_s)
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._sink(batch)
                self.written += len(batch)
            except Exception:  # a failed batch must not stop the writer
                self.failed += len(batch)
                log.exception("memory writer failed to store %d turn(s)", len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()
