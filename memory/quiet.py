"""Searches in flight, so background work on the recall pool can step aside for them.

Saving an owner's index snapshot (memory/snapshot.py) is seconds of Python at
100,000 memories: copying the index under its lock, pickling each memory,
pickling the whole. On the recall pool, beside searches, it shares the GIL
with them; right after a cold build, while the owner's first searches come
in, that doubled their times and stalled the event loop (`memproxy bench
scale --sizes 100000`, docs/benchmarks.md). So the engine counts its searches
here, the snapshot saved after a build waits for a pause in them
(:meth:`Activity.quiet`), and the saver's thread pauses between slices of
its work while a search runs (:meth:`Activity.pause`), a bounded time each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

QUIET_S = 1.0  # a pause in searches this long lets a deferred save start
MAX_DEFER_S = 60.0  # a deferred save starts after this long whatever the traffic
PAUSE_STEP_S = 0.002
MAX_PAUSE_S = 0.05  # the most a saver's slice waits for searches to end


class Activity:
    """Searches in flight (counted on the event loop, read from any thread)."""

    def __init__(self) -> None:
        self.running = 0
        self.last_end = 0.0  # time.monotonic() when the last search ended

    @contextmanager
    def search(self) -> Iterator[None]:
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self.last_end = time.monotonic()

    def busy(self) -> bool:
        return self.running > 0

    async def quiet(self, for_s: float = QUIET_S, at_most_s: float = MAX_DEFER_S) -> None:
        """Return once no search has run for ``for_s`` seconds, or after ``at_most_s``."""
        deadline = time.monotonic() + at_most_s
        while (now := time.monotonic()) < deadline:
            idle = 0.0 if self.running else now - self.last_end
            if idle >= for_s:
                return
            await asyncio.sleep(max(PAUSE_STEP_S, min(for_s - idle, deadline - now)))

    def pause(self, at_most_s: float = MAX_PAUSE_S) -> None:
        """Block the calling (pool) thread while a search runs, up to ``at_most_s``."""
        deadline = time.monotonic() + at_most_s
        while self.running and time.monotonic() < deadline:
            time.sleep(PAUSE_STEP_S)
