"""Recall queries that arrive together are embedded together.

The query lane (memory/embedder.py) is one thread: under concurrent chat
each recall used to wait for every query ahead of it, one model call each,
and with 50 clients most recalls missed their deadline in that queue. A
:class:`QueryBatcher` sends a lone query at once (no added latency), and
while a call is running it collects the queries that arrive; they go in the
next call, together (up to :data:`MAX_BATCH`). One call for many short
queries costs far less per query than one call each (ONNX, one thread:
~7 ms for one query against ~4 ms per query for 8 or 16). A batch is at most
:data:`MAX_BATCH` queries: beyond 16 the cost per query rises again (~5 ms
at 32) and a batch of 32 takes ~160 ms by itself, most of a 200 ms recall
deadline for every query that arrives while it runs (``bench load``, 50
clients, docs/benchmarks.md).

A query whose caller gave up (its recall deadline passed, so its wait was
cancelled) before its batch started is dropped from the batch: work nobody
waits for is not done, which keeps the lane short when it is overloaded.
Identical texts in one batch are embedded once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np

MAX_BATCH = 16

Embed = Callable[[list[str]], Awaitable[np.ndarray]]


class QueryBatcher:
    def __init__(self, embed: Embed, max_batch: int = MAX_BATCH) -> None:
        self._embed = embed
        self._max_batch = max_batch
        self._waiting: list[tuple[str, asyncio.Future[np.ndarray]]] = []
        self._drain: asyncio.Task[None] | None = None
        self.calls = 0  # model calls made (a query batch each)
        self.embedded = 0  # queries answered

    async def embed(self, text: str) -> np.ndarray:
        """The query's vector, shape ``(384,)``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._waiting.append((text, future))
        if self._drain is None or self._drain.done() or self._drain.get_loop() is not loop:
            self._waiting = [(t, f) for t, f in self._waiting if f.get_loop() is loop]
            self._drain = loop.create_task(self._run(), name="memproxy-query-batches")
        return await future

    async def _run(self) -> None:
        while self._waiting:
            taken, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
            batch = [(text, future) for text, future in taken if not future.done()]  # dropped: gave up
            if not batch:
                continue
            texts = list(dict.fromkeys(text for text, _ in batch))
            try:
                vectors = await self._embed(texts)
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # every caller of this batch sees the model's failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.calls += 1
            row = {text: vectors[n] for n, text in enumerate(texts)}
            for text, future in batch:
                if not future.done():
                    future.set_result(row[text])
                    self.embedded += 1
