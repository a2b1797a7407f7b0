"""Store reads that can touch many rows go in pages.

Chroma answers a ``get`` with one SQL statement holding a variable per row,
and SQLite refuses more than 32,766 of them, so an owner above that size
could not be read back in one call. The embedded store is checked on the
session's 40,000-memory owner (:mod:`tests.bigstore`); the ``chroma run``
server on 32,800 rows written straight through the store's batch path (small
vectors: the store does not care about their size, and paging is what is
under test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.bigstore import TEXTS, USER, bulk_cubes, cycled
from tests.memory.memory_helpers import ChromaServer, run

from memory.chroma_store import READ_PAGE, ChromaStore
from memory.cube import MemCube, State

SERVER_ROWS = 32_800  # > 32,766


async def _check(store: ChromaStore, cubes: list[MemCube], vectors: np.ndarray) -> None:
    rows = len(cubes)
    archived = cubes[READ_PAGE * 3 + 5].evolve(state=State.ARCHIVED.value, version=2)
    await store.update(archived, None)
    assert await store.delete(cubes[7].id)

    active = await store.all_active(USER)
    ids = [c.id for c in active]
    assert len(ids) == len(set(ids)) == rows - 2
    assert set(ids) == {c.id for c in cubes} - {archived.id, cubes[7].id}

    with_vectors, stored = await store.active_with_vectors(USER)
    by_id = dict(zip((c.id for c in with_vectors), stored))
    assert len(by_id) == rows - 2
    for n in (0, 1, READ_PAGE, rows - 1):
        assert np.allclose(by_id[cubes[n].id], vectors[n], atol=1e-6)

    page, more = await store.list(USER, 1000, after=cubes[rows - 1500].id)
    assert [c.id for c in page] == [c.id for c in cubes[rows - 1499 : rows - 499]] and more
    last, more = await store.list(USER, 1000, after=page[-1].id)
    assert [c.id for c in last] == [c.id for c in cubes[rows - 499 :]] and not more
    assert (await store.list(USER, 10, tier="core")) == ([], False)
    near = await store.similarities(USER, vectors[0], [c.id for c in cubes[: READ_PAGE + 10]])
    assert len(near) == READ_PAGE + 9 and near[cubes[0].id] == pytest.approx(1.0, abs=1e-5)  # cubes[7] is gone
    await store.aclose()


def test_embedded_store_reads_an_owner_above_32767_rows(big_store: tuple[Path, Any]) -> None:
    path, texts_vectors = big_store
    store = ChromaStore.embedded(path)

    async def scenario() -> None:
        cubes = sorted(await store.all_active(USER), key=lambda c: c.id)  # as written, in id order
        assert [c.content for c in cubes[:2]] == [f"{TEXTS[0]} (row 0)", f"{TEXTS[1]} (row 1)"]
        await _check(store, cubes, cycled(texts_vectors, len(cubes)))

    run(scenario())


def test_chroma_server_reads_an_owner_above_32767_rows(chroma_server: ChromaServer) -> None:
    basis = np.eye(16, dtype=np.float32)[:5] + 0.1
    vectors = cycled(basis / np.linalg.norm(basis, axis=1, keepdims=True), SERVER_ROWS)
    cubes = bulk_cubes(USER, SERVER_ROWS, TEXTS)
    store = ChromaStore.remote(chroma_server.url, timeout_s=60)

    async def scenario() -> None:
        await store.add(cubes, vectors)
        await _check(store, cubes, vectors)

    run(scenario())
