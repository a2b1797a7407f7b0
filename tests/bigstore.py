"""One large owner on disk, written once per test session: 40,000 memories of
user ``big`` straight through the store's batch path.

Their vectors are the real embeddings of :data:`TEXTS`, reused row by row
(row n is ``TEXTS[n % 5]`` plus its row number, with that sentence's
vector): embedding 40,000 texts would take minutes, and what these rows test
is size. They are written without the standing-fact fields, like rows stored
before those existed. The writing runs in a subprocess that exits, so the
directory on disk is complete and each test can take a copy of its own.

``python -m tests.bigstore DIR VECTORS.npy`` writes the rows.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np

from memory.chroma_store import ChromaStore
from memory.cube import IdFactory, MemCube, Owner

USER = "big"
ROWS = 40_000  # above 32,766: SQLite's most variables in one statement
TEXTS = [
    "We talked about the weather and the weekend plans",
    "The train was late again this morning",
    "I finished reading a long novel about sailors",
    "Our team reviewed the quarterly roadmap",
    "The garden needs watering twice a week in summer",
]


def bulk_cubes(user: str, count: int, texts: list[str]) -> list[MemCube]:
    """``count`` memories of ``user`` cycling through ``texts`` (numbered, so
    every content is distinct), with time-ordered ids."""
    ids = IdFactory()
    owner = Owner(user=user)
    return [
        MemCube(id=ids.new(owner), owner=owner, content=f"{texts[n % len(texts)]} (row {n})", kind="fact")
        for n in range(count)
    ]


def cycled(vectors: np.ndarray, count: int) -> np.ndarray:
    """``count`` rows reusing ``vectors`` in turn (row n gets ``vectors[n % len]``)."""
    return np.asarray(vectors, dtype=np.float32)[np.arange(count) % len(vectors)]


async def write(path: Path, vectors: np.ndarray, rows: int = ROWS) -> list[MemCube]:
    cubes = bulk_cubes(USER, rows, TEXTS)
    store = ChromaStore.embedded(path)
    await store.add(cubes, cycled(vectors, rows))
    await store.aclose()
    return cubes


if __name__ == "__main__":
    asyncio.run(write(Path(sys.argv[1]), np.load(sys.argv[2])))
