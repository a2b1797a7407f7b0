"""Per-owner in-process indexes, cached by how many memories they hold.

Each cached owner has a BM25 index over its active memories plus the cubes
themselves (so lexical-only hits need no store round trip), the standing
facts among them with their domain profiles, and, for a store no one else
writes, every memory's embedding, so recall scores every memory of an owner
with one in-memory matrix product (:meth:`OwnerIndex.view`). When any vector
is missing, :meth:`OwnerIndex.view` says so and recall falls back to the
store's nearest-neighbour query.

Threading: everything that reads or changes an index runs on the recall
thread pool, under the index's own lock (:meth:`LexicalCache.read`), never
on the event loop. Writers on the loop only queue their change on the index
(:meth:`OwnerIndex.enqueue`, O(1)); the next reader applies the queue before
it reads, so a search always sees every write that returned before it, and a
background flush keeps the queue short when nobody searches. A miss rebuilds
the owner from the store (paged reads) and fills the index on the pool;
changes queued meanwhile are applied after the fill (upsert/remove are
idempotent, so replaying is always safe).

The cache is bounded by the memories it holds (``capacity`` memories over
all cached owners, least recently used owners evicted first; the most
recent owner always stays, however large), not by a count of owners or
entries, so there is no cliff where a large owner is rebuilt every query.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Executor
from typing import Protocol, TypeVar

import numpy as np

from memory.cube import MemCube, State
from memory.lexical import BM25Index
from memory.longlived import settle
from memory.profile import Disclosure, disclosures
from memory.standing import is_standing
from memory.view import OwnerView

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 500_000  # memories over all cached owners
# filled objects are settled (memory/longlived.py) every this many memories
FREEZE_EVERY = 10_000
T = TypeVar("T")
Rows = tuple[list[MemCube], Sequence[np.ndarray] | None]


class Restored(Protocol):
    def apply(self, index: OwnerIndex) -> None: ...


class OwnerIndex:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.turn = asyncio.Lock()  # one pool job per owner at a time (waiting is on the loop, cancellable)
        self.bm25 = BM25Index()
        self.cubes: dict[str, MemCube] = {}
        self.vectors: dict[str, np.ndarray] = {}
        # standing facts: id -> domain profile, None until computed (rows
        # written before profiles were stored with the memory)
        self.profiles: dict[str, np.ndarray | None] = {}
        # the user's self-disclosures, per memory that has any (memory/profile.py), and a
        # counter that moves whenever they change
        self.disclosed: dict[str, tuple[Disclosure, ...]] = {}
        self.disclosed_version = 0
        self.profile_memo: tuple[int, int, object] | None = None  # (version, budget, profile): memory/profile.py
        self._pending: deque[Op] = deque()
        self._view: OwnerView | None = None
        self.flush_scheduled = False

    # -- changes (under ``lock``) ------------------------------------------

    def upsert(self, cube: MemCube, vector: np.ndarray | None = None) -> None:
        if cube.state != State.ACTIVE.value:
            self.remove(cube.id)
            return
        old = self.cubes.get(cube.id)
        changed = old is None or old.content != cube.content
        self.cubes[cube.id] = cube
        if changed or old is None or old.event_time != cube.event_time:
            self._disclose(cube.id, disclosures(cube))
        if changed:
            self.bm25.upsert(cube.id, cube.content)
            if vector is None:
                self.vectors.pop(cube.id, None)
        if vector is not None:
            vector = np.asarray(vector, dtype=np.float32).reshape(-1)
            self.vectors[cube.id] = vector
        standing = is_standing(cube) if cube.standing is None else cube.standing
        if not standing:
            self.profiles.pop(cube.id, None)
        elif cube.domains:
            self.profiles[cube.id] = np.asarray(cube.domains, dtype=np.float32)
        elif changed or cube.id not in self.profiles:
            self.profiles[cube.id] = None
        if self._view is not None and not self._view.absorb(cube, vector, changed):
            self._view = None

    def _disclose(self, memory_id: str, found: tuple[Disclosure, ...]) -> None:
        if found:
            self.disclosed[memory_id] = found
            self.disclosed_version += 1
        elif self.disclosed.pop(memory_id, None) is not None:
            self.disclosed_version += 1

    def remove(self, memory_id: str) -> None:
        self._disclose(memory_id, ())
        known = self.cubes.pop(memory_id, None) is not None
        self.vectors.pop(memory_id, None)
        self.profiles.pop(memory_id, None)
        self.bm25.remove(memory_id)
        if known and self._view is not None and not self._view.discard(memory_id):
            self._view = None

    def clear(self) -> None:
        self.disclosed.clear()
        self.disclosed_version += 1
        self.bm25 = BM25Index()
        self.cubes.clear()
        self.vectors.clear()
        self.profiles.clear()
        self._view = None

    def state(self) -> dict[str, object] | None:
        """What a snapshot keeps (memory/snapshot.py), or None without a full view; under ``lock``."""
        from memory.snapshot import saved_bm25, saved_view

        view = self.view()
        if view is None:
            return None
        memo = self.profile_memo  # the profile of these disclosures, if built: not built again after a restart
        profile = memo[1:] if memo is not None and memo[0] == self.disclosed_version else None
        return {
            "bm25": saved_bm25(self.bm25), "view": saved_view(view), "profiles": dict(self.profiles),
            "disclosed": dict(dict.items(self.disclosed)), "profile": profile,
        }

    def restore(self, state: dict[str, object]) -> None:
        """Take a snapshot's state (from :meth:`state`); under ``lock``."""
        from memory.snapshot import restored_bm25, restored_cubes, restored_disclosed

        view = state["view"]
        assert isinstance(view, OwnerView)
        self.bm25 = restored_bm25(state["bm25"])  # type: ignore[arg-type]
        self.cubes = restored_cubes(view)  # memories decoded when first read
        rows = view.matrix.copy()  # the view's rows move (appends, discards); these stay put
        self.vectors = {memory_id: rows[pos] for pos, memory_id in enumerate(view.ids)}
        self.profiles = dict(state["profiles"])  # type: ignore[call-overload]
        disclosed = state.get("disclosed")
        if isinstance(disclosed, dict):
            self.disclosed = restored_disclosed(disclosed)
        else:  # a snapshot written before disclosures were kept
            self.disclosed = {i: found for i, cube in self.cubes.items() if (found := disclosures(cube))}
        self.disclosed_version += 1
        profile = state.get("profile")  # (budget, profile) of exactly these disclosures
        self.profile_memo = (self.disclosed_version, *profile) if isinstance(profile, tuple) else None
        self._view = view

    def set_profile(self, cube: MemCube, profile: np.ndarray) -> None:
        """A computed profile, kept only if the memory is still that version."""
        current = self.cubes.get(cube.id)
        if current is not None and current.version == cube.version and current.content == cube.content:
            if cube.id in self.profiles:
                self.profiles[cube.id] = profile

    # -- queued changes ------------------------------------------------------

    def enqueue(self, op: Op) -> None:
        """Queue a change (any thread; applied by the next holder of ``lock``)."""
        self._pending.append(op)

    def sync(self) -> None:
        """Apply queued changes; the caller holds ``lock``."""
        while self._pending:
            self._pending.popleft()(self)

    def locked(self, fn: Callable[[OwnerIndex], T]) -> T:
        """``fn(self)`` under the lock, with every queued change applied first."""
        with self.lock:
            self.sync()
            return fn(self)

    def fill(self, cubes: list[MemCube], vectors: Sequence[np.ndarray] | None) -> None:
        """Load an owner read from the store, then the changes queued since the read began."""
        with self.lock:
            for n, cube in enumerate(cubes):
                self.upsert(cube, vectors[n] if vectors is not None else None)
                if n % FREEZE_EVERY == FREEZE_EVERY - 1:
                    settle()
            self.sync()
        settle()

    def flush(self) -> None:
        """Apply queued changes unless a reader holds the lock (it will)."""
        self.flush_scheduled = False
        if self.lock.acquire(blocking=False):
            try:
                self.sync()
            finally:
                self.lock.release()

    # -- reads (under ``lock``) ------------------------------------------------

    def view(self) -> OwnerView | None:
        """Every memory's arrays in id (= write) order, or None when any vector is missing."""
        if self._view is None:
            if not self.cubes or len(self.vectors) < len(self.cubes):
                return None
            self._view = OwnerView.build(self.cubes, self.vectors)
        return self._view

    def matrix(self) -> tuple[list[str], np.ndarray] | None:
        """Ids in id (= write) order and their embeddings, or None when any vector is missing."""
        view = self.view()
        return None if view is None else (view.ids, view.matrix)

    def unprofiled(self) -> list[MemCube]:
        """Standing facts whose domain profile is not known yet."""
        return [self.cubes[i] for i, p in self.profiles.items() if p is None and i in self.cubes]

    def __len__(self) -> int:
        return len(self.cubes)


Op = Callable[[OwnerIndex], None]


class LexicalCache:
    def __init__(
        self,
        load: Callable[[str], Awaitable[Rows | Restored]],
        pool: Executor,
        capacity: int = DEFAULT_CAPACITY,
        keep_vectors: bool = False,
    ) -> None:
        """``load(user)`` -> ``(active cubes, their vectors or None)``, or a
        restored snapshot that fills the index itself (memory/snapshot.py).
        ``keep_vectors``: embeddings handed over by writers are cached too
        (only for a store no one else writes, i.e. the embedded one)."""
        self._load = load
        self._pool = pool
        self._capacity = capacity
        self._keep_vectors = keep_vectors
        self._cache: OrderedDict[str, OwnerIndex] = OrderedDict()
        self._loading: dict[str, tuple[asyncio.Task[OwnerIndex], OwnerIndex]] = {}

    async def index(self, user: str) -> OwnerIndex:
        cached = self._cache.get(user)
        if cached is not None:
            self._cache.move_to_end(user)
            return cached
        loading = self._loading.get(user)
        if loading is None:
            fresh = OwnerIndex()
            task = asyncio.create_task(self._build(user, fresh), name=f"memproxy-lexical-{user}")
            task.add_done_callback(_consume_exception)
            loading = (task, fresh)
            self._loading[user] = loading
        # shielded: a caller that times out must not waste the rebuild
        return await asyncio.shield(loading[0])

    async def read(self, index: OwnerIndex, fn: Callable[[OwnerIndex], T]) -> T:
        """``fn(index)`` on the recall pool under the index's lock (never on the loop).

        One job per owner at a time: later readers of the same owner wait on
        the loop, where a caller's deadline cancels the wait; a job that has
        started keeps the owner's turn until it ends."""
        await index.turn.acquire()
        loop = asyncio.get_running_loop()
        try:
            job = self._pool.submit(index.locked, fn)
        except BaseException:
            index.turn.release()
            raise
        job.add_done_callback(lambda _: _release_on(loop, index.turn))
        return await asyncio.wrap_future(job)

    def users(self) -> list[str]:
        """The owners whose index is cached, least recently used first."""
        return list(self._cache)

    def holds(self, user: str) -> bool:
        """The owner's index is cached or being built (changes reach it)."""
        return user in self._cache or user in self._loading

    async def _build(self, user: str, index: OwnerIndex) -> OwnerIndex:
        try:
            loaded = await self._load(user)
            loop = asyncio.get_running_loop()
            if isinstance(loaded, tuple):
                await loop.run_in_executor(self._pool, index.fill, *loaded)
            else:  # a snapshot and its delta (memory/snapshot.py)
                await loop.run_in_executor(self._pool, loaded.apply, index)
            self._store(user, index)
        finally:
            self._loading.pop(user, None)
        return index

    def _store(self, user: str, index: OwnerIndex) -> None:
        self._cache[user] = index
        self._cache.move_to_end(user)
        total = sum(len(i) for i in self._cache.values())
        while total > self._capacity and len(self._cache) > 1:
            _, evicted = self._cache.popitem(last=False)
            total -= len(evicted)

    def _apply(self, user: str, op: Op) -> None:
        index = self._cache.get(user)
        loading = self._loading.get(user)
        for target in (index, loading[1] if loading is not None else None):
            if target is None:
                continue
            target.enqueue(op)
            if not target.flush_scheduled and target is index:
                target.flush_scheduled = True
                self._pool.submit(target.flush).add_done_callback(_log_flush_failure)

    def upsert(self, cubes: Iterable[MemCube], vectors: Sequence[np.ndarray] | np.ndarray | None = None) -> None:
        cubes = list(cubes)
        keep = vectors is not None and self._keep_vectors and len(vectors) == len(cubes)
        by_user: dict[str, list[tuple[MemCube, np.ndarray | None]]] = {}
        for n, cube in enumerate(cubes):
            by_user.setdefault(cube.owner.user, []).append((cube, vectors[n] if keep else None))  # type: ignore[index]
        for user, items in by_user.items():
            self._apply(user, functools.partial(_upsert_all, items=items))

    def remove(self, user: str, memory_id: str) -> None:
        self._apply(user, lambda index: index.remove(memory_id))

    def profiled(self, user: str, cubes: Sequence[MemCube], profiles: np.ndarray) -> None:
        def op(index: OwnerIndex) -> None:
            for cube, profile in zip(cubes, profiles, strict=True):
                index.set_profile(cube, profile)

        self._apply(user, op)

    def drop(self, user: str) -> None:
        self._cache.pop(user, None)
        self._apply(user, OwnerIndex.clear)


def _upsert_all(index: OwnerIndex, items: list[tuple[MemCube, np.ndarray | None]]) -> None:
    for cube, vector in items:
        index.upsert(cube, vector)


def _release_on(loop: asyncio.AbstractEventLoop, lock: asyncio.Lock) -> None:
    if not loop.is_closed():
        loop.call_soon_threadsafe(lock.release)


def _consume_exception(task: asyncio.Task[OwnerIndex]) -> None:
    """Retrieve a failed rebuild's exception; the waiting callers re-raise it."""
    if not task.cancelled():
        task.exception()


def _log_flush_failure(future: object) -> None:
    exc = future.exception() if hasattr(future, "exception") else None
    if exc is not None:
        log.error("applying queued index changes failed", exc_info=exc)
