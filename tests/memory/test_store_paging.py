"""Store reads that can touch many rows go in pages.

Chroma answers a ``get`` with one SQL statement holding a variable per row,
and SQLite refuses more than 32,766 of them, so an owner above that size
could not be read back in one call. Both the embedded store and a real
``chroma run`` server are checked on a copy of the session's 40,000-memory
owner (:mod:`tests.bigstore`, written once straight through the store's
batch path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memory.chroma_store import READ_PAGE, ChromaStore
from memory.cube import MemCube, State
from testing.processes import ChromaServer, chroma_binary
from tests.bigstore import TEXTS, USER, cycled
from tests.memory.memory_helpers import run


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
    by_id = dict(zip((c.id for c in with_vectors), stored, strict=True))
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


async def _check_big(store: ChromaStore, texts_vectors: np.ndarray) -> None:
    cubes = sorted(await store.all_active(USER), key=lambda c: c.id)  # as written, in id order
    assert [c.content for c in cubes[:2]] == [f"{TEXTS[0]} (row 0)", f"{TEXTS[1]} (row 1)"]
    await _check(store, cubes, cycled(texts_vectors, len(cubes)))


def test_embedded_store_reads_an_owner_above_32767_rows(big_store: tuple[Path, Any]) -> None:
    path, texts_vectors = big_store
    run(_check_big(ChromaStore.embedded(path), texts_vectors))


def test_chroma_server_reads_an_owner_above_32767_rows(big_store: tuple[Path, Any]) -> None:
    path, texts_vectors = big_store
    assert chroma_binary().exists(), "the chroma CLI (installed with chromadb) is missing next to this Python"
    server = ChromaServer(path)  # ``chroma run`` over a copy of the same 40,000 rows
    try:
        run(_check_big(ChromaStore.remote(server.url, timeout_s=60), texts_vectors))
    finally:
        server.stop()


def test_rows_dropped_in_a_page_overlap_do_not_shift_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages overlap; a page's inactive rows are dropped before de-duplication, so
    de-duplication must go by each row's own id (tiny pages put archived rows
    right in the overlaps)."""
    from memory import chroma_store
    from memory.cube import Owner

    monkeypatch.setattr(chroma_store, "READ_PAGE", 10)
    monkeypatch.setattr(chroma_store, "PAGE_OVERLAP", 3)
    store = ChromaStore.embedded(tmp_path / "chroma")
    owner = Owner("pat")
    cubes = [MemCube(id=f"mem_{owner.key}_{n:024x}", owner=owner, content=f"note {n}") for n in range(40)]
    vectors = np.eye(40, 384, dtype=np.float32)

    async def scenario() -> None:
        await store.add(cubes, vectors)
        archived = {7, 8, 9, 14, 15, 16, 21, 22}  # in and around the overlaps of 10-row pages stepping by 7
        for n in archived:
            await store.update(cubes[n].evolve(state=State.ARCHIVED.value, version=2), None)
        expected = [c.id for n, c in enumerate(cubes) if n not in archived]
        assert sorted(c.id for c in await store.all_active("pat")) == expected
        with_vectors, stored = await store.active_with_vectors("pat")
        assert sorted(c.id for c in with_vectors) == expected
        for cube, vector in zip(with_vectors, stored, strict=True):
            assert np.allclose(vector, vectors[int(cube.id.rsplit("_", 1)[1], 16)])
        await store.aclose()

    run(scenario())
