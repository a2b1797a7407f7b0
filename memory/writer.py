"""The background writer: drains the journal into the store.

Every accepted write is first committed to the journal (:mod:`memory.journal`),
so the writer's "queue" is the journal itself: nothing is held only in RAM,
and a full queue is never a drop. One worker task reads the oldest unclaimed
items (waiting ``linger_s`` after a wake-up, so that turns arriving close
together share one embedding call and one store write), hands them to the
sink (the engine: embed, store by id, update its indexes), and deletes them
from the journal only once the sink succeeded.

A sink in two stages (:class:`Stages`: ``prepare`` embeds, ``commit``
stores) is pipelined: while batch N is being stored, batch N+1 is already
being embedded (the embedding runs on the bulk lane's thread, the store on
the store's, so the two use both cores where one batch at a time left one
idle). At most two batches are in flight, batches are committed in the
order they were taken, and each batch is deleted from the journal only
after its own commit succeeded; a failure drops the prepared batch too and
retries both from the journal.

A failed batch stays in the journal and is retried with exponential backoff
(``backoff_s`` doubling up to ``max_backoff_s``); while the last attempt
failed, :attr:`JournalWriter.failing` is true and :attr:`last_error` says
why (``X-Memory-Status: degraded`` and ``/readyz`` read them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memory.admission import Admission
from memory.cube import Owner, Provenance
from memory.journal import Entry, Journal
from memory.render import strip_injected

log = logging.getLogger(__name__)

BATCH_SIZE = 64
BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
POLL_S = 0.01  # flush() looks this often
GATHER_BATCH = 16  # under steady traffic the writer waits for this many turns ...
MAX_GATHER_S = 1.0  # ... or this long, whichever comes first (see _gather)
LULL_S = 0.3  # ... unless no turn came for this long
IDLE_LOOK_S = 2.0  # an idle writer looks at the journal this often (work another process left behind)


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


def take_next_at_once(depth: int, linger_s: float) -> bool:
    """After a stored batch: take the next one at once (a backlog of :data:`GATHER_BATCH`
    waits, or the writer never lingers), else wait and gather first. Taking what is
    there at once stored turns arriving one by one in batches of 1-3 back to back,
    each a Chroma add that holds the GIL for its whole call (tens of ms): the event
    loop froze once per turn instead of once per batch (`memproxy bench latency`,
    memory on: 30 adds for 150 turns, the slowest calls the ones that overlapped
    them; gathering: 9 adds of 15-18 turns; docs/benchmarks.md)."""
    return linger_s <= 0 or depth >= GATHER_BATCH


# stores what it can of a batch; returns the entries now in the store (the rest stay journaled)
Sink = Callable[[list[Entry]], Awaitable[list[Entry]]]


@dataclass(frozen=True, slots=True)
class Stages:
    """A sink in two stages, pipelined by the writer: ``prepare`` a batch (embed it),
    then ``commit`` it with what ``prepare`` returned (store it; returns the entries
    now in the store, as :data:`Sink`)."""

    prepare: Callable[[list[Entry]], Awaitable[Any]]
    commit: Callable[[list[Entry], Any], Awaitable[list[Entry]]]

    async def __call__(self, entries: list[Entry]) -> list[Entry]:
        return await self.commit(entries, await self.prepare(entries))


class JournalWriter:
    def __init__(
        self,
        journal: Journal,
        sink: Sink | Stages,
        *,
        batch_size: int = BATCH_SIZE,
        linger_s: float = 0.0,
        backoff_s: float = BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self.journal = journal
        self._sink = sink
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._busy = False
        self.in_flight: list[Entry] = []  # every batch taken and not yet stored or given up
        self._committing: asyncio.Task[list[Entry]] | None = None  # the batch being stored (pipelined)
        self._backoff = backoff_s  # the wait before the next retry (doubles while attempts fail)
        self._last_notified = 0.0  # when a turn was last journaled for this writer (it gathers while they come)
        self.admission = Admission(lambda: self.journal.depth)  # requests waiting for room in the backlog
        self.written = 0  # items stored
        self.failed = 0  # items in failed attempts (each retry counts again)
        self.failing = False  # the last attempt failed (cleared by the next success)
        self.last_error: str | None = None
        self.failing_since: float | None = None

    @property
    def depth(self) -> int:
        """Journaled items waiting for this writer."""
        return self.journal.depth

    def start(self) -> None:
        """Start draining (replays whatever a previous process left); needs a running loop."""
        if self._closed:
            return
        if self._task is None or self._task.done():
            self._busy = True  # until its first look at the journal
            self._task = asyncio.get_running_loop().create_task(self._run(), name="memproxy-writer")

    def notify(self) -> None:
        """Something was journaled: wake the worker."""
        self._last_notified = time.monotonic()
        self._wake.set()
        self.start()

    async def _run(self) -> None:
        self._backoff = self._backoff_s
        try:
            while not self._closed:
                self._wake.clear()
                try:
                    self._busy = True
                    if await self._step():
                        if take_next_at_once(self._waiting(), self._linger_s):
                            continue
                    else:
                        self.admission.idle()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # keep everything journaled, retry later
                    await self._drop_committing()
                    count = len(self.in_flight)
                    self.failed += count
                    self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    if not self.failing:
                        self.failing_since = time.time()
                    self.failing = True
                    log.warning(
                        "memory writer could not store %d item(s) (%s); kept in the journal, retrying in %.1f s",
                        count, self.last_error, self._backoff,
                    )
                    self.in_flight = []
                    self._busy = False
                    await asyncio.sleep(self._backoff)
                    self._backoff = min(self._backoff * 2, self._max_backoff_s)
                    continue
                finally:
                    self._busy = False
                    if self._committing is None:
                        self.in_flight = []
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=IDLE_LOOK_S)
                except TimeoutError:
                    continue  # nobody here journaled anything; a process sharing the journal may have died
                if self._linger_s > 0:  # let a burst of turns share one embed + store call
                    await self._gather()
        finally:
            await self._drop_committing()

    @property
    def busy(self) -> bool:
        """Taking, embedding or storing a batch now."""
        return self._busy or (self._committing is not None and not self._committing.done())

    def _waiting(self) -> int:
        """Journaled items not yet taken (the batch being stored is still journaled)."""
        taken = len(self.in_flight) if self._committing is not None else 0
        return max(0, self.journal.depth - taken)

    async def _step(self) -> bool:
        """Take the next batch and hand it on; True when a batch was taken or one being stored ended."""
        if self._committing is not None and self._committing.done():
            await self._finish()  # raises its failure before anything new is taken
        pending = {e.cube.id for e in self.in_flight}
        taken = await self.journal.next_unclaimed(self._batch_size + len(pending))
        entries = [e for e in taken if e.cube.id not in pending][: self._batch_size]
        if not entries:
            return False
        if not isinstance(self._sink, Stages):
            self.in_flight = entries
            stored = await self._sink(entries)
            if stored:
                await self.journal.complete([e.cube.id for e in stored])
            self._count(stored)
            return True
        self.in_flight = self.in_flight + entries
        prepared = await self._sink.prepare(entries)  # while the batch before is being stored
        await self._finish()  # commits go in the order the batches were taken
        task = asyncio.get_running_loop().create_task(self._commit(entries, prepared), name="memproxy-writer-commit")
        task.add_done_callback(self._woken_by_failure)
        self._committing = task
        return True

    async def _commit(self, entries: list[Entry], prepared: Any) -> list[Entry]:
        """Store a prepared batch, delete it from the journal, count it."""
        assert isinstance(self._sink, Stages)
        stored = await self._sink.commit(entries, prepared)
        if stored:
            await self.journal.complete([e.cube.id for e in stored])
        ids = {e.cube.id for e in entries}
        self.in_flight = [e for e in self.in_flight if e.cube.id not in ids]
        self._count(stored)
        return stored

    async def _finish(self) -> None:
        """Wait for the batch being stored (if any); its failure is raised here."""
        task = self._committing
        if task is None:
            return
        try:
            await asyncio.shield(task)
        finally:
            if task.done():
                self._committing = None

    def _woken_by_failure(self, task: asyncio.Task[list[Entry]]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._wake.set()  # seen to now (reported, retried), not at the next turn

    def _count(self, stored: list[Entry]) -> None:
        """A batch was stored (what of it was still wanted): count it; the writer is not failing."""
        self.admission.stored(len(stored))
        self.written += len(stored)
        if self.failing:
            log.warning("memory writer recovered; %d item(s) still journaled", self.journal.depth)
        self.failing, self.last_error, self.failing_since = False, None, None
        self._backoff = self._backoff_s

    async def _drop_committing(self) -> None:
        """Let the batch being stored end (never cancelled midway: a cancelled store
        call still runs in its thread); a failure of it only leaves it journaled."""
        task, self._committing = self._committing, None
        if task is None:
            return
        try:
            await asyncio.shield(task)
        except Exception as exc:  # noqa: BLE001 - it stays journaled; the retry reports
            log.warning("memory writer: a batch being stored failed too (%s: %s); kept in the journal",
                        type(exc).__name__, exc)

    async def _gather(self) -> None:
        """Linger, and keep lingering while turns keep coming, until :data:`GATHER_BATCH`
        wait or :data:`MAX_GATHER_S` passed: under steady traffic the writer stores
        batches, not turns one by one (one turn a call costs the bulk lane several times
        the CPU per turn of a batch of 16, and a writer that does not keep up holds
        every request back); a lull (nothing new for :data:`LULL_S`) stores at once."""
        started = time.monotonic()
        while True:
            await asyncio.sleep(self._linger_s)
            now = time.monotonic()
            if (
                self.journal.depth >= GATHER_BATCH
                or now - started >= MAX_GATHER_S
                or now - self._last_notified >= max(LULL_S, self._linger_s)
            ):
                return

    async def room(self, limit: int, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until fewer than ``limit`` items are waiting; False if that never came.

        Waiters are let in first come, first served, at the pace the writer
        stores turns (:mod:`memory.admission`).
        """
        return await self.admission.wait(limit, timeout_s)

    async def flush(self) -> None:
        """Wait until every journaled item has been stored, or the writer is failing."""
        if self._task is None and self.journal.depth == 0:
            return
        self.start()
        while (self.journal.depth > 0 or self.busy or self._wake.is_set()) and not self.failing:
            if self._task is None or self._task.done():
                return
            await asyncio.sleep(POLL_S)

    async def aclose(self) -> None:
        """Stop after the batch in flight; what is left stays journaled for the next start."""
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            return
        self._wake.set()
        if self.busy:  # let the batch in flight finish (bounded), rather than write it twice
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(task), timeout=5.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
