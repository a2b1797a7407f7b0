"""How many recalls run at once: as many as finish well inside the deadline.

With 50 clients on two cores, 50 recalls ran at once: each one's query
embedding, ranking and event-loop steps shared the CPU with the 49 others,
so nearly every recall took longer than ``memory.recall_deadline_ms`` and was
thrown away, work done for nothing, while the request was not answered any
sooner (the CPU was just as busy). A :class:`RecallGate` lets recalls start
in arrival order, at most :attr:`limit` at a time; the others wait at the
gate, before their recall starts. The deadline then bounds what it was meant
to bound, the recall's own time, and a saturated server queues requests
(as any server at capacity does) instead of discarding their memory.

The limit adapts, gently: a recall that missed the deadline lowers it by
one, a fast one (under a quarter of the deadline) while requests wait at the
gate raises it by one. It never falls below :data:`MINIMUM`: when recalls
are slow because other processes take the CPU (not because of how many run
at once), a lower limit would only cut throughput (a first version that
also lowered it for every recall over half the deadline fell to 2 on the
shared machine and let through 7 requests/s where 13 came before). A request that waited at the gate longer than its ``wait_s`` goes on
without memory (``degraded``: the server sheds memory work before it
falls further behind).
"""

from __future__ import annotations

import asyncio
import collections

INITIAL = 16  # one full query batch (memory/querybatch.py)
MINIMUM = 4
MAXIMUM = 64


class RecallGate:
    def __init__(self, deadline_s: float, *, initial: int = INITIAL, minimum: int = MINIMUM, maximum: int = MAXIMUM) -> None:
        self._deadline_s = deadline_s
        self._minimum = minimum
        self._maximum = maximum
        self.limit = float(max(minimum, min(maximum, initial)))
        self.running = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.shed = 0  # requests that waited too long and went on without memory

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def enter(self, wait_s: float) -> bool:
        """Take a place among the running recalls, waiting at most ``wait_s``; False: none came in time."""
        if self.running < int(self.limit) and not self._waiters:
            self.running += 1
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await asyncio.wait({future}, timeout=wait_s)
        except asyncio.CancelledError:
            self._abandon(future)
            raise
        if future.done():
            return True  # let in (the place was taken for it)
        self._abandon(future)
        self.shed += 1
        return False

    def leave(self, seconds: float, *, missed: bool = False) -> None:
        """A recall that entered finished after ``seconds`` (``missed``: past its deadline)."""
        if missed:
            self.limit = max(self._minimum, self.limit - 1)
        elif seconds < self._deadline_s / 4 and self._waiters:
            self.limit = min(self._maximum, self.limit + 1)
        self.running -= 1
        self._let_in()

    def _abandon(self, future: asyncio.Future[None]) -> None:
        if future in self._waiters:
            self._waiters.remove(future)
            future.cancel()
        elif future.done() and not future.cancelled():  # it was let in just as it gave up: free the place
            self.running -= 1
            self._let_in()

    def _let_in(self) -> None:
        while self._waiters and self.running < int(self.limit):
            future = self._waiters.popleft()
            if not future.done():
                self.running += 1
                future.set_result(None)
