"""A bounded queue drained by one background task: the shape the turn writer
and the fact extractor share.

``offer`` never blocks: when the queue is closed or full the item is dropped,
counted and logged. ``flush`` waits for everything queued so far; ``aclose``
drains, then stops the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")


class QueueWorker(Generic[Item]):
    def __init__(self, maxsize: int, name: str) -> None:
        self._queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=maxsize)
        self._name = name
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.dropped = 0

    @property
    def depth(self) -> int:
        """Items queued and not yet handled."""
        return self._queue.qsize()

    def offer(self, item: Item) -> bool:
        """Queue ``item``; False (and a warning) when it had to be dropped."""
        if self._closed:
            self.dropped += 1
            log.warning("%s is closed; dropped an item", self._name)
            return False
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("%s queue full (%d); dropped an item (%d dropped so far)",
                        self._name, self._queue.maxsize, self.dropped)
            return False
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run(), name=self._name)
        return True

    def discard(self, predicate: Callable[[Item], bool]) -> int:
        """Remove queued (not yet started) items matching ``predicate``; how many."""
        kept: list[Item] = []
        removed = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            self._queue.task_done()
            if predicate(item):
                removed += 1
            else:
                kept.append(item)
        for item in kept:
            self._queue.put_nowait(item)
        return removed

    async def _run(self) -> None:
        raise NotImplementedError

    async def flush(self) -> None:
        """Wait until every item queued so far has been handled (or failed)."""
        if self._worker is not None:
            await self._queue.join()

    async def aclose(self) -> None:
        """Drain the queue, then stop the worker."""
        self._closed = True
        await self.flush()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
