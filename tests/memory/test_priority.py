"""memory/priority.py: the bulk (write) embedding lane runs below the query lane."""

from __future__ import annotations

import asyncio
import os
import threading

from memory.embedder import Embedder
from memory.priority import BULK_NICENESS


def _niceness(lane: str) -> list[int]:
    return [
        os.getpriority(os.PRIO_PROCESS, t.native_id)
        for t in threading.enumerate()
        if t.name.startswith(f"memproxy-embed-{lane}") and t.native_id is not None
    ]


def test_writes_embed_at_a_lower_priority_than_queries(embedder: Embedder) -> None:
    async def both() -> None:
        await asyncio.gather(embedder.embed(["a memory"]), embedder.embed_query(["a question"]))

    asyncio.run(both())
    bulk, query = _niceness("bulk"), _niceness("query")
    assert bulk and query
    assert min(bulk) >= min(19, max(query) + BULK_NICENESS)
