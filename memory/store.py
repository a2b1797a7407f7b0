"""The storage boundary: what the engine needs from a vector store.

Implementations partition memories by owner (the ``user``), keep one
embedding per memory, and answer cosine-similarity queries over ``active``
memories only. Every method is async; every failure of the backing store is
raised as :class:`memory.errors.StoreUnavailable`.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from memory.cube import MemCube


class MemoryStore(Protocol):
    async def add(self, cubes: Sequence[MemCube], embeddings: np.ndarray) -> None:
        """Store new memories; ``embeddings[i]`` belongs to ``cubes[i]``."""
        ...

    async def get(self, memory_id: str) -> MemCube | None:
        """The memory with this id (any state), or None."""
        ...

    async def update(self, cube: MemCube, embedding: np.ndarray | None) -> None:
        """Replace a stored memory; ``embedding`` None keeps the stored vector."""
        ...

    async def delete(self, memory_id: str) -> bool:
        """Hard-delete one memory; False when it did not exist."""
        ...

    async def delete_owner(self, user: str) -> int:
        """Hard-delete every memory of ``user``; returns how many there were."""
        ...

    async def query(self, user: str, embedding: np.ndarray, limit: int) -> list[tuple[MemCube, float]]:
        """The ``limit`` active memories of ``user`` nearest to ``embedding``,
        as ``(cube, cosine similarity)``, most similar first."""
        ...

    async def similarities(self, user: str, embedding: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
        """Cosine similarity of ``embedding`` to each stored memory in ``ids``."""
        ...

    async def list(
        self, user: str, limit: int, after: str | None = None, tier: str | None = None
    ) -> tuple[builtins.list[MemCube], bool]:
        """One page of ``user``'s memories in id (= creation) order, strictly
        after ``after``; returns ``(items, has_more)``."""
        ...

    async def all_active(self, user: str) -> builtins.list[MemCube]:
        """Every active memory of ``user`` (to build the lexical index)."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""
        ...

    async def aclose(self) -> None:
        """Release clients and threads."""
        ...
