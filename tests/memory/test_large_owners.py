"""What keeps large owners fast: ranking on arrays (the same ranking),
derived facts stored at write time, and an index cache sized in memories."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from memory.chroma_store import ChromaStore
from memory.cube import MemCube, Owner
from memory.embedder import Embedder
from memory.engine import MemoryEngine, NewMemory
from memory.lexcache import LexicalCache, OwnerIndex
from memory.recall import rank, rank_view, score_all
from memory.settings import MemorySettings
from memory.timeparse import query_time
from tests.memory.memory_helpers import run

WORDS = "dog river Lisbon trip pottery class kids marathon tuna peanuts guitar garden book train".split()
SPEAKERS = ("Caroline", "Melanie", None)


def _owner(n: int, seed: int = 0) -> OwnerIndex:
    rng = random.Random(seed)
    vectors = np.random.default_rng(seed).normal(size=(n, 24)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = OwnerIndex()
    start = datetime(2023, 5, 1, tzinfo=UTC)
    for i in range(n):
        words = rng.sample(WORDS, 4)
        if i % 7 == 0:
            words.append("yesterday")
        speaker = SPEAKERS[i % 3]
        metadata = {"session": i // 9} if i % 2 else {}
        if speaker:
            metadata["speaker"] = speaker
        cube = MemCube(
            id=f"mem_{i:05d}", owner=Owner("u"), content=" ".join(words),
            event_time=start + timedelta(days=i // 5) if i % 4 else None, metadata=metadata,
        )
        index.upsert(cube, vectors[i])
    return index


def test_ranking_on_arrays_matches_ranking_candidates() -> None:
    index = _owner(600)
    view = index.view()
    assert view is not None
    query_vectors = np.random.default_rng(7).normal(size=(4, 24)).astype(np.float32)
    queries = ["Caroline pottery class", "what about the dog and the river?", "tuna in May 2023", "Melanie on 3 May, 2023"]
    extra = [(index.cubes["mem_00010"], 0.36)]
    for query, vector in zip(queries, query_vectors, strict=True):
        when = query_time(query, now=datetime(2023, 9, 1, tzinfo=UTC))
        candidates = score_all(index, query, vector)
        assert candidates is not None
        expected = rank(candidates, 0.2, extra, query, len(index.cubes), when)
        got = rank_view(view, index.bm25, query, vector, 0.2, extra, len(index.cubes), when)
        assert expected, query
        assert [(c.id, round(s, 12)) for c, s in got] == [(c.id, round(s, 12)) for c, s in expected], query


def test_view_follows_appends_updates_and_removals() -> None:
    index = _owner(50)
    assert index.view() is not None
    newest = MemCube(id="mem_99999", owner=Owner("u"), content="a brand new river memory")
    index.upsert(newest, np.ones(24, dtype=np.float32) / np.sqrt(24))
    changed = index.cubes["mem_00003"].evolve(content="the guitar lesson moved", version=2)
    index.upsert(changed, np.ones(24, dtype=np.float32) / np.sqrt(24))
    index.remove("mem_00004")
    view = index.view()
    assert view is not None and view.ids == sorted(index.cubes)
    assert view.cubes[view.position["mem_00003"]].content == "the guitar lesson moved"
    assert np.allclose(view.matrix[view.position["mem_99999"]], 1 / np.sqrt(24))


def test_index_cache_is_bounded_by_memories_not_owners() -> None:
    async def scenario() -> None:
        sizes = {"a": 30, "b": 30, "c": 50}

        async def load(user: str) -> tuple[list[MemCube], None]:
            owner = Owner(user)
            return [MemCube(id=f"mem_{user}{i:04d}", owner=owner, content=f"note {i}") for i in range(sizes[user])], None

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            cache = LexicalCache(load, pool, capacity=70)
            first = await cache.index("a")
            await cache.index("b")
            assert await cache.index("a") is first  # 60 memories: both kept
            await cache.index("c")  # 110 > 70: least recently used owners go (b, then a)
            assert await cache.index("c") is await cache.index("c")
            assert await cache.index("a") is not first  # rebuilt
            huge = {"d": 500}
            sizes.update(huge)
            assert len(await cache.index("d")) == 500  # an owner over the whole budget still stays cached

    run(scenario())


class CountingEmbedder:
    """The shared real embedder, counting what each lane is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.bulk: list[str] = []
        self.query: list[str] = []

    async def embed(self, texts: list[str]) -> np.ndarray:
        self.bulk.extend(texts)
        return await self.inner.embed(texts)

    async def embed_memories(self, texts: list[str]) -> np.ndarray:
        self.bulk.extend(texts)
        return await self.inner.embed_memories(texts)

    async def embed_query(self, texts: list[str]) -> np.ndarray:
        self.query.extend(texts)
        return await self.inner.embed_query(texts)

    async def warmup(self) -> None:
        await self.inner.warmup()

    def close(self) -> None:
        pass


DINNER = "Can you suggest a dinner recipe for tonight?"


def test_standing_facts_are_profiled_at_write_time_not_after_a_restart(embedder: Embedder, tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = MemorySettings(min_score=0.35)
        engine = await MemoryEngine.open(settings, tmp_path, embedder=embedder)
        stored = await engine.add(Owner("ann"), [NewMemory("I'm allergic to peanuts."), NewMemory("The meeting is at 3pm.")])
        assert stored[0].standing is True and len(stored[0].domains) == 8
        assert stored[1].standing is False and stored[1].domains == ()
        assert (await engine.get(stored[0].id)).domains == stored[0].domains  # stored with the memory
        await engine.aclose()

        counting = CountingEmbedder(embedder)
        restarted = MemoryEngine(settings, ChromaStore.embedded(tmp_path / "chroma"), counting)  # type: ignore[arg-type]
        found = await restarted.search("ann", DINNER)
        assert any("peanuts" in item.text for item in found.items)
        assert counting.bulk == []  # nothing re-embedded: the profile came from the store
        assert DINNER in counting.query and "I'm allergic to peanuts." not in counting.query
        await restarted.aclose()

    run(scenario())


def test_rows_stored_without_standing_fields_are_profiled_lazily(embedder: Embedder, tmp_path: Path) -> None:
    async def scenario() -> None:
        from memory.cube import IdFactory
        from memory.encoding import encode

        store = ChromaStore.embedded(tmp_path / "chroma")
        owner = Owner("old")
        legacy = MemCube(id=IdFactory().new(owner), owner=owner, content="User: I am vegetarian.\nAssistant: Noted.")
        assert legacy.standing is None
        await store.add([legacy], await encode(embedder.embed, [legacy.content]))
        counting = CountingEmbedder(embedder)
        engine = MemoryEngine(MemorySettings(min_score=0.35), store, counting)  # type: ignore[arg-type]
        found = await engine.search("old", DINNER)
        assert any("vegetarian" in item.text for item in found.items)
        assert counting.bulk == ["I am vegetarian."]  # once, on the bulk lane (never the query lane)
        await engine.search("old", DINNER)
        assert counting.bulk == ["I am vegetarian."]
        await engine.aclose()

    run(scenario())
