"""Backpressure: requests wait for room in the write backlog, let in at the pace the writer stores.

When more turns arrive than the background writer stores, the journal grows
without end (it is durable, so nothing is lost, but the backlog is the
replay after a crash and the delay before a turn can be recalled). Past
``memory.write_queue_size`` journaled turns, a request that will write waits
here, before it does any memory work, until the writer made room (at most
``memory.write_backpressure_ms``, then it goes on and its write is reported
late).

Waiters are let in first come, first served, one for each turn the writer
stored (a request let in journals its turn only later, after its recall and
its upstream call, so the journal's depth alone would let in too many), and
*paced*: the writer stores a batch at a time (tens of turns at once), and
letting every waiter in at once would start tens of recalls together, a
burst that misses the recall deadline on a busy CPU. Instead the room a
batch made is handed out one request at a time, spread over the time the
writer took for the batch (its measured rate), so requests enter at the
rate the writer drains them. Room made another way (a forget emptied part
of the journal) is noticed within :data:`RECHECK_S`.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

MIN_GAP_S = 0.0005  # pacing below this is not worth a sleep
MAX_GAP_S = 0.25  # a slow batch never holds the next waiter longer than this
RECHECK_S = 0.25  # with no batch stored meanwhile, the journal's depth is looked at this often


class Admission:
    def __init__(self, depth: Callable[[], int]) -> None:
        self._depth = depth  # journaled turns waiting for the writer, now
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._limit = 0  # the backlog at which requests wait (the last wait() asked for)
        self._gap_s = 0.0  # pacing: the writer's time per stored turn, lately
        self._last_batch: float | None = None
        self._pacer: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()
        self._credits = 0  # waiters that may be let in: turns stored since, at most one per waiter

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def wait(self, limit: int, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) for the backlog to be under ``limit``; False if the time ran out."""
        self._limit = limit
        if self._depth() < limit and not self._waiters:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._start()
        try:
            await asyncio.wait_for(future, timeout=timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            if future in self._waiters:  # gave up (timeout, cancelled): not waiting any more
                self._waiters.remove(future)

    def stored(self, count: int) -> None:
        """The writer stored ``count`` turns (a batch): there may be room now."""
        now = time.monotonic()
        if self._last_batch is not None and count > 0:
            gap = min(MAX_GAP_S, (now - self._last_batch) / count)
            self._gap_s = gap if self._gap_s == 0 else 0.5 * self._gap_s + 0.5 * gap
        self._last_batch = now
        self._credits = min(self._credits + count, len(self._waiters))
        self._progress.set()
        self._start()

    def idle(self) -> None:
        """The writer found nothing to store: the pace of its last batches says nothing now."""
        self._last_batch = None
        self._progress.set()

    def _start(self) -> None:
        if self._waiters and (self._pacer is None or self._pacer.done()):
            self._pacer = asyncio.get_running_loop().create_task(self._pace(), name="memproxy-admission")

    async def _pace(self) -> None:
        while self._waiters:
            if self._credits <= 0:
                self._progress.clear()
                try:
                    await asyncio.wait_for(self._progress.wait(), timeout=RECHECK_S)
                    continue
                except TimeoutError:  # no batch stored: room may have come another way (a forget)
                    if self._depth() >= self._limit:
                        continue
                    self._credits = 1
            future = self._waiters.popleft()
            if future.done():
                continue
            self._credits -= 1
            future.set_result(None)
            if self._gap_s >= MIN_GAP_S:
                await asyncio.sleep(self._gap_s)
            else:
                await asyncio.sleep(0)  # let the one let in start before the next
