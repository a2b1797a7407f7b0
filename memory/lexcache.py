"""Per-owner lexical indexes in an LRU cache.

Each cached owner has a BM25 index over its active memories plus the cubes
themselves (so lexical-only hits need no store round trip). Writes update
cached owners incrementally; a miss rebuilds from ``MemoryStore.all_active``.
Writes that land while an owner is being rebuilt are queued and replayed on
the fresh index (upsert/remove are idempotent, so replaying is always safe).

The index also keeps each memory's embedding when the writer hands it over
(or the rebuild loads it), so recall can score every memory of an owner
with one in-memory matrix product instead of a store round trip. When any
vector is missing, :meth:`OwnerIndex.matrix` says so and recall falls back
to the store's nearest-neighbour query.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence

import numpy as np

from memory.cube import MemCube, State
from memory.lexical import BM25Index

DEFAULT_CAPACITY = 256


class OwnerIndex:
    def __init__(self) -> None:
        self.bm25 = BM25Index()
        self.cubes: dict[str, MemCube] = {}
        self.vectors: dict[str, np.ndarray] = {}
        self._matrix: tuple[list[str], np.ndarray] | None = None

    def upsert(self, cube: MemCube, vector: np.ndarray | None = None) -> None:
        if cube.state != State.ACTIVE.value:
            self.remove(cube.id)
            return
        old = self.cubes.get(cube.id)
        self.cubes[cube.id] = cube
        if old is None or old.content != cube.content:
            self.bm25.upsert(cube.id, cube.content)
            if vector is None:
                self.vectors.pop(cube.id, None)
        if vector is not None:
            self.vectors[cube.id] = np.asarray(vector, dtype=np.float32).reshape(-1)
        self._matrix = None

    def remove(self, memory_id: str) -> None:
        self.cubes.pop(memory_id, None)
        self.vectors.pop(memory_id, None)
        self.bm25.remove(memory_id)
        self._matrix = None

    def clear(self) -> None:
        self.bm25 = BM25Index()
        self.cubes.clear()
        self.vectors.clear()
        self._matrix = None

    def matrix(self) -> tuple[list[str], np.ndarray] | None:
        """Ids in id (= write) order and their embeddings, or None when any vector is missing."""
        if self._matrix is None:
            if not self.cubes or len(self.vectors) < len(self.cubes):
                return None
            ids = sorted(self.cubes)
            self._matrix = (ids, np.stack([self.vectors[i] for i in ids]))
        return self._matrix


Op = Callable[[OwnerIndex], None]


class LexicalCache:
    def __init__(
        self,
        load: Callable[[str], Awaitable[list[MemCube]]],
        capacity: int = DEFAULT_CAPACITY,
        load_vectors: Callable[[str], Awaitable[dict[str, np.ndarray]]] | None = None,
    ) -> None:
        """``load_vectors`` set: embeddings are cached too (only for a store no one
        else writes, i.e. the embedded one); unset: vectors are ignored and
        recall keeps asking the store."""
        self._load = load
        self._load_vectors = load_vectors
        self._capacity = capacity
        self._cache: OrderedDict[str, OwnerIndex] = OrderedDict()
        self._loading: dict[str, tuple[asyncio.Task[OwnerIndex], list[Op]]] = {}

    async def index(self, user: str) -> OwnerIndex:
        cached = self._cache.get(user)
        if cached is not None:
            self._cache.move_to_end(user)
            return cached
        loading = self._loading.get(user)
        if loading is None:
            pending: list[Op] = []
            task = asyncio.create_task(self._build(user, pending), name=f"memproxy-lexical-{user}")
            task.add_done_callback(_consume_exception)
            loading = (task, pending)
            self._loading[user] = loading
        # shielded: a caller that times out must not waste the rebuild
        return await asyncio.shield(loading[0])

    async def _build(self, user: str, pending: list[Op]) -> OwnerIndex:
        try:
            cubes = await self._load(user)
            vectors = await self._load_vectors(user) if self._load_vectors is not None else {}
        finally:
            self._loading.pop(user, None)
        built = OwnerIndex()
        for cube in cubes:
            built.upsert(cube, vectors.get(cube.id))
        for op in pending:
            op(built)
        self._store(user, built)
        return built

    def _store(self, user: str, index: OwnerIndex) -> None:
        self._cache[user] = index
        self._cache.move_to_end(user)
        while len(self._cache) > self._capacity:
            self._cache.popitem(last=False)

    def _apply(self, user: str, op: Op) -> None:
        cached = self._cache.get(user)
        if cached is not None:
            op(cached)
        loading = self._loading.get(user)
        if loading is not None:
            loading[1].append(op)

    def upsert(self, cubes: Iterable[MemCube], vectors: Sequence[np.ndarray] | np.ndarray | None = None) -> None:
        cubes = list(cubes)
        for n, cube in enumerate(cubes):
            keep = vectors is not None and self._load_vectors is not None and len(vectors) == len(cubes)
            vector = vectors[n] if keep else None
            self._apply(cube.owner.user, lambda index, c=cube, v=vector: index.upsert(c, v))

    def remove(self, user: str, memory_id: str) -> None:
        self._apply(user, lambda index: index.remove(memory_id))

    def drop(self, user: str) -> None:
        self._cache.pop(user, None)
        self._apply(user, OwnerIndex.clear)


def _consume_exception(task: asyncio.Task[OwnerIndex]) -> None:
    """Retrieve a failed rebuild's exception; the waiting callers re-raise it."""
    if not task.cancelled():
        task.exception()
