"""Store reads that can touch many rows go in pages.

Chroma answers a ``get`` with one SQL statement holding a variable per row,
and SQLite refuses more than 32,766 of them, so an owner above that size
could not be read back in one call. These tests write 32,800 rows straight
through the store's batch path (small vectors: the store does not care about
their size, and paging is what is under test) on the embedded store and on a
real ``chroma run`` server, and read them back every way the engine does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.memory.memory_helpers import ChromaServer, bulk_cubes, cycled, run

from memory.chroma_store import READ_PAGE, ChromaStore
from memory.cube import State

ROWS = 32_800  # > 32,766, SQLite's most variables in one statement
TEXTS = ["I walked the dog by the river", "We planned a trip to Lisbon", "The build failed on Tuesday"]


def _vectors(count: int) -> np.ndarray:
    basis = np.eye(16, dtype=np.float32)[:5] + 0.1
    return cycled(basis / np.linalg.norm(basis, axis=1, keepdims=True), count)


async def _check(store: ChromaStore) -> None:
    cubes = bulk_cubes("big", ROWS, TEXTS)
    vectors = _vectors(ROWS)
    await store.add(cubes, vectors)
    archived = cubes[READ_PAGE * 3 + 5].evolve(state=State.ARCHIVED.value, version=2)
    await store.update(archived, None)
    assert await store.delete(cubes[7].id)

    active = await store.all_active("big")
    ids = [c.id for c in active]
    assert len(ids) == len(set(ids)) == ROWS - 2
    assert set(ids) == {c.id for c in cubes} - {archived.id, cubes[7].id}

    with_vectors, stored = await store.active_with_vectors("big")
    by_id = dict(zip((c.id for c in with_vectors), stored))
    assert len(by_id) == ROWS - 2
    for n in (0, 1, READ_PAGE, ROWS - 1):
        assert np.allclose(by_id[cubes[n].id], vectors[n], atol=1e-6)

    page, more = await store.list("big", 1000, after=cubes[ROWS - 1500].id)
    assert [c.id for c in page] == [c.id for c in cubes[ROWS - 1499 : ROWS - 499]] and more
    last, more = await store.list("big", 1000, after=page[-1].id)
    assert [c.id for c in last] == [c.id for c in cubes[ROWS - 499 :]] and not more
    assert (await store.list("big", 10, tier="core")) == ([], False)
    near = await store.similarities("big", vectors[0], [c.id for c in cubes[: READ_PAGE + 10]])
    assert len(near) == READ_PAGE + 9 and near[cubes[0].id] == pytest.approx(1.0)  # cubes[7] is gone
    await store.aclose()


def test_embedded_store_reads_an_owner_above_32767_rows(tmp_path: Path) -> None:
    run(_check(ChromaStore.embedded(tmp_path / "chroma")))


def test_chroma_server_reads_an_owner_above_32767_rows(chroma_server: ChromaServer) -> None:
    run(_check(ChromaStore.remote(chroma_server.url, timeout_s=60)))
