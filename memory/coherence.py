"""Coherence: every process recalls what any process wrote, within a stated bound.

Several processes (``--workers``, replicas) can share one Chroma server. Each
keeps per-owner state in memory (the recall index of memory/lexcache.py with
every vector, the core set and the activation caches keyed by its version),
so each must learn what the others changed:

- :class:`SharedStore` wraps the store: every write, delete and erase is
  recorded, with the memory ids, in the change log (memory/changelog.py),
  and every stored row carries its write stamp (``_w``, read by a restore
  from a snapshot older than the log keeps writes).
- :class:`Coherence` polls the change log every ``interval_ms`` (one small
  query for all owners) and, for each owner this process holds that another
  process changed, reads the rows the records name (by id, with their
  vectors) and patches them into the owner's index in place
  (memory/view.py appends or patches a row; a deleted id is dropped from the
  arrays) — never a rebuild from the store. The core set is dropped when a
  changed or deleted memory is or was core, so its version, and every KV
  cache keyed by it, changes.
- :meth:`Coherence.fresh`, awaited by every search and core read, costs a
  clock comparison while polls keep up; when the last poll that succeeded
  began more than ``max_staleness_ms`` ago it waits for a poll. So a change
  acknowledged by any process is recalled by every process at most
  ``max_staleness_ms`` later (given clocks that agree within
  ``clock_skew_ms``).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from memory.changelog import Change, ChangeLog
from memory.changelog import net as net_changes
from memory.chroma_store import ChromaStore
from memory.cube import MemCube, Tier, owner_key, owner_key_of_id
from memory.errors import MemoryEngineError

if TYPE_CHECKING:
    from memory.engine import MemoryEngine
    from memory.settings import CoherenceSettings

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 60.0
READ_IDS = 1000  # ids read per store call (Chroma's SQL has a cap on variables)


class SharedStore:
    """A :class:`~memory.chroma_store.ChromaStore` whose changes go to the change log.

    ``local``: callers may keep every vector in process (the store is
    embedded, or other writers' changes are followed by :class:`Coherence`).
    ``on_change(owner key)`` is told of every change (snapshots mark the owner dirty).
    ``log_writes`` False (the embedded store: no other process reads the log)
    records deletions and erasures only: a snapshot restore finds the rows
    written since by their write stamp. Each record is a Chroma ``add``, and
    Chroma's embedded ``add`` holds the GIL for its whole call (its Rust
    bindings wait on their runtime without releasing it), so a write record
    per writer batch froze the event loop a second time per batch.
    """

    def __init__(self, store: ChromaStore, changes: ChangeLog, *, local: bool, log_writes: bool = True) -> None:
        self.inner = store
        self.changes = changes
        self.local = local
        self.log_writes = log_writes
        self.listeners: list[Callable[[str], None]] = []

    def __getattr__(self, name: str) -> Any:  # reads (fetch, size, ids, ...) go straight through
        return getattr(self.inner, name)

    async def _noted(self, records: list[tuple[str, str, Sequence[str]]]) -> None:
        for owner, _, _ in records:
            for listener in self.listeners:
                listener(owner)
        if not self.log_writes:
            records = [record for record in records if record[1] != "write"]
        if records:
            await self.changes.note(records)

    async def _wrote(self, cubes: Sequence[MemCube]) -> None:
        by_owner: dict[str, list[str]] = {}
        for cube in cubes:
            by_owner.setdefault(cube.owner.key, []).append(cube.id)
        await self._noted([(key, "write", ids) for key, ids in by_owner.items()])

    async def add(self, cubes: Sequence[MemCube], embeddings: np.ndarray) -> None:
        await self.inner.add(cubes, embeddings)
        await self._wrote(cubes)

    # Changes not journaled (edits, imports) are also recorded before they
    # happen: a crash between the store and the log still leaves a record,
    # so a snapshot restore reads the owner's rows written since.

    async def upsert(self, cubes: Sequence[MemCube], embeddings: np.ndarray) -> None:
        await self._wrote(cubes)
        await self.inner.upsert(cubes, embeddings)
        await self._wrote(cubes)

    async def update(self, cube: MemCube, embedding: np.ndarray | None) -> None:
        await self._wrote([cube])
        await self.inner.update(cube, embedding)
        await self._wrote([cube])

    # Deletions are recorded before they happen: a crash in between leaves a
    # tombstone for a memory that still exists (hidden from recall), never a
    # deleted memory that a snapshot or another process still recalls.

    async def delete(self, memory_id: str) -> bool:
        key = owner_key_of_id(memory_id)
        if key:
            await self._noted([(key, "delete", (memory_id,))])
        return await self.inner.delete(memory_id)

    async def delete_owner(self, user: str) -> int:
        await self._noted([(owner_key(user), "erase", ())])
        return await self.inner.delete_owner(user)

    async def get(self, memory_id: str) -> MemCube | None:
        return await self.inner.get(memory_id)

    async def query(self, user: str, embedding: np.ndarray, limit: int) -> builtins.list[tuple[MemCube, float]]:
        return await self.inner.query(user, embedding, limit)

    async def similarities(self, user: str, embedding: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
        return await self.inner.similarities(user, embedding, ids)

    async def list(
        self, user: str, limit: int, after: str | None = None, tier: str | None = None
    ) -> tuple[builtins.list[MemCube], bool]:
        return await self.inner.list(user, limit, after, tier)

    async def all_active(self, user: str) -> builtins.list[MemCube]:
        return await self.inner.all_active(user)

    async def ping(self) -> None:
        await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def read_written(
    store: ChromaStore, user: str, ids: Sequence[str]
) -> tuple[builtins.list[MemCube], builtins.list[np.ndarray], set[str]]:
    """The current rows of ``ids`` with their vectors, and the ids the store no longer has."""
    if not ids:
        return [], [], set()
    found: dict[str, tuple[MemCube, np.ndarray | None]] = {}
    for start in range(0, len(ids), READ_IDS):
        found.update(await store.fetch(user, ids[start : start + READ_IDS], vectors=True))
    cubes = [cube for cube, _ in found.values()]
    vectors = [np.asarray(vector, dtype=np.float32) for _, vector in found.values()]
    return cubes, vectors, {i for i in ids if i not in found}


class Coherence:
    """Follows other processes' changes through the change log (see the module doc)."""

    def __init__(self, engine: MemoryEngine, store: SharedStore, settings: CoherenceSettings) -> None:
        self._engine = engine
        self._store = store
        self._log = store.changes
        self.interval_s = settings.interval_ms / 1000
        self.max_staleness_s = settings.max_staleness_ms / 1000
        self.skew_s = settings.clock_skew_ms / 1000
        self._users: dict[str, str] = {}  # owner key -> user, for owners this process holds
        self._synced: dict[str, float] = {}  # user -> wall time its index read the whole owner from the store
        self._seen: dict[str, float] = {}  # change ids applied (re-read within the skew window)
        self._since = time.time() - self.skew_s  # wall time of the last poll's start (minus nothing)
        self._fresh_as_of = time.monotonic()  # started: nothing held yet, so nothing stale
        self._applied_until = 0.0
        self._polling: asyncio.Task[None] | None = None
        self._loop: asyncio.Task[None] | None = None
        self.polls = 0
        self.patched = 0  # owners patched from a delta
        self.waits = 0  # requests that waited for a poll

    # -- what this process holds ---------------------------------------------

    def synced(self, user: str, at: float) -> None:
        """``user``'s index read the store at ``at`` (wall clock): deltas start there."""
        self._users[owner_key(user)] = user
        self._synced[user] = at

    def watermark(self, user: str) -> float:
        """Wall time up to which every change of ``user`` is in this process's index:
        the start of the last poll that completed (or of the owner's load, if later)."""
        return max(self._applied_until, self._synced.get(user, 0.0))

    def track(self, user: str) -> None:
        """This process caches something of ``user`` (its core set)."""
        self._users[owner_key(user)] = user

    # -- freshness -------------------------------------------------------------

    async def fresh(self) -> None:
        """Return at once while the last completed poll began within the bound; else
        wait for one that began late enough (a poll already running may have begun
        too early: then for the next)."""
        needed = time.monotonic() - self.max_staleness_s
        if self._fresh_as_of >= needed:
            return
        self.waits += 1
        while self._fresh_as_of < needed:
            await self.poll()

    async def poll(self) -> None:
        """One poll (shared by concurrent callers)."""
        if self._polling is None or self._polling.done():
            self._polling = asyncio.create_task(self._poll(), name="memproxy-coherence-poll")
        await asyncio.shield(self._polling)

    async def _poll(self) -> None:
        began_wall, began = time.time(), time.monotonic()
        records = await self._log.since(self._since - self.skew_s)
        fresh = [r for r in records if r.id not in self._seen and r.origin != self._log.origin]
        by_owner: dict[str, list[Change]] = {}
        for record in fresh:
            by_owner.setdefault(record.owner, []).append(record)
        for key, changes in by_owner.items():
            if any(c.op == "erase" for c in changes):
                self._store.inner.forget_collection(key)  # deleted (and maybe created again) by another process
            user = self._users.get(key)
            if user is not None:
                await self._apply(user, changes)
        for record in records:  # applied: not again while the window still returns them
            self._seen[record.id] = record.ts
        horizon = self._since - 2 * self.skew_s
        self._seen = {i: ts for i, ts in self._seen.items() if ts >= horizon}
        self._applied_until = began_wall  # records older than this (less the skew) are applied
        self._since = began_wall
        self._fresh_as_of = max(self._fresh_as_of, began)
        self.polls += 1

    async def _apply(self, user: str, changes: list[Change]) -> None:
        engine = self._engine
        net = net_changes(changes)
        if net.erased:
            engine._lexical.drop(user)
            engine.invalidate_core(user)
            if engine.snapshots is not None:
                engine.snapshots.discard(user)
            if not net.written:
                return
        deleted = set(net.deleted)
        changed: list[MemCube] = []
        held = engine._lexical.holds(user)
        if held:
            changed, vectors, gone = await read_written(self._store.inner, user, net.written)
            deleted |= gone
            if changed:
                engine._lexical.upsert(changed, vectors)
            for memory_id in deleted:
                engine._lexical.remove(user, memory_id)
            self.patched += 1
            if engine.snapshots is not None:
                engine.snapshots.mark(owner_key(user))
        core = engine._core.get(user)
        if core is not None:
            core_ids = {c.id for c in core.items}
            touched = deleted | {c.id for c in changed}
            if (
                not held
                or touched & core_ids
                or any(c.tier == Tier.CORE.value for c in changed)
            ):
                engine.invalidate_core(user)

    # -- the background loop -----------------------------------------------------

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.create_task(self._run(), name="memproxy-coherence")

    async def _run(self) -> None:
        pruned = 0.0
        while True:
            try:
                await self.poll()
                if time.monotonic() - pruned >= PRUNE_EVERY_S:
                    pruned = time.monotonic()
                    await self._log.prune()
            except MemoryEngineError as exc:  # the store is down: requests wait for a poll, and fail open
                log.warning("coherence poll failed: %s", exc)
            await asyncio.sleep(self.interval_s)

    async def aclose(self) -> None:
        for task in (self._loop, self._polling):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

